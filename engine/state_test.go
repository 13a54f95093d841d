package engine

import (
	"errors"
	"testing"
)

// TestTransitions walks every (from, to) pair: the allowed set is spelled
// out here independently of the table in state.go, so a change to either
// one fails the test.
func TestTransitions(t *testing.T) {
	t.Parallel()
	allowed := map[[2]State]bool{
		{StateQueued, StateRunning}:     true,
		{StateQueued, StateSuperseded}:  true,
		{StateQueued, StateCancelled}:   true,
		{StateQueued, StateExpired}:     true,
		{StateRunning, StateDone}:       true,
		{StateRunning, StateFailed}:     true,
		{StateRunning, StateQueued}:     true,
		{StateRunning, StateCancelled}:  true,
		{StateRunning, StateSuperseded}: true,
		{StateFailed, StateQueued}:      true,
		{StateCancelled, StateQueued}:   true,
		{StateExpired, StateQueued}:     true,
	}
	for _, from := range States {
		for _, to := range States {
			want := allowed[[2]State{from, to}]
			if got := CanTransition(from, to); got != want {
				t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
			}
			err := CheckTransition(from, to)
			if want != (err == nil) {
				t.Errorf("CheckTransition(%s, %s) = %v", from, to, err)
			}
			if err != nil && !errors.Is(err, ErrInvalidTransition) {
				t.Errorf("CheckTransition(%s, %s) error does not wrap ErrInvalidTransition: %v", from, to, err)
			}
		}
	}
}

func TestOnlyRetryLeavesATerminalState(t *testing.T) {
	t.Parallel()
	for _, s := range States {
		if !s.Terminal() {
			continue
		}
		for _, to := range transitions[s] {
			if to != StateQueued || s == StateDone || s == StateSuperseded {
				t.Errorf("terminal state %s may move to %s", s, to)
			}
		}
	}
}

func TestParseState(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want State
		ok   bool
	}{
		{"QUEUED", StateQueued, true},
		{"queued", StateQueued, true},
		{"Superseded", StateSuperseded, true},
		{"expired", StateExpired, true},
		{"", "", false},
		{"QUEUE", "", false},
		{"DONE ", "", false},
	}
	for _, tt := range tests {
		got, err := ParseState(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseState(%q) = %q, %v; want %q, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseState(%q) error does not wrap ErrInvalid", tt.in)
		}
	}
}
