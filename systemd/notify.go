// Package systemd tells a service manager how the daemon is doing, over the
// sd_notify protocol: ready, a one-line status, watchdog pings, stopping.
// Without NOTIFY_SOCKET in the environment there is no Notifier at all.
package systemd

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"stq/engine"
)

// StatusEvery is the most often the status line is refreshed: systemctl
// status shows it, and nothing needs it fresher.
const StatusEvery = time.Second

// statusTimeout bounds the status query, so a wedged store delays only the
// status line, never the watchdog.
const statusTimeout = 5 * time.Second

// StatusFunc returns the status line, such as "running 2, queued 5".
type StatusFunc func(ctx context.Context) (string, error)

// Notifier sends the notifications. It is an engine.Observer: the
// dispatcher's Pulse feeds the watchdog, and job events mark the status line
// for a refresh. Run does the sending, so the engine's paths never wait on
// the service manager.
type Notifier struct {
	log    *slog.Logger
	status StatusFunc
	// watchdog is WATCHDOG_USEC: the service manager kills the daemon if
	// no WATCHDOG=1 comes within it. Zero: no watchdog.
	watchdog time.Duration
	send     func(state string) error
	now      func() time.Time

	pulses chan struct{}
	dirty  atomic.Bool
}

// New returns a Notifier when the daemon runs under a service manager that
// listens (NOTIFY_SOCKET is set), else nil. It reads WATCHDOG_USEC and
// WATCHDOG_PID (a watchdog meant for another process is none of ours) and
// removes them from the environment, which the daemon's jobs inherit.
// NOTIFY_SOCKET stays: go-systemd reads it at every send. A job writing to
// it is ignored under systemd's default NotifyAccess=main.
func New(status StatusFunc, log *slog.Logger) (*Notifier, error) {
	wd, err := daemon.SdWatchdogEnabled(true)
	if err != nil {
		return nil, fmt.Errorf("systemd watchdog: %w", err)
	}
	if os.Getenv("NOTIFY_SOCKET") == "" {
		return nil, nil
	}
	return newNotifier(status, wd, log, func(state string) error {
		_, err := daemon.SdNotify(false, state)
		return err
	}, time.Now), nil
}

func newNotifier(status StatusFunc, watchdog time.Duration, log *slog.Logger, send func(string) error, now func() time.Time) *Notifier {
	n := &Notifier{log: log, status: status, watchdog: watchdog, send: send, now: now,
		pulses: make(chan struct{}, 1)}
	n.dirty.Store(true)
	return n
}

// PulseInterval is how often the engine must report its dispatcher going
// round (engine.Config.Pulse) for the watchdog to be fed in time: half the
// watchdog interval, as sd_watchdog_enabled(3) advises. Zero without a
// watchdog.
func (n *Notifier) PulseInterval() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog / 2
}

// Ready sends READY=1: call it once the socket accepts connections.
func (n *Notifier) Ready() {
	if n != nil {
		n.notify(daemon.SdNotifyReady)
	}
}

// Run sends the watchdog pings and status lines until ctx ends, then
// STOPPING=1: the daemon cancels ctx when its shutdown begins.
func (n *Notifier) Run(ctx context.Context) {
	if n == nil {
		return
	}
	var lastPing time.Time
	tick := time.NewTicker(StatusEvery)
	defer tick.Stop()
	n.refresh(ctx)
	for {
		select {
		case <-ctx.Done():
			n.notify(daemon.SdNotifyStopping)
			return
		case <-n.pulses:
			lastPing = n.ping(lastPing)
		case <-tick.C:
			n.refresh(ctx)
		}
	}
}

// ping sends WATCHDOG=1 unless one went out less than a quarter of the
// interval ago: pulses come at least every half interval, and often far
// more (every dispatcher round), so this keeps the gap between two pings
// under three quarters of the interval while sending a few a period.
func (n *Notifier) ping(last time.Time) time.Time {
	if n.watchdog <= 0 {
		return last
	}
	now := n.now()
	if !last.IsZero() && now.Sub(last) < n.watchdog/4 {
		return last
	}
	n.notify(daemon.SdNotifyWatchdog)
	return now
}

// refresh sends the status line if a job event came since the last one.
func (n *Notifier) refresh(ctx context.Context) {
	if !n.dirty.Swap(false) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	s, err := n.status(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("systemd: status not sent", "err", err)
		}
		n.dirty.Store(true) // try again at the next tick
		return
	}
	n.notify("STATUS=" + s)
}

func (n *Notifier) notify(state string) {
	if err := n.send(state); err != nil {
		n.log.Warn("systemd: notify failed", "state", state, "err", err)
	}
}

// The engine.Observer side. Pulse must not block the dispatcher: a pulse
// already waiting says all the next one would.

func (n *Notifier) Enqueued(engine.EnqueueResult) { n.dirty.Store(true) }

func (n *Notifier) AttemptStarting(*engine.Job) ([]string, func(engine.AttemptEnded)) {
	n.dirty.Store(true)
	return nil, n.attemptEnded
}

func (n *Notifier) attemptEnded(engine.AttemptEnded) { n.dirty.Store(true) }

func (n *Notifier) Expired([]*engine.Job) { n.dirty.Store(true) }

func (n *Notifier) Recovered(*engine.Job) { n.dirty.Store(true) }

func (n *Notifier) Pulse() {
	select {
	case n.pulses <- struct{}{}:
	default:
	}
}

var _ engine.Observer = (*Notifier)(nil)
