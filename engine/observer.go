package engine

import "time"

// Observer hears of the moments in a job's life that metrics and traces
// record, and of the dispatcher going round, which a service manager's
// watchdog needs. The engine calls it synchronously on its own paths, so an
// implementation must return quickly and never block; the engine's default
// ignores everything.
type Observer interface {
	// Enqueued: a job was stored, in whatever state it arrived (QUEUED, or
	// SUPERSEDED or CANCELLED on arrival), and res.Superseded lists the
	// older QUEUED jobs it superseded.
	Enqueued(res EnqueueResult)
	// AttemptStarting: attempt j.Attempt of j was claimed and is about to
	// run. The returned entries (KEY=VALUE) are added to the job's
	// environment, after its own, so a trace context can reach the job.
	// done is called exactly once, when the attempt's completion has been
	// stored or has failed to be; it may be nil.
	AttemptStarting(j *Job) (env []string, done func(AttemptEnded))
	// Expired: jobs left QUEUED past their TTL became EXPIRED; their
	// dependents cancelled as a consequence follow them in the slice.
	Expired(jobs []*Job)
	// Recovered: a crashed attempt of a job a dead daemon left RUNNING was
	// ended; j is the job as it was stored (QUEUED for a retry, or FAILED).
	Recovered(j *Job)
	// Pulse: the dispatcher went round its loop, store calls included. It
	// goes round at least once per Config.Pulse while it runs, so a missing
	// pulse means a hung dispatcher, not an idle one.
	Pulse()
}

// AttemptEnded is what an Observer hears when an attempt ends.
type AttemptEnded struct {
	// Completion is how the attempt ended as the engine decided it: a
	// retry has State QUEUED.
	Completion Completion
	// Job is the job as stored by the completion: a retry of a job whose
	// key has a newer generation is SUPERSEDED here. Nil when the store
	// refused the completion; then Err says why.
	Job *Job
	Err error
	// Took is the attempt's run time on the engine's clock.
	Took time.Duration
}

// nopObserver is the Observer of an engine given none.
type nopObserver struct{}

func (nopObserver) Enqueued(EnqueueResult)                              {}
func (nopObserver) AttemptStarting(*Job) ([]string, func(AttemptEnded)) { return nil, nil }
func (nopObserver) Expired([]*Job)                                      {}
func (nopObserver) Recovered(*Job)                                      {}
func (nopObserver) Pulse()                                              {}
