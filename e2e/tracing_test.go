package e2e

// OpenTelemetry traces of the real daemon, sent over OTLP (http/protobuf
// and grpc) to a collector the test runs: the job must see its attempt's
// span as TRACEPARENT.

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// collector keeps the spans exported to it, with their service name.
type collector struct {
	collectortrace.UnimplementedTraceServiceServer
	mu      sync.Mutex
	spans   []*tracepb.Span
	service []string
	// json: the spans came as OTLP/JSON, whose ids are hex strings that
	// protojson, taking them for bytes fields, decoded as base64.
	json bool
}

// id is how a span or trace id was written on the wire: hex.
func (c *collector) id(b []byte) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.json {
		return strings.ToLower(base64.StdEncoding.EncodeToString(b))
	}
	return hex.EncodeToString(b)
}

func (c *collector) Export(_ context.Context, req *collectortrace.ExportTraceServiceRequest) (*collectortrace.ExportTraceServiceResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				c.service = append(c.service, kv.GetValue().GetStringValue())
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	return &collectortrace.ExportTraceServiceResponse{}, nil
}

// ServeHTTP is the OTLP/HTTP receiver: POST /v1/traces, protobuf or JSON.
func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" {
		http.NotFound(w, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	req := &collectortrace.ExportTraceServiceRequest{}
	json := r.Header.Get("Content-Type") == "application/json"
	if err == nil && json {
		c.mu.Lock()
		c.json = true
		c.mu.Unlock()
		err = protojson.Unmarshal(body, req)
	} else if err == nil {
		err = proto.Unmarshal(body, req)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	resp, _ := c.Export(r.Context(), req)
	if json {
		b, _ := protojson.Marshal(resp)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
		return
	}
	b, _ := proto.Marshal(resp)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(b)
}

func (c *collector) span(name, jobID string) *tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.spans {
		if s.GetName() != name {
			continue
		}
		for _, kv := range s.GetAttributes() {
			if kv.GetKey() == "stq.job.id" && kv.GetValue().GetStringValue() == jobID {
				return s
			}
		}
	}
	return nil
}

func spanAttr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

func TestTracingReachesTheJob(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		serve func(t *testing.T, c *collector) []string // the daemon's OTEL_* variables
	}{
		{"over http/protobuf", func(t *testing.T, c *collector) []string {
			srv := httptest.NewServer(c)
			t.Cleanup(srv.Close)
			return []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + srv.URL}
		}},
		{"over http/json", func(t *testing.T, c *collector) []string {
			srv := httptest.NewServer(c)
			t.Cleanup(srv.Close)
			return []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=" + srv.URL + "/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL=http/json"}
		}},
		{"over grpc, with a service name", func(t *testing.T, c *collector) []string {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			gs := grpc.NewServer()
			collectortrace.RegisterTraceServiceServer(gs, c)
			go gs.Serve(ln) // stopped by the cleanup
			t.Cleanup(gs.Stop)
			return []string{"OTEL_TRACES_EXPORTER=otlp", "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
				"OTEL_EXPORTER_OTLP_ENDPOINT=http://" + ln.Addr().String(), "OTEL_SERVICE_NAME=builds"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := &collector{}
			env := append(tt.serve(t, c), "OTEL_BSP_SCHEDULE_DELAY=50")
			e := newEnv(t)
			d := e.launchDaemon(env)
			e.waitAnswers()

			out := filepath.Join(t.TempDir(), "traceparent")
			id := e.ok("enqueue", "--subject", "traced", "--", "sh", "-c", "echo \"$TRACEPARENT\" > "+out)
			e.ok("wait", id)
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			seen := strings.Split(strings.TrimSpace(string(b)), "-")
			if len(seen) != 4 || seen[0] != "00" || seen[3] != "01" {
				t.Fatalf("the job saw TRACEPARENT=%q, want a sampled W3C traceparent", b)
			}
			var enq, att *tracepb.Span
			waitFor(t, "the enqueue and attempt spans to reach the collector", 30*time.Second, func() bool {
				enq, att = c.span("stq.enqueue", id), c.span("stq.attempt", id)
				return enq != nil && att != nil
			})
			if got := c.id(att.GetTraceId()); got != seen[1] {
				t.Errorf("the job's trace id %s is not the attempt span's %s", seen[1], got)
			}
			if got := c.id(att.GetSpanId()); got != seen[2] {
				t.Errorf("the job's parent span %s is not the attempt span %s", seen[2], got)
			}
			if string(att.GetParentSpanId()) != string(enq.GetSpanId()) || string(att.GetTraceId()) != string(enq.GetTraceId()) {
				t.Error("the attempt span is not a child of the enqueue span")
			}
			for key, want := range map[string]string{"stq.queue": "default", "stq.subject": "traced", "stq.outcome": "succeeded"} {
				if got := spanAttr(att, key); got != want {
					t.Errorf("attempt span %s = %q, want %q", key, got, want)
				}
			}
			wantService := "stq"
			if strings.Contains(strings.Join(env, " "), "OTEL_SERVICE_NAME=builds") {
				wantService = "builds"
			}
			c.mu.Lock()
			service := c.service[0]
			c.mu.Unlock()
			if service != wantService {
				t.Errorf("service.name = %q, want %q", service, wantService)
			}
			if code := d.stop(); code != 0 {
				t.Fatalf("daemon exit %d", code)
			}
		})
	}
}

func TestTracingBadExporterIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	c := e.cmd("daemon")
	c.Env = append(c.Env, "OTEL_TRACES_EXPORTER=zipkin")
	out, err := c.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `OTEL_TRACES_EXPORTER: "zipkin"`) {
		t.Fatalf("daemon with OTEL_TRACES_EXPORTER=zipkin: %v\n%s", err, out)
	}
}
