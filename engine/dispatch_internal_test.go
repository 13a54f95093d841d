package engine

import (
	"context"
	"testing"
	"time"
)

// fixedProbe reports the machine conditions a test sets.
type fixedProbe struct{ idle, onAC bool }

func (p fixedProbe) Idle() bool        { return p.idle }
func (p fixedProbe) Power() PowerState { return PowerState{OnAC: p.onAC, Known: true} }

func TestNextLookSleepsUntilTheFirstThingDue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	in := func(d time.Duration) time.Time { return now.Add(d) }
	tests := []struct {
		name      string
		free      int
		wake      Wake
		retry     time.Duration
		pulse     time.Duration
		idle, ac  bool
		wantSleep time.Duration
		wantAt    time.Time
	}{
		{"nothing due: an hour", 1, Wake{}, 0, 0, true, true, time.Hour, time.Time{}},
		{"a run_at with a worker free", 1, Wake{NextRunAt: in(10 * time.Second)}, 0, 0, true, true, 10 * time.Second, in(10 * time.Second)},
		{"a run_at with no worker free is not worth waking for", 0, Wake{NextRunAt: in(10 * time.Second)}, 0, 0, true, true, time.Hour, time.Time{}},
		{"an expiry is, even with no worker free", 0, Wake{NextRunAt: in(10 * time.Second), NextExpiry: in(20 * time.Second)}, 0, 0, true, true, 20 * time.Second, in(20 * time.Second)},
		{"the earlier of run_at and expiry", 1, Wake{NextRunAt: in(30 * time.Second), NextExpiry: in(20 * time.Second)}, 0, 0, true, true, 20 * time.Second, in(20 * time.Second)},
		{"a time already past: no sleep", 1, Wake{NextRunAt: in(-5 * time.Second)}, 0, 0, true, true, 0, in(-5 * time.Second)},
		{"a store error looks again sooner", 1, Wake{NextRunAt: in(10 * time.Second)}, 500 * time.Millisecond, 0, true, true, 500 * time.Millisecond, in(10 * time.Second)},
		{"Pulse bounds an idle sleep", 1, Wake{}, 0, 10 * time.Second, true, true, 10 * time.Second, time.Time{}},
		{"a busy machine: look each probe beat", 1, Wake{}, 0, 0, false, true, conditionRecheck, time.Time{}},
		{"on battery: look each probe beat", 1, Wake{}, 0, 0, true, false, conditionRecheck, time.Time{}},
		{"a due time before the beat still counts", 1, Wake{NextRunAt: in(200 * time.Millisecond)}, 0, 0, false, false, 200 * time.Millisecond, in(200 * time.Millisecond)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Engine{cfg: Config{Pulse: tt.pulse}, probe: fixedProbe{idle: tt.idle, onAC: tt.ac}}
			d, at := e.nextLook(now, tt.free, tt.wake, tt.retry)
			if d != tt.wantSleep || !at.Equal(tt.wantAt) {
				t.Fatalf("nextLook = %v, %v; want %v, %v", d, at, tt.wantSleep, tt.wantAt)
			}
		})
	}
}

// A dispatcher asleep until lookAt needs no wake-up for a job due at or
// after it; one that is awake (lookAt 0), or a job due now (zero) or
// before it, does. notifyDue wakes it exactly then, and counts the change
// either way, so a kept NextWake reading is dropped even for a job it
// need not wake for.
func TestLookedBy(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		lookAt int64
		due    time.Time
		want   bool
	}{
		{"due after the look", at.UnixNano(), at.Add(time.Hour), true},
		{"due at the look", at.UnixNano(), at, true},
		{"due just before the look", at.UnixNano(), at.Add(-time.Nanosecond), false},
		{"due now (zero)", at.UnixNano(), time.Time{}, false},
		{"dispatcher awake", 0, at.Add(time.Hour), false},
	} {
		if got := lookedBy(tc.lookAt, tc.due); got != tc.want {
			t.Errorf("%s: lookedBy = %v, want %v", tc.name, got, tc.want)
		}
		e := &Engine{wake: make(chan struct{}, 1)}
		e.lookAt.Store(tc.lookAt)
		e.notifyDue(tc.due)
		if got := e.changes.Load(); got != 1 {
			t.Errorf("%s: notifyDue counted %d changes, want 1 whether or not it woke", tc.name, got)
		}
		if woke := len(e.wake) == 1; woke == tc.want {
			t.Errorf("%s: notifyDue woke = %v, want %v", tc.name, woke, !tc.want)
		}
	}
}

