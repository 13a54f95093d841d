package systemd

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"stq/engine"
)

type sent struct {
	mu     sync.Mutex
	states []string
}

func (s *sent) send(state string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.states = append(s.states, state)
	return nil
}

func (s *sent) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.states)
}

func TestPingIsRateLimitedToAQuarterOfTheInterval(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		after []time.Duration // pulse times, from base
		want  int             // WATCHDOG=1 sent
	}{
		{"the first pulse pings", []time.Duration{0}, 1},
		{"pulses closer than a quarter ping once", []time.Duration{0, 100 * time.Millisecond, 400 * time.Millisecond}, 1},
		{"a pulse a quarter later pings again", []time.Duration{0, 500 * time.Millisecond}, 2},
		{"pulses every half interval all ping", []time.Duration{0, time.Second, 2 * time.Second, 3 * time.Second}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s sent
			var now time.Time
			n := newNotifier(nil, 2*time.Second, slog.New(slog.DiscardHandler), s.send, func() time.Time { return now })
			if got := n.PulseInterval(); got != time.Second {
				t.Fatalf("PulseInterval = %v, want 1s", got)
			}
			var last time.Time
			for _, d := range tt.after {
				now = base.Add(d)
				last = n.ping(last)
			}
			if got := len(s.all()); got != tt.want {
				t.Fatalf("sent %d pings (%v), want %d", got, s.all(), tt.want)
			}
		})
	}
}

func TestNoWatchdogSendsNoPing(t *testing.T) {
	t.Parallel()
	var s sent
	n := newNotifier(nil, 0, slog.New(slog.DiscardHandler), s.send, time.Now)
	n.ping(time.Time{})
	if len(s.all()) != 0 || n.PulseInterval() != 0 {
		t.Fatalf("sent %v with no watchdog", s.all())
	}
}

func TestStatusIsSentOnlyAfterAnEvent(t *testing.T) {
	t.Parallel()
	var s sent
	calls := 0
	status := func(context.Context) (string, error) {
		calls++
		return "running 1, queued 2", nil
	}
	n := newNotifier(status, 0, slog.New(slog.DiscardHandler), s.send, time.Now)
	ctx := context.Background()
	n.refresh(ctx) // the first status, at start
	n.refresh(ctx) // nothing happened
	n.Pulse()      // the dispatcher going round is no job event
	n.refresh(ctx)
	_, done := n.AttemptStarting(&engine.Job{})
	n.refresh(ctx)
	done(engine.AttemptEnded{})
	n.refresh(ctx)
	want := []string{"STATUS=running 1, queued 2", "STATUS=running 1, queued 2", "STATUS=running 1, queued 2"}
	if got := s.all(); !slices.Equal(got, want) || calls != 3 {
		t.Fatalf("sent %q after %d status calls, want %q", got, calls, want)
	}
}

func TestFailedStatusIsRetried(t *testing.T) {
	t.Parallel()
	var s sent
	fail := true
	status := func(context.Context) (string, error) {
		if fail {
			return "", errors.New("database is locked")
		}
		return "running 0, queued 0", nil
	}
	n := newNotifier(status, 0, slog.New(slog.DiscardHandler), s.send, time.Now)
	n.refresh(context.Background())
	fail = false
	n.refresh(context.Background())
	if got := s.all(); !slices.Equal(got, []string{"STATUS=running 0, queued 0"}) {
		t.Fatalf("sent %q", got)
	}
}

func TestRunPingsOnPulseAndSaysStoppingAtTheEnd(t *testing.T) {
	t.Parallel()
	var s sent
	status := func(context.Context) (string, error) { return "running 0, queued 0", nil }
	n := newNotifier(status, time.Hour, slog.New(slog.DiscardHandler), s.send, time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx); close(done) }()
	n.Pulse()
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(s.all(), "WATCHDOG=1") {
		if time.Now().After(deadline) {
			t.Fatalf("no WATCHDOG=1 after a pulse: %q", s.all())
		}
		time.Sleep(time.Millisecond) // waiting on Run's goroutine, not on logic
	}
	cancel()
	<-done
	got := s.all()
	if got[0] != "STATUS=running 0, queued 0" || got[len(got)-1] != "STOPPING=1" {
		t.Fatalf("sent %q: want the status first and STOPPING=1 last", got)
	}
}

func TestNilNotifierDoesNothing(t *testing.T) {
	t.Parallel()
	var n *Notifier
	n.Ready()
	n.Run(context.Background())
	if n.PulseInterval() != 0 {
		t.Fatal("a nil notifier asks for pulses")
	}
}
