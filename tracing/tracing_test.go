package tracing

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"stq/engine"
)

func setup(t *testing.T) (*Tracer, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tr := New(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tr.Shutdown(context.Background()) })
	return tr, exp
}

func testJob() *engine.Job {
	return &engine.Job{ID: "01JTESTJOB0000000000000000", Queue: "default", Type: "build", Subject: "src/main.go",
		Generation: 3, MaxAttempts: 2, Attempt: 1, State: engine.StateQueued, CreatedAt: time.Now().Add(-time.Millisecond)}
}

func attr(s tracetest.SpanStub, key string) attribute.Value {
	for _, kv := range s.Attributes {
		if string(kv.Key) == key {
			return kv.Value
		}
	}
	return attribute.Value{}
}

func TestAttemptJoinsTheEnqueueTraceAndReachesTheJob(t *testing.T) {
	t.Parallel()
	tr, exp := setup(t)
	j := testJob()
	tr.Enqueued(engine.EnqueueResult{Job: j, Superseded: []string{"older"}})
	running := *j
	started := time.Now()
	running.State, running.StartedAt = engine.StateRunning, &started
	env, done := tr.AttemptStarting(&running)
	exit := 0
	done(engine.AttemptEnded{Completion: engine.Completion{State: engine.StateDone, Outcome: engine.OutcomeSucceeded, ExitCode: &exit},
		Job: &engine.Job{State: engine.StateDone}, Took: time.Millisecond})

	spans := exp.GetSpans()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want an enqueue and an attempt", len(spans))
	}
	enq, att := spans[0], spans[1]
	if enq.Name != "stq.enqueue" || att.Name != "stq.attempt" {
		t.Fatalf("spans %q, %q", enq.Name, att.Name)
	}
	if enq.SpanContext.TraceID() != jobTraceID(j.ID) || enq.SpanContext.SpanID() != enqueueSpanID(j.ID) {
		t.Error("the enqueue span's ids are not the job's")
	}
	if att.SpanContext.TraceID() != enq.SpanContext.TraceID() || att.Parent.SpanID() != enq.SpanContext.SpanID() {
		t.Error("the attempt is not a child of the enqueue")
	}
	if att.SpanContext.SpanID() == enq.SpanContext.SpanID() {
		t.Error("the attempt reuses the enqueue's span id")
	}
	want := "TRACEPARENT=00-" + att.SpanContext.TraceID().String() + "-" + att.SpanContext.SpanID().String() + "-01"
	if !slices.Equal(env, []string{want}) {
		t.Errorf("env = %q, want [%q]", env, want)
	}
	for key, want := range map[string]string{"stq.job.id": j.ID, "stq.queue": "default", "stq.type": "build",
		"stq.subject": "src/main.go", "stq.outcome": "succeeded", "stq.job.state": "DONE"} {
		if got := attr(att, key).Emit(); got != want {
			t.Errorf("attempt %s = %q, want %q", key, got, want)
		}
	}
	if attr(att, "stq.attempt").AsInt64() != 1 || attr(att, "stq.exit_code").AsInt64() != 0 || attr(enq, "stq.superseded").AsInt64() != 1 {
		t.Error("attempt, exit code or superseded count missing")
	}
	if att.Status.Code != codes.Unset || !att.StartTime.Equal(started) {
		t.Errorf("status %v, start %v (want unset, %v)", att.Status, att.StartTime, started)
	}
	if enq.SpanKind != trace.SpanKindProducer || att.SpanKind != trace.SpanKindConsumer {
		t.Errorf("kinds %v, %v", enq.SpanKind, att.SpanKind)
	}
}

func TestFailuresMarkTheSpan(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		ended engine.AttemptEnded
		code  codes.Code
		desc  string
	}{
		{"a failed attempt", engine.AttemptEnded{Completion: engine.Completion{Outcome: engine.OutcomeFailed, Reason: "exit status 3"}}, codes.Error, "exit status 3"},
		{"a store that refused the end", engine.AttemptEnded{Completion: engine.Completion{Outcome: engine.OutcomeSucceeded}, Err: errors.New("disk full")}, codes.Error, "store the attempt's end: disk full"},
		{"a cancelled attempt is no error", engine.AttemptEnded{Completion: engine.Completion{Outcome: engine.OutcomeCancelled}}, codes.Unset, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, exp := setup(t)
			_, done := tr.AttemptStarting(testJob())
			done(tt.ended)
			s := exp.GetSpans()[0]
			if s.Status.Code != tt.code || s.Status.Description != tt.desc {
				t.Errorf("status %v %q, want %v %q", s.Status.Code, s.Status.Description, tt.code, tt.desc)
			}
		})
	}
}

func TestEveryAttemptOfAJobSharesItsTrace(t *testing.T) {
	t.Parallel()
	tr, exp := setup(t)
	j := testJob()
	for range 2 { // a retry, or the same job run by a restarted daemon
		_, done := tr.AttemptStarting(j)
		done(engine.AttemptEnded{})
	}
	tr.Enqueued(engine.EnqueueResult{Job: &engine.Job{ID: "01JOTHERJOB000000000000000"}})
	s := exp.GetSpans()
	if s[0].SpanContext.TraceID() != s[1].SpanContext.TraceID() || s[0].SpanContext.SpanID() == s[1].SpanContext.SpanID() {
		t.Error("two attempts of one job are not two spans of one trace")
	}
	if s[2].SpanContext.TraceID() == s[0].SpanContext.TraceID() {
		t.Error("another job shares the trace")
	}
}

func TestExporters(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want []string
		err  string
	}{
		{"nothing set: off", nil, nil, ""},
		{"an endpoint turns otlp on", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, []string{"otlp"}, ""},
		{"a traces endpoint too", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, []string{"otlp"}, ""},
		{"the exporter named", map[string]string{"OTEL_TRACES_EXPORTER": "otlp"}, []string{"otlp"}, ""},
		{"a list", map[string]string{"OTEL_TRACES_EXPORTER": "otlp, console"}, []string{"otlp", "console"}, ""},
		{"none wins over an endpoint", map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, nil, ""},
		{"the SDK disabled", map[string]string{"OTEL_SDK_DISABLED": "TRUE", "OTEL_TRACES_EXPORTER": "otlp"}, nil, ""},
		{"an unknown exporter", map[string]string{"OTEL_TRACES_EXPORTER": "zipkin"}, nil, `"zipkin" is not an exporter stq has`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Exporters(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("Exporters = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestResourceNamesTheService(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=laptop")
	res, err := newResource(context.Background(), "v1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, kv := range res.Attributes() {
		got[string(kv.Key)] = kv.Value.Emit()
	}
	if got["service.name"] != "stq" || got["service.version"] != "v1.2.3" || got["deployment.environment"] != "laptop" {
		t.Fatalf("resource %v", got)
	}
	t.Setenv("OTEL_SERVICE_NAME", "builds")
	if res, err = newResource(context.Background(), "v1.2.3"); err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Set().Value("service.name"); v.Emit() != "builds" {
		t.Fatalf("OTEL_SERVICE_NAME ignored: %v", v.Emit())
	}
}

func TestUnknownProtocolIsAnError(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")
	if _, err := newExporter(context.Background(), "otlp", nil); err == nil || !strings.Contains(err.Error(), `"thrift"`) {
		t.Fatalf("err = %v", err)
	}
}
