package e2e

// Fault class 1 of docs/RELIABILITY.md: SIGKILL at random moments during a storm.

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestReliabilitySIGKILLDuringStormLosesNothing kills the daemon with
// SIGKILL at random moments while 8 clients enqueue, restarting it each
// time: no acknowledged job is lost, each command runs once unless an
// attempt was cut short, no job process outlives its job, and the SQLite
// file passes its integrity and foreign key checks (storm_test.go).
func TestReliabilitySIGKILLDuringStormLosesNothing(t *testing.T) {
	t.Parallel()
	needProc(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	e := newEnv(t)
	s := runStorm(t, e, scaled(5, 50), rand.New(rand.NewPCG(seed, 1)))
	end := checkStorm(t, e, s)
	integrity, fk := sqliteCheck(t, e.path("stq.db"))
	if integrity != "ok" || fk != 0 {
		t.Errorf("integrity_check: %q, foreign key violations: %d", integrity, fk)
	}
	report(t, "%s; integrity_check %q, foreign key violations %d", s.summary(end), integrity, fk)
	s.knownOrphans(t, end)
}
