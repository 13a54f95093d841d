package engine

import (
	"fmt"
	"strings"
)

// State is where a job is in its life. The string values are part of the
// public contract (CLI, JSON and the socket API) and never change.
type State string

const (
	// StateQueued: waiting to be claimed. Entered on enqueue, on a retry after
	// a failed attempt, and when a shutdown or crash interrupts an attempt.
	// Left when a worker claims it, or when it is superseded, cancelled or
	// expires.
	StateQueued State = "QUEUED"
	// StateRunning: an attempt is in progress. Left when the attempt ends.
	StateRunning State = "RUNNING"
	// StateDone: the last attempt succeeded. Terminal.
	StateDone State = "DONE"
	// StateFailed: an attempt failed and no attempts are left, or the failure
	// was permanent. Terminal.
	StateFailed State = "FAILED"
	// StateCancelled: a user cancelled the job. Terminal.
	StateCancelled State = "CANCELLED"
	// StateSuperseded: a newer generation of the same subject key arrived
	// before this one ran. Terminal; the job never runs.
	StateSuperseded State = "SUPERSEDED"
	// StateExpired: the job's TTL passed before it started. Terminal.
	StateExpired State = "EXPIRED"
)

// States lists every state, in lifecycle order.
var States = []State{StateQueued, StateRunning, StateDone, StateFailed, StateCancelled, StateSuperseded, StateExpired}

// transitions is the whole state machine: every move a job may make. Nothing
// else in stq decides whether a transition is legal.
var transitions = map[State][]State{
	StateQueued: {
		StateRunning,    // claimed by a worker
		StateSuperseded, // a newer generation arrived
		StateCancelled,  // cancelled before it started
		StateExpired,    // TTL passed before it started
	},
	StateRunning: {
		StateDone,       // attempt succeeded
		StateFailed,     // attempt failed with no attempts left, or permanently
		StateQueued,     // attempt failed and will be retried, or was interrupted
		StateCancelled,  // cancelled while running: the process group is killed
		StateSuperseded, // retry found a newer generation waiting, or --replace
	},
	// `stq retry` starts a new attempt series for a job that did not succeed.
	StateFailed:    {StateQueued},
	StateCancelled: {StateQueued},
	StateExpired:   {StateQueued},
}

// Terminal reports whether a job in state s has ended: nothing changes it
// again except an explicit `stq retry` of a FAILED, CANCELLED or EXPIRED job.
func (s State) Terminal() bool {
	return s != StateQueued && s != StateRunning
}

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	for _, k := range States {
		if s == k {
			return true
		}
	}
	return false
}

// CanTransition reports whether a job may move from one state to another.
func CanTransition(from, to State) bool {
	for _, s := range transitions[from] {
		if s == to {
			return true
		}
	}
	return false
}

// CheckTransition returns an error naming both states when the move is not
// allowed.
func CheckTransition(from, to State) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("%w: %s -> %s", ErrInvalidTransition, from, to)
	}
	return nil
}

// ParseState accepts a state name in any case.
func ParseState(s string) (State, error) {
	for _, k := range States {
		if strings.EqualFold(string(k), s) {
			return k, nil
		}
	}
	return "", fmt.Errorf("%w: unknown state %q (want one of QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED, EXPIRED)", ErrInvalid, s)
}
