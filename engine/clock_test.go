package engine

import (
	"testing"
	"time"
)

// A timer that fired while its owner was busy elsewhere must not fire
// again at once when it is re-armed: the owner would act before its time.
func TestRearmDropsATickNobodyTook(t *testing.T) {
	t.Parallel()
	c := NewManualClock(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))
	tm := c.NewTimer(time.Second)
	c.Advance(time.Second) // fires; nobody receives
	rearm(tm, 5*time.Second)
	c.Advance(4 * time.Second)
	select {
	case <-tm.C():
		t.Fatal("the timer fired 4s after being re-armed for 5s")
	default:
	}
	c.Advance(time.Second)
	select {
	case <-tm.C():
	default:
		t.Fatal("the timer did not fire 5s after being re-armed")
	}
}
