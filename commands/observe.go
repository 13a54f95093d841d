package commands

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"time"

	"stq/engine"
	"stq/ipc"
	"stq/metrics"
	"stq/systemd"
	"stq/tracing"
)

// traceFlushTimeout bounds the wait for the last spans to reach the
// collector at shutdown: a collector that is down must not hold the daemon.
const traceFlushTimeout = 5 * time.Second

// observability is what the daemon tells the world outside its socket:
// sd_notify messages, Prometheus metrics, OpenTelemetry traces. Each part is
// nil unless configured (NOTIFY_SOCKET, [metrics] listen, OTEL_*), and a
// daemon with none of them runs exactly as it would without this code.
type observability struct {
	log       *slog.Logger
	notifier  *systemd.Notifier
	metrics   *metrics.Metrics
	metricsLn net.Listener
	tracer    *tracing.Tracer
	// eng is set once the engine exists (it needs the observer first); the
	// status line and the scrape-time gauges read it, which only happens
	// after run.
	eng *engine.Engine

	stopMetrics context.CancelFunc
	metricsDone chan struct{}
}

// newObservability sets up the parts the environment and config ask for.
// The metrics listener is opened here, so a taken port fails the start.
func newObservability(ctx context.Context, cfg Config, p Paths, version string, log *slog.Logger, stderr io.Writer) (*observability, error) {
	o := &observability{log: log}
	stats := func(ctx context.Context) (engine.Stats, error) { return o.eng.Stats(ctx) }
	var err error
	if o.tracer, err = tracing.FromEnv(ctx, version, stderr); err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	if o.notifier, err = systemd.New(func(ctx context.Context) (string, error) {
		st, err := stats(ctx)
		if err != nil {
			return "", err
		}
		var queued int64
		for _, states := range st.Queues {
			queued += states[engine.StateQueued]
		}
		return fmt.Sprintf("running %d, queued %d", st.Running, queued), nil
	}, log); err != nil {
		o.close()
		return nil, err
	}
	if cfg.MetricsListen != "" {
		o.metrics = metrics.New(metrics.Options{Stats: stats, WAL: p.DB + "-wal", Version: version})
		if metrics.IsSocketPath(cfg.MetricsListen) {
			o.metricsLn, err = ipc.Listen(cfg.MetricsListen)
		} else {
			o.metricsLn, err = net.Listen("tcp", cfg.MetricsListen)
		}
		if err != nil {
			o.close()
			return nil, fmt.Errorf("metrics.listen: %w", err)
		}
	}
	return o, nil
}

// observer is the engine's Observer: all the parts that are on, or nil.
func (o *observability) observer() engine.Observer {
	var obs observers
	if o.notifier != nil {
		obs = append(obs, o.notifier)
	}
	if o.metrics != nil {
		obs = append(obs, o.metrics)
	}
	if o.tracer != nil {
		obs = append(obs, o.tracer)
	}
	switch len(obs) {
	case 0:
		return nil
	case 1:
		return obs[0]
	}
	return obs
}

// serverObserver is the socket server's observer, or nil (an untyped nil:
// the server checks for it).
func (o *observability) serverObserver() ipc.ServerObserver {
	if o.metrics == nil {
		return nil
	}
	return o.metrics
}

// pulse is the engine's Config.Pulse: what the watchdog needs, or 0.
func (o *observability) pulse() time.Duration { return o.notifier.PulseInterval() }

// run says READY=1 (the daemon calls it once its socket accepts
// connections), starts the notifier, which says STOPPING=1 when shutdown
// ends, and the metrics server, which keeps answering until close so that a
// scrape during the shutdown grace still works. The returned wait returns
// once the notifier has.
func (o *observability) run(shutdown context.Context, eng *engine.Engine) (wait func()) {
	o.eng = eng
	o.notifier.Ready()
	notified := make(chan struct{})
	go func() { o.notifier.Run(shutdown); close(notified) }()
	if o.metricsLn != nil {
		var ctx context.Context
		ctx, o.stopMetrics = context.WithCancel(context.WithoutCancel(shutdown))
		o.metricsDone = make(chan struct{})
		ln := o.metricsLn
		o.metricsLn = nil // Serve owns it now
		go func() {
			defer close(o.metricsDone)
			if err := metrics.Serve(ctx, ln, o.metrics.Handler(), o.log); err != nil {
				o.log.Error("metrics server stopped", "err", err)
			}
		}()
		o.log.Info("metrics served", "listen", ln.Addr().String())
	}
	return func() { <-notified }
}

// close stops the metrics server and sends the spans still buffered; the
// daemon calls it once the engine has stopped, so every attempt's span has
// ended.
func (o *observability) close() {
	if o.stopMetrics != nil {
		o.stopMetrics()
		<-o.metricsDone
	}
	if o.metricsLn != nil {
		o.metricsLn.Close()
	}
	if o.tracer != nil {
		ctx, cancel := context.WithTimeout(context.Background(), traceFlushTimeout)
		defer cancel()
		if err := o.tracer.Shutdown(ctx); err != nil {
			o.log.Warn("tracing: spans not sent at shutdown", "err", err)
		}
	}
}

// daemonListener is the socket the service manager passed (socket
// activation) or, without one, a socket the daemon creates.
func daemonListener(path string, log *slog.Logger) (net.Listener, error) {
	ln, err := ipc.Inherited(path)
	if err != nil {
		return nil, err
	}
	if ln != nil {
		log.Info("serving the socket the service manager passed", "socket", path)
		return ln, nil
	}
	return ipc.Listen(path)
}

// observers tells each of several Observers, in order.
type observers []engine.Observer

func (obs observers) Enqueued(res engine.EnqueueResult) {
	for _, o := range obs {
		o.Enqueued(res)
	}
}

func (obs observers) AttemptStarting(j *engine.Job) ([]string, func(engine.AttemptEnded)) {
	var env []string
	dones := make([]func(engine.AttemptEnded), 0, len(obs))
	for _, o := range obs {
		e, done := o.AttemptStarting(j)
		env = append(env, e...)
		if done != nil {
			dones = append(dones, done)
		}
	}
	return env, func(a engine.AttemptEnded) {
		for _, done := range dones {
			done(a)
		}
	}
}

func (obs observers) Expired(jobs []*engine.Job) {
	for _, o := range obs {
		o.Expired(jobs)
	}
}

func (obs observers) Recovered(j *engine.Job) {
	for _, o := range obs {
		o.Recovered(j)
	}
}

func (obs observers) Pulse() {
	for _, o := range obs {
		o.Pulse()
	}
}
