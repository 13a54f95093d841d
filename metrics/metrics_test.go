package metrics

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"stq/engine"
)

func job(state engine.State) *engine.Job {
	return &engine.Job{ID: "j1", Queue: "q", Type: "build", Subject: "s", State: state}
}

func TestEnqueuedCountsSupersededAtEnqueue(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.Enqueued(engine.EnqueueResult{Job: job(engine.StateQueued)})
	m.Enqueued(engine.EnqueueResult{Job: job(engine.StateQueued), Superseded: []string{"a", "b"}})
	m.Enqueued(engine.EnqueueResult{Job: job(engine.StateSuperseded)})
	if got := testutil.ToFloat64(m.enqueued.WithLabelValues("q", "build")); got != 3 {
		t.Errorf("enqueued = %v, want 3", got)
	}
	if got := testutil.ToFloat64(m.superseded.WithLabelValues("q", "build", "enqueue")); got != 3 {
		t.Errorf("superseded at enqueue = %v, want 3 (two older jobs, one outdated arrival)", got)
	}
}

func TestAttemptEndsAreClassified(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		completion engine.Completion
		stored     *engine.Job
		retried    float64
		superseded map[string]float64
	}{
		{"a success is no retry", engine.Completion{State: engine.StateDone, Outcome: engine.OutcomeSucceeded}, job(engine.StateDone), 0, nil},
		{"a final failure is no retry", engine.Completion{State: engine.StateFailed, Outcome: engine.OutcomeFailed}, job(engine.StateFailed), 0, nil},
		{"a failure left QUEUED is a retry", engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeFailed}, job(engine.StateQueued), 1, nil},
		{"a retry of an outdated generation is superseded at claim", engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeFailed}, job(engine.StateSuperseded), 0, map[string]float64{"claim": 1}},
		{"a replaced running job is superseded running", engine.Completion{State: engine.StateSuperseded, Outcome: engine.OutcomeSuperseded}, job(engine.StateSuperseded), 0, map[string]float64{"running": 1}},
		{"an interrupted attempt is given back, not retried", engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeInterrupted, Refund: true}, job(engine.StateQueued), 0, nil},
		{"a refused completion still counts its retry", engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeFailed}, nil, 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{})
			_, done := m.AttemptStarting(job(engine.StateRunning))
			done(engine.AttemptEnded{Completion: tt.completion, Job: tt.stored, Took: 1500 * time.Millisecond})
			outcome := string(tt.completion.Outcome)
			if got := testutil.ToFloat64(m.started.WithLabelValues("q", "build")); got != 1 {
				t.Errorf("started = %v, want 1", got)
			}
			if got := testutil.ToFloat64(m.finished.WithLabelValues("q", "build", outcome)); got != 1 {
				t.Errorf("finished{outcome=%s} = %v, want 1", outcome, got)
			}
			if got := testutil.ToFloat64(m.retried.WithLabelValues("q", "build")); got != tt.retried {
				t.Errorf("retried = %v, want %v", got, tt.retried)
			}
			for _, at := range []string{"enqueue", "claim", "running"} {
				if got := testutil.ToFloat64(m.superseded.WithLabelValues("q", "build", at)); got != tt.superseded[at] {
					t.Errorf("superseded{at=%s} = %v, want %v", at, got, tt.superseded[at])
				}
			}
			want := "\nstq_attempt_duration_seconds_bucket{outcome=\"" + outcome + "\",queue=\"q\",type=\"build\",le=\"2.5\"} 1\n"
			if text := scrape(t, m); !strings.Contains(text, want) {
				t.Errorf("no %q in\n%s", strings.TrimSpace(want), text)
			}
		})
	}
}

func TestStartLatencyRunsFromTheDueTime(t *testing.T) {
	t.Parallel()
	created := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name         string
		runAt, start time.Time
		bucket       string // the smallest bucket holding the observation
	}{
		{"due at enqueue", created, created.Add(3 * time.Millisecond), "0.005"},
		{"scheduled later: from run_at", created.Add(time.Hour), created.Add(time.Hour + 2*time.Second), "5"},
		{"run_at before the enqueue: from the enqueue", created.Add(-time.Hour), created.Add(20 * time.Millisecond), "0.025"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(Options{})
			j := job(engine.StateRunning)
			j.CreatedAt, j.RunAt, j.StartedAt = created, tt.runAt, &tt.start
			m.AttemptStarting(j)
			want := "\nstq_start_latency_seconds_bucket{queue=\"q\",le=\"" + tt.bucket + "\"} 1\n"
			if text := scrape(t, m); !strings.Contains(text, want) {
				t.Errorf("no %q in\n%s", strings.TrimSpace(want), text)
			}
		})
	}
}

