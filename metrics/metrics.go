// Package metrics exposes the daemon's work to Prometheus: counters and
// histograms fed by the engine's Observer, gauges read from the store when
// scraped, and the Go runtime and process collectors.
package metrics

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"stq/engine"
)

const namespace = "stq"

// scrapeTimeout bounds the store query a scrape makes.
const scrapeTimeout = 5 * time.Second

// Buckets, in seconds. Attempts run from a few milliseconds (an in-process
// handler) to hours (a build); waits from microseconds (an idle daemon) to
// the backoff of a retry.
var (
	durationBuckets = []float64{.005, .025, .1, .5, 1, 2.5, 10, 30, 60, 300, 900, 3600, 14400}
	latencyBuckets  = []float64{.001, .005, .025, .1, .5, 1, 5, 30, 120, 600, 3600}
)

// StatsFunc reads the store's counts (engine.Engine.Stats).
type StatsFunc func(ctx context.Context) (engine.Stats, error)

// Metrics holds the daemon's metrics in a registry of its own (never the
// process-wide default). It is an engine.Observer and an ipc.ServerObserver.
type Metrics struct {
	reg *prometheus.Registry

	enqueued    *prometheus.CounterVec
	superseded  *prometheus.CounterVec
	started     *prometheus.CounterVec
	finished    *prometheus.CounterVec
	retried     *prometheus.CounterVec
	expired     *prometheus.CounterVec
	recovered   *prometheus.CounterVec
	duration    *prometheus.HistogramVec
	latency     *prometheus.HistogramVec
	rateLimited prometheus.Counter
	conns       prometheus.Counter
	openConns   prometheus.Gauge
}

// Options say where the scrape-time gauges come from.
type Options struct {
	// Stats reads the queue depths and the database size.
	Stats StatsFunc
	// WAL is the path of the database's write-ahead log; empty for a
	// store without one.
	WAL string
	// Version is reported by stq_build_info.
	Version string
}

