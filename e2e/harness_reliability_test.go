package e2e

// The reliability suite's part of the harness. Each TestReliability* test,
// one file per fault class (sigkill, outside_kill, endless_output,
// lock_contention, wal, token, flood, soak), drives real daemons (the
// race-built binary from TestMain) through one class of failure and checks
// precisely that it leaves nothing behind. Every loop is
// bounded in count and time; STQ_LONG=1 scales them up (see
// docs/RELIABILITY.md). Measured figures are logged on lines starting with
// "RELIABILITY", so
//
//	go test -race -count=1 -v -run TestReliability ./e2e/ | grep RELIABILITY
//
// collects them.

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"stq/engine"
)

// longRun selects the long versions of the loops.
var longRun = os.Getenv("STQ_LONG") == "1"

// scaled picks the CI or the STQ_LONG=1 value.
func scaled[T any](ci, long T) T {
	if longRun {
		return long
	}
	return ci
}

// report logs one measured figure for docs/RELIABILITY.md.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("RELIABILITY %s: %s", t.Name(), fmt.Sprintf(format, args...))
}

// Known issues found by this suite whose fix is outside the tests (see
// docs/RELIABILITY.md). While one is true, the test that shows it logs its
// figures and skips with "known issue: ..." instead of failing; set it to
// false once the fix lands, so that a regression fails again.
const (
	knownIssueUntrackedProcess = false // test 1: process started just before a crash survives recovery
	knownIssueShortLines       = false // test 3: log_limit counts text bytes only
	knownIssueWALLeftLarge     = false // test 5: journal_size_limit is 64 MiB
	knownIssueCancelRace       = false // test 8: cancel right after the claim names the daemon itself as "another daemon"
)

// knownIssue skips with the message while the issue is open, and fails
// the test once it is marked fixed.
func knownIssue(t *testing.T, open bool, format string, args ...any) {
	t.Helper()
	if open {
		t.Skipf("known issue: "+format, args...)
	}
	t.Fatalf(format, args...)
}

func durPtr(d time.Duration) *engine.Duration {
	v := engine.Duration(d)
	return &v
}

func intPtr(v int) *int { return &v }

// lockedOrBusy reports an error text that leaks SQLite contention.
func lockedOrBusy(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "locked") || strings.Contains(s, "busy")
}

// errLog keeps a count and the first few errors seen by concurrent clients.
type errLog struct {
	mu      sync.Mutex
	n       int
	locked  int
	samples []string
}

func (l *errLog) add(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if lockedOrBusy(msg) {
		l.locked++
	}
	if len(l.samples) < 10 {
		l.samples = append(l.samples, msg)
	}
}