func TestExpiredSkipsCancelledDependents(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.Expired([]*engine.Job{job(engine.StateExpired), job(engine.StateCancelled)})
	m.Recovered(job(engine.StateQueued))
	if got := testutil.ToFloat64(m.expired.WithLabelValues("q", "build")); got != 1 {
		t.Errorf("expired = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.recovered.WithLabelValues("q", "build")); got != 1 {
		t.Errorf("recovered = %v, want 1", got)
	}
}

func TestConnectionsAndRateLimits(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.RateLimited()
	for name, tt := range map[string]struct{ got, want float64 }{
		"connections": {testutil.ToFloat64(m.conns), 2},
		"open":        {testutil.ToFloat64(m.openConns), 1},
		"rate":        {testutil.ToFloat64(m.rateLimited), 1},
	} {
		if tt.got != tt.want {
			t.Errorf("%s = %v, want %v", name, tt.got, tt.want)
		}
	}
}

func TestStoreGaugesAreReadAtScrape(t *testing.T) {
	t.Parallel()
	wal := filepath.Join(t.TempDir(), "stq.db-wal")
	if err := os.WriteFile(wal, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	calls := 0
	m := New(Options{WAL: wal, Version: "v1.2.3", Stats: func(context.Context) (engine.Stats, error) {
		calls++
		return engine.Stats{Workers: 4, StoreStats: engine.StoreStats{DBBytes: 8192,
			Queues: map[string]map[engine.State]int64{"q": {engine.StateQueued: 5, engine.StateDone: 2}}}}, nil
	}})
	if calls != 0 {
		t.Fatal("the store was read before any scrape")
	}
	text := scrape(t, m)
	for _, want := range []string{
		`stq_jobs{queue="q",state="QUEUED"} 5`, `stq_jobs{queue="q",state="DONE"} 2`,
		"stq_workers 4", "stq_database_bytes 8192", "stq_database_wal_bytes 4096",
		`stq_build_info{version="v1.2.3"} 1`, "go_goroutines ", "process_resident_memory_bytes ",
	} {
		if !strings.Contains(text, "\n"+want) {
			t.Errorf("no %q in the exposition", want)
		}
	}
	if calls != 1 {
		t.Errorf("one scrape read the store %d times", calls)
	}
}

func TestAStoreErrorFailsOnlyItsMetrics(t *testing.T) {
	t.Parallel()
	m := New(Options{Stats: func(context.Context) (engine.Stats, error) { return engine.Stats{}, errors.New("disk I/O error") }})
	m.RateLimited()
	text := scrape(t, m)
	if !strings.Contains(text, "stq_rpc_rate_limited_total 1") {
		t.Errorf("the other metrics are gone:\n%s", text)
	}
}

func TestCheckListen(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:9464", true},
		{"[::1]:9464", true},
		{"localhost:9464", true},
		{"127.0.0.2:0", true},
		{"/run/stq/metrics.sock", true},
		{"0.0.0.0:9464", false},
		{":9464", false},
		{"192.168.1.10:9464", false},
		{"example.com:9464", false},
		{"127.0.0.1", false},
		{"metrics.sock", false},
	}
	for _, tt := range tests {
		if err := CheckListen(tt.addr); (err == nil) != tt.ok {
			t.Errorf("CheckListen(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func TestServeAnswersUntilCancelled(t *testing.T) {
	t.Parallel()
	m := New(Options{})
	m.ConnOpened()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, m.Handler(), slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "stq_socket_connections_total 1") {
		t.Fatalf("GET /metrics: %s\n%s", resp.Status, body)
	}
	if resp, err := http.Get("http://" + ln.Addr().String() + "/other"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /other: %v %v", resp, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("the listener is still open after Serve returned")
	}
}

// scrape returns the registry's exposition, as a scrape would see it.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return "\n" + rec.Body.String()
}

// TestEveryMetricIsDocumented keeps docs/OBSERVABILITY.md's table whole.
func TestEveryMetricIsDocumented(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../docs/OBSERVABILITY.md")
	if err != nil {
		t.Fatal(err)
	}
	m := New(Options{WAL: filepath.Join(t.TempDir(), "none"), Stats: func(context.Context) (engine.Stats, error) {
		return engine.Stats{StoreStats: engine.StoreStats{Queues: map[string]map[engine.State]int64{"q": {engine.StateQueued: 1}}}}, nil
	}})
	// Give every vector a series, so that Gather returns its family.
	m.Enqueued(engine.EnqueueResult{Job: job(engine.StateSuperseded)})
	_, done := m.AttemptStarting(job(engine.StateRunning))
	done(engine.AttemptEnded{Completion: engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeFailed}})
	m.Expired([]*engine.Job{job(engine.StateExpired)})
	m.Recovered(job(engine.StateQueued))
	fams, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range fams {
		name := f.GetName()
		if !strings.HasPrefix(name, "stq_") {
			continue
		}
		n++
		if !strings.Contains(string(doc), "| `"+name+"` |") {
			t.Errorf("%s is not in docs/OBSERVABILITY.md's table", name)
		}
	}
	if n != 17 {
		t.Errorf("gathered %d stq_ metrics; the docs list 17", n)
	}
}
