package engine

import (
	"sync"
	"time"
)

// Clock is the engine's only source of time, so tests can move time by hand.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of time.Timer the engine uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration) bool
}

// rearm sets t to fire d from now. A tick it fired that nobody took is
// dropped first, so the next receive waits for the new time, not the old.
func rearm(t Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C():
		default:
		}
	}
	t.Reset(d)
}

// SystemClock is the wall clock.
type SystemClock struct{}

func (SystemClock) Now() time.Time { return time.Now() }

func (SystemClock) NewTimer(d time.Duration) Timer { return sysTimer{time.NewTimer(d)} }

type sysTimer struct{ t *time.Timer }

func (t sysTimer) C() <-chan time.Time        { return t.t.C }
func (t sysTimer) Stop() bool                 { return t.t.Stop() }
func (t sysTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// ManualClock is a Clock that only moves when told to. Timers fire when
// Advance or Set moves the time past their deadline.
type ManualClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*manualTimer
}

// NewManualClock returns a clock stopped at start.
func NewManualClock(start time.Time) *ManualClock { return &ManualClock{now: start} }

func (c *ManualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward by d and fires due timers.
func (c *ManualClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the clock to t (backwards too, to simulate a clock jump) and
// fires due timers.
func (c *ManualClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	timers := append([]*manualTimer(nil), c.timers...)
	c.mu.Unlock()
	for _, tm := range timers {
		tm.fireIfDue(t)
	}
}

func (c *ManualClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	tm := &manualTimer{ch: make(chan time.Time, 1), clock: c, at: c.now.Add(d), armed: true}
	c.timers = append(c.timers, tm)
	now := c.now
	c.mu.Unlock()
	tm.fireIfDue(now)
	return tm
}

type manualTimer struct {
	clock *ManualClock
	ch    chan time.Time
	mu    sync.Mutex
	at    time.Time
	armed bool
}

func (t *manualTimer) C() <-chan time.Time { return t.ch }

func (t *manualTimer) fireIfDue(now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.armed && !now.Before(t.at) {
		t.armed = false
		select {
		case t.ch <- now:
		default:
		}
	}
}

func (t *manualTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.armed
	t.armed = false
	return was
}

func (t *manualTimer) Reset(d time.Duration) bool {
	now := t.clock.Now()
	t.mu.Lock()
	was := t.armed
	t.at = now.Add(d)
	t.armed = true
	t.mu.Unlock()
	t.fireIfDue(now)
	return was
}