// wakeStore answers NextWake and counts the calls; the dispatcher's other
// store calls are not part of what nextWake decides.
type wakeStore struct {
	Store
	wake  Wake
	reads int
}

func (s *wakeStore) NextWake(context.Context, time.Time) (Wake, error) {
	s.reads++
	return s.wake, nil
}

func TestNextWakeKeepsTheLastReadingOnlyWhileNothingCanMoveItEarlier(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	read := Wake{NextExpiry: now.Add(time.Minute)}
	tests := []struct {
		name     string
		kept     keptWake
		changes  uint64 // e.changes when nextWake runs
		free     int
		timed    bool
		wantRead bool
	}{
		{"nothing read yet", keptWake{}, 0, 0, false, true},
		{"every worker busy, nothing changed: kept", keptWake{wake: read, at: now, ok: true}, 0, 0, false, false},
		{"no expiry known: kept", keptWake{at: now, ok: true}, 0, 0, false, false},
		{"a worker free: its run_at counts", keptWake{wake: read, at: now, ok: true}, 0, 1, false, true},
		{"woken by the timer", keptWake{wake: read, at: now, ok: true}, 0, 0, true, true},
		{"a change was signalled since", keptWake{wake: read, at: now, ok: true}, 1, 0, false, true},
		{"the kept expiry has come", keptWake{wake: Wake{NextExpiry: now}, at: now, ok: true}, 0, 0, false, true},
		{"the reading is a poll old", keptWake{wake: read, at: now.Add(-SharedPoll), ok: true}, 0, 0, false, true},
		{"the last read failed", keptWake{at: now}, 0, 0, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &wakeStore{wake: Wake{NextRunAt: now.Add(time.Second)}}
			e := &Engine{store: st}
			e.changes.Store(tt.changes)
			k := tt.kept
			got, err := e.nextWake(context.Background(), now, tt.free, tt.timed, &k)
			if err != nil {
				t.Fatal(err)
			}
			if (st.reads == 1) != tt.wantRead {
				t.Fatalf("store reads: %d, want a read: %v", st.reads, tt.wantRead)
			}
			want := tt.kept.wake
			if tt.wantRead {
				want = st.wake
				if !k.ok || k.changes != tt.changes || !k.at.Equal(now) {
					t.Fatalf("kept after a read: %+v", k)
				}
			}
			if got != want {
				t.Fatalf("nextWake = %+v, want %+v", got, want)
			}
		})
	}
}

// A job is due at its run_at, or at its TTL's expiry when that is earlier.
func TestJobDue(t *testing.T) {
	created := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		runAt time.Time
		ttl   time.Duration
		want  time.Time
	}{
		{"no TTL", created.Add(time.Hour), 0, created.Add(time.Hour)},
		{"expiry first", created.Add(time.Hour), time.Minute, created.Add(time.Minute)},
		{"run_at first", created.Add(time.Minute), time.Hour, created.Add(time.Minute)},
	} {
		j := &Job{CreatedAt: created, RunAt: tc.runAt, TTL: Duration(tc.ttl)}
		if got := j.Due(); !got.Equal(tc.want) {
			t.Errorf("%s: Due = %v, want %v", tc.name, got, tc.want)
		}
	}
}