// New returns the daemon's metrics, registered with a new registry.
func New(o Options) *Metrics {
	jobLabels := []string{"queue", "type"}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: name, Help: help}, labels)
	}
	m := &Metrics{
		reg:        prometheus.NewRegistry(),
		enqueued:   counter("jobs_enqueued_total", "Jobs stored by an enqueue, whatever state they arrived in.", jobLabels...),
		superseded: counter("jobs_superseded_total", "Jobs that became SUPERSEDED, by when: at enqueue (a newer generation arrived, or the job itself arrived outdated), at claim (a retry whose key has a newer generation), or running (replaced by a newer generation).", "queue", "type", "at"),
		started:    counter("jobs_started_total", "Attempts started.", jobLabels...),
		finished:   counter("jobs_finished_total", "Attempts ended, by outcome.", "queue", "type", "outcome"),
		retried:    counter("jobs_retried_total", "Failed attempts that left the job QUEUED for another attempt.", jobLabels...),
		expired:    counter("jobs_expired_total", "QUEUED jobs that passed their TTL and became EXPIRED.", jobLabels...),
		recovered:  counter("jobs_recovered_total", "Attempts a dead daemon left RUNNING, ended by recovery.", jobLabels...),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "attempt_duration_seconds",
			Help: "How long attempts ran, by outcome.", Buckets: durationBuckets}, []string{"queue", "type", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: namespace, Name: "start_latency_seconds",
			Help: "From when an attempt was due (run_at, or the enqueue) to its start.", Buckets: latencyBuckets}, []string{"queue"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "rpc_rate_limited_total",
			Help: "Enqueue requests refused by a rate limit."}),
		conns: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "socket_connections_total",
			Help: "Connections accepted on the daemon's socket."}),
		openConns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: namespace, Name: "socket_connections_open",
			Help: "Connections open on the daemon's socket."}),
	}
	m.reg.MustRegister(m.enqueued, m.superseded, m.started, m.finished, m.retried, m.expired, m.recovered,
		m.duration, m.latency, m.rateLimited, m.conns, m.openConns,
		newStoreCollector(o),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

// Registry is where the metrics are, for a handler or a test to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Enqueued counts a stored job and the jobs it superseded.
func (m *Metrics) Enqueued(res engine.EnqueueResult) {
	j := res.Job
	m.enqueued.WithLabelValues(j.Queue, j.Type).Inc()
	n := len(res.Superseded)
	if j.State == engine.StateSuperseded {
		n++
	}
	if n > 0 {
		m.superseded.WithLabelValues(j.Queue, j.Type, "enqueue").Add(float64(n))
	}
}

// AttemptStarting counts the start and its wait, and returns the counting of
// its end.
func (m *Metrics) AttemptStarting(j *engine.Job) ([]string, func(engine.AttemptEnded)) {
	m.started.WithLabelValues(j.Queue, j.Type).Inc()
	start := time.Now()
	if j.StartedAt != nil {
		start = *j.StartedAt
	}
	due := j.RunAt
	if due.Before(j.CreatedAt) {
		due = j.CreatedAt
	}
	m.latency.WithLabelValues(j.Queue).Observe(max(start.Sub(due), 0).Seconds())
	queue, typ := j.Queue, j.Type
	return nil, func(a engine.AttemptEnded) { m.attemptEnded(queue, typ, a) }
}

func (m *Metrics) attemptEnded(queue, typ string, a engine.AttemptEnded) {
	outcome := string(a.Completion.Outcome)
	m.finished.WithLabelValues(queue, typ, outcome).Inc()
	m.duration.WithLabelValues(queue, typ, outcome).Observe(a.Took.Seconds())
	switch {
	case a.Completion.Outcome == engine.OutcomeSuperseded:
		m.superseded.WithLabelValues(queue, typ, "running").Inc()
	case a.Completion.State != engine.StateQueued || a.Completion.Outcome == engine.OutcomeInterrupted:
		// Not a retry: finished for good, or given back at shutdown.
	case a.Job != nil && a.Job.State == engine.StateSuperseded:
		m.superseded.WithLabelValues(queue, typ, "claim").Inc()
	default:
		m.retried.WithLabelValues(queue, typ).Inc()
	}
}

// Expired counts jobs that passed their TTL. The dependents cancelled with
// them are not expired and are not counted.
func (m *Metrics) Expired(jobs []*engine.Job) {
	for _, j := range jobs {
		if j.State == engine.StateExpired {
			m.expired.WithLabelValues(j.Queue, j.Type).Inc()
		}
	}
}

// Recovered counts an attempt of a dead daemon ended by recovery.
func (m *Metrics) Recovered(j *engine.Job) { m.recovered.WithLabelValues(j.Queue, j.Type).Inc() }

// Pulse: the dispatcher's rounds are not counted.
func (m *Metrics) Pulse() {}

// ConnOpened, ConnClosed and RateLimited make Metrics an
// ipc.ServerObserver.
func (m *Metrics) ConnOpened()  { m.conns.Inc(); m.openConns.Inc() }
func (m *Metrics) ConnClosed()  { m.openConns.Dec() }
func (m *Metrics) RateLimited() { m.rateLimited.Inc() }

var _ engine.Observer = (*Metrics)(nil)

// storeCollector reads queue depths and file sizes when scraped, so the
// store pays nothing while nobody scrapes.
type storeCollector struct {
	opts    Options
	jobs    *prometheus.Desc
	workers *prometheus.Desc
	dbBytes *prometheus.Desc
	wal     *prometheus.Desc
	build   *prometheus.Desc
}

func newStoreCollector(o Options) *storeCollector {
	name := func(n string) string { return prometheus.BuildFQName(namespace, "", n) }
	return &storeCollector{
		opts:    o,
		jobs:    prometheus.NewDesc(name("jobs"), "Jobs stored, by queue and state.", []string{"queue", "state"}, nil),
		workers: prometheus.NewDesc(name("workers"), "How many jobs may run at once.", nil, nil),
		dbBytes: prometheus.NewDesc(name("database_bytes"), "Size of the database on disk.", nil, nil),
		wal:     prometheus.NewDesc(name("database_wal_bytes"), "Size of the database's write-ahead log.", nil, nil),
		build:   prometheus.NewDesc(name("build_info"), "Always 1; the version label is the daemon's.", []string{"version"}, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.jobs, c.workers, c.dbBytes, c.wal, c.build} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, c.opts.Version)
	if c.opts.WAL != "" {
		fi, err := os.Stat(c.opts.WAL)
		switch {
		case err == nil:
			ch <- prometheus.MustNewConstMetric(c.wal, prometheus.GaugeValue, float64(fi.Size()))
		case errors.Is(err, fs.ErrNotExist): // checkpointed away, or not yet written
			ch <- prometheus.MustNewConstMetric(c.wal, prometheus.GaugeValue, 0)
		default:
			ch <- prometheus.NewInvalidMetric(c.wal, err)
		}
	}
	if c.opts.Stats == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.opts.Stats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.jobs, err)
		return
	}
	for queue, states := range st.Queues {
		for state, n := range states {
			ch <- prometheus.MustNewConstMetric(c.jobs, prometheus.GaugeValue, float64(n), queue, string(state))
		}
	}
	ch <- prometheus.MustNewConstMetric(c.workers, prometheus.GaugeValue, float64(st.Workers))
	ch <- prometheus.MustNewConstMetric(c.dbBytes, prometheus.GaugeValue, float64(st.DBBytes))
}
