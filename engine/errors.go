package engine

import "errors"

// Sentinel errors. Adapters map them to their own vocabulary (JSON-RPC codes,
// exit codes); wrap them with context, compare with errors.Is.
var (
	// ErrNotFound: no job has the given id.
	ErrNotFound = errors.New("job not found")
	// ErrInvalid: the request is malformed; nothing was changed.
	ErrInvalid = errors.New("invalid request")
	// ErrFinished: the job already ended, so it cannot be cancelled.
	ErrFinished = errors.New("job already finished")
	// ErrInvalidTransition: a state change the state machine forbids.
	ErrInvalidTransition = errors.New("invalid state transition")
	// ErrStale: a completion names an attempt that is no longer current
	// (recovery or a cancel got there first).
	ErrStale = errors.New("stale attempt")
	// ErrClosed: the engine or store is shutting down.
	ErrClosed = errors.New("shutting down")
	// ErrPermanent, returned (wrapped) by an in-process handler, fails the
	// job at once without using its remaining attempts.
	ErrPermanent = errors.New("permanent failure")
)

// ExitPermanent is the exit status a job's command uses to say "this failed
// and retrying will not help": the job goes straight to FAILED.
const ExitPermanent = 100
