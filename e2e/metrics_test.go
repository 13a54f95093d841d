package e2e

// Prometheus metrics of the real daemon: the endpoint is scraped before
// and after jobs run, and the values must have moved by what the jobs did.

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

type scraped map[string]*dto.MetricFamily

func scrapeMetrics(t *testing.T, c *http.Client, url string) scraped {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return fams
}

// value sums the series of name whose labels include want: a counter's or
// gauge's value, a histogram's count of observations.
func (s scraped) value(name string, want map[string]string) float64 {
	f, ok := s[name]
	if !ok {
		return -1
	}
	var sum float64
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Histogram != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func TestMetricsMoveAsJobsRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		listen func(e *testEnv) string
		client func(listen string) (*http.Client, string)
	}{
		{"on a loopback port", func(*testEnv) string { return freeTCPAddr(t) },
			func(listen string) (*http.Client, string) { return http.DefaultClient, "http://" + listen + "/metrics" }},
		{"on a Unix socket", func(e *testEnv) string { return e.path("metrics.sock") },
			func(listen string) (*http.Client, string) {
				tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "unix", listen)
				}}
				return &http.Client{Transport: tr, Timeout: 30 * time.Second}, "http://stq/metrics"
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			listen := tt.listen(e)
			e.configure(fmt.Sprintf("[metrics]\nlisten = %q\n", listen))
			e.startDaemon()
			client, url := tt.client(listen)
			if strings.HasPrefix(listen, "/") {
				if fi, err := os.Stat(listen); err != nil || fi.Mode().Perm() != 0o600 {
					t.Fatalf("metrics socket: %v %v, want mode 0600", fi.Mode(), err)
				}
			}
			checkMetricsMove(t, e, client, url)
		})
	}
}

func checkMetricsMove(t *testing.T, e *testEnv, client *http.Client, url string) {
	before := scrapeMetrics(t, client, url)
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "stq_database_bytes", "stq_build_info", "stq_workers"} {
		if before.value(name, nil) <= 0 {
			t.Errorf("%s missing or zero before any job", name)
		}
	}
	for range 3 {
		e.ok("wait", e.ok("enqueue", "--queue", "mq", "--", "true"))
	}
	failing := e.ok("enqueue", "--queue", "mq", "--max-attempts", "2", "--backoff", "10ms", "--", "false")
	e.run("wait", failing)
	e.waitState(failing, "FAILED")
	// Two generations of one subject while the first waits for a minute:
	// the second supersedes the first at enqueue.
	e.ok("enqueue", "--queue", "mq", "--subject", "s", "--in", "1m", "--", "true")
	e.ok("enqueue", "--queue", "mq", "--subject", "s", "--in", "1m", "--", "true")
	after := scrapeMetrics(t, client, url)

	q := map[string]string{"queue": "mq"}
	with := func(k, v string) map[string]string { return map[string]string{"queue": "mq", k: v} }
	for _, c := range []struct {
		name   string
		labels map[string]string
		moved  float64
	}{
		{"stq_jobs_enqueued_total", q, 6},
		{"stq_jobs_started_total", q, 5},
		{"stq_jobs_finished_total", with("outcome", "succeeded"), 3},
		{"stq_jobs_finished_total", with("outcome", "failed"), 2},
		{"stq_jobs_retried_total", q, 1},
		{"stq_jobs_superseded_total", with("at", "enqueue"), 1},
		{"stq_attempt_duration_seconds", with("outcome", "succeeded"), 3},
		{"stq_start_latency_seconds", q, 5},
		{"stq_jobs", with("state", "DONE"), 3},
		{"stq_jobs", with("state", "FAILED"), 1},
		{"stq_jobs", with("state", "QUEUED"), 1},
		{"stq_jobs", with("state", "SUPERSEDED"), 1},
	} {
		b, a := max(before.value(c.name, c.labels), 0), after.value(c.name, c.labels)
		if a-b != c.moved {
			t.Errorf("%s%v moved from %v to %v, want +%v", c.name, c.labels, b, a, c.moved)
		}
	}
	// Every CLI command above is a connection; the scrape's own are not.
	if b, a := before.value("stq_socket_connections_total", nil), after.value("stq_socket_connections_total", nil); a-b < 11 {
		t.Errorf("socket connections moved from %v to %v, want at least +11 (one per command)", b, a)
	}
	if after.value("stq_socket_connections_open", nil) < 0 || after.value("stq_rpc_rate_limited_total", nil) != 0 {
		t.Error("open connections or rate-limited requests wrong")
	}
	if after.value("stq_database_wal_bytes", nil) < 0 {
		t.Error("no WAL size")
	}
}

func TestMetricsListenMustBeLocal(t *testing.T) {
	t.Parallel()
	for _, listen := range []string{"0.0.0.0:9464", "metrics.sock"} {
		e := newEnv(t)
		e.configure(fmt.Sprintf("[metrics]\nlisten = %q\n", listen))
		r := e.run("daemon")
		if r.code == 0 || !strings.Contains(r.stderr, "metrics.listen") {
			t.Errorf("daemon with metrics.listen = %q: exit %d, stderr %q", listen, r.code, r.stderr)
		}
		if _, err := os.Stat(e.path("stq.sock")); err == nil {
			t.Errorf("metrics.listen = %q: the daemon made its socket before refusing the config", listen)
		}
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()
	if strings.Contains(d.output(), "metrics served") {
		t.Fatalf("metrics served without [metrics] listen:\n%s", d.output())
	}
}
