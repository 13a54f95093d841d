package engine

import (
	"context"
	"fmt"
	"time"
)

// Store is where jobs live. The embedded SQLite store is the default; the
// interface is shaped so that a store shared by several daemons on several
// hosts (PostgreSQL) fits behind it too: every claim carries its owner, every
// completion names the attempt it ends, and all rules that must be atomic
// (supersede, claim, complete) are single Store calls.
//
// Every method that changes state is durable when it returns without error.
// Implementations must be safe for concurrent use.
type Store interface {
	// Enqueue stores a new QUEUED job and applies the supersede rules in the
	// same transaction. Every id in job.After must name an existing job
	// (else an error wrapping ErrInvalid); if one of them already ended in
	// a terminal state other than DONE, the job is stored CANCELLED with a
	// reason naming it. For a job with a subject:
	//   - without explicitGen, the job gets the highest generation seen for
	//     its key plus one;
	//   - a generation lower than or equal to the highest seen for its key is
	//     stored SUPERSEDED at once;
	//   - every QUEUED job of the key with a lower generation becomes
	//     SUPERSEDED.
	// The job's ID, CreatedAt and RunAt are set by the caller. Its
	// BaseEnv, made by EncodeBaseEnv, is stored once per distinct content
	// and kept while a job references it; reads give it back as its
	// digest and count, claims with its List.
	Enqueue(ctx context.Context, job *Job, explicitGen bool) (EnqueueResult, error)

	// EnqueueMany stores several new jobs in one durable step, in order,
	// each as Enqueue would: a later job of a key sees the earlier ones, so
	// the last generation of a subject in the batch wins. With b.Atomic the
	// batch is all or nothing: the first job that fails undoes every other
	// and the error, a *BatchError, names its index. Without it each job
	// stands alone: one that fails leaves the others stored, and its error
	// is at its index in Errs. The error return otherwise means nothing was
	// stored.
	EnqueueMany(ctx context.Context, b EnqueueBatch) (EnqueueBatchResult, error)

	// Claim moves up to req.Limit due QUEUED jobs to RUNNING for req.Owner,
	// starting their next attempt, and returns them. Order: priority
	// descending, then enqueue order. It never returns a job whose run_at is
	// after req.Now, whose TTL has passed, whose key already has a RUNNING
	// job, or whose key has a newer generation; it never returns two jobs of
	// one key. It skips jobs of paused queues, jobs with a dependency not
	// DONE, jobs waiting for idleness or AC power when req says the machine
	// is not, and jobs of a queue at its req.QueueLimits cap (RUNNING jobs
	// of all owners count) or at its req.Quota for this call. Skipped jobs
	// never block the ones behind them. A job is claimed at most once.
	Claim(ctx context.Context, req ClaimRequest) ([]*Job, error)

	// MarkStarted records the process of a running attempt, so that recovery
	// can find and kill it after a crash.
	MarkStarted(ctx context.Context, id string, attempt int, pid int, pidStart int64) error

	// Complete ends attempt c.Attempt of a RUNNING job and moves the job to
	// c.State. A retry (State QUEUED) of a job whose key has a newer
	// generation becomes SUPERSEDED instead. It returns ErrStale if the job
	// is not RUNNING that attempt, and ErrNotFound for an unknown id.
	// When the job ends in any terminal state but DONE, its QUEUED
	// dependents (jobs whose After names it, transitively) become CANCELLED
	// in the same transaction, and are returned in Cancelled.
	Complete(ctx context.Context, c Completion) (CompleteResult, error)

	// CompleteAndClaim records c.Started as MarkStarted would, then each of
	// c.Done as Complete would, then claims with c.Claim as Claim would, in
	// one durable step: a worker pool that records its processes, ends
	// attempts and refills its free workers pays for one commit, not one
	// per event. A record or completion that fails leaves the others and
	// the claim alone; its error is in StartErrs or Errs at its index. A
	// failed claim leaves the rest recorded and is reported in ClaimErr.
	// The error return means nothing was recorded. c.Claim.Limit may be
	// zero: then nothing is claimed.
	CompleteAndClaim(ctx context.Context, c Cycle) (CycleResult, error)

	// CancelQueued moves the listed jobs that are still QUEUED to CANCELLED
	// and returns those it changed, followed by their dependents it
	// cancelled as a consequence.
	CancelQueued(ctx context.Context, ids []string, reason string, now time.Time) ([]*Job, error)

	// ExpireDue moves QUEUED jobs whose TTL has passed at now to EXPIRED and
	// returns them, followed by their dependents it cancelled.
	ExpireDue(ctx context.Context, now time.Time) ([]*Job, error)

	// Get returns a job with its attempt history, or ErrNotFound.
	Get(ctx context.Context, id string) (*Job, error)
	// List returns up to f.Limit jobs matching f, newest first, without
	// attempt history, starting after f.Cursor. The page's Next is the
	// cursor of the page after it, empty when no more jobs match. A cursor
	// stays valid while jobs are added and deleted: a page never repeats a
	// job of an earlier one. A cursor the store did not make is an error
	// wrapping ErrInvalid.
	List(ctx context.Context, f ListFilter) (ListPage, error)
	// MatchIDs returns up to limit ids of stored jobs that start with
	// prefix, in id order.
	MatchIDs(ctx context.Context, prefix string, limit int) ([]string, error)
	// AdjacentIDs returns, for each id, the stored ids just before and
	// just after it in id order ("" where there is none).
	AdjacentIDs(ctx context.Context, ids []string) ([][2]string, error)
	// Running returns every RUNNING job with its attempt history.
	Running(ctx context.Context) ([]*Job, error)
	// NextWake says when the earliest future run_at and the earliest TTL
	// expiry among QUEUED jobs fall; zero times mean none.
	NextWake(ctx context.Context, now time.Time) (Wake, error)
	// Stats counts jobs by queue and state without scanning finished history.
	Stats(ctx context.Context) (StoreStats, error)

	// AppendLog adds output lines to a job's log, dropping the oldest lines
	// once the log holds more than maxBytes. Each line counts as its text
	// plus LogLineOverhead bytes, so empty lines cannot grow a log without
	// bound. A job's lines carry consecutive Seqs across calls: lines at or
	// below the log's last Seq are ignored, and a gap before the first new
	// one means the caller dropped those lines, which then count as dropped
	// along with every older line. Whenever lines were dropped, the job's
	// log is marked truncated and one line of stream "stq", in place of the
	// newest line dropped, says how many were, exactly; it fits in maxBytes
	// too.
	AppendLog(ctx context.Context, id string, lines []LogLine, maxBytes int64) error
	// Logs returns up to limit lines of a job's log with Seq > afterSeq.
	Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]LogLine, error)
	// LogSeqFromEnd returns the Seq of the n-th newest line of a job's log
	// among those with afterSeq < Seq < before (before <= 0: no bound), and
	// false when there are fewer than n; without reading the whole log.
	LogSeqFromEnd(ctx context.Context, id string, afterSeq, before int64, n int) (int64, bool, error)

	// SetPaused pauses or resumes a queue. A paused queue's jobs are never
	// claimed; the setting is durable.
	SetPaused(ctx context.Context, queue string, paused bool) error
	// PausedQueues lists the paused queues.
	PausedQueues(ctx context.Context) ([]string, error)
	// Retry starts a new attempt series for a FAILED, CANCELLED or EXPIRED
	// job: QUEUED, due at now, attempt 0, history kept. Other states get
	// ErrInvalidTransition; an unknown id ErrNotFound.
	Retry(ctx context.Context, id string, now time.Time) (*Job, error)
	// Prune deletes finished jobs (terminal states) with their attempts and
	// logs: those finished before req.Before, and beyond the newest
	// req.Keep finished ones; at most req.Limit per call. It returns how
	// many it deleted. The per-key highest generation survives.
	Prune(ctx context.Context, req PruneRequest) (int, error)
	// Checkpoint folds the write-ahead log into the database and shrinks
	// it, where the store has one.
	Checkpoint(ctx context.Context) error

	Close() error
}

// EnqueueResult is what Enqueue did.
type EnqueueResult struct {
	// Job is the job as stored; its State is SUPERSEDED when its generation
	// was already outdated on arrival.
	Job *Job `json:"job"`
	// Superseded lists the ids of older QUEUED jobs this one superseded.
	Superseded []string `json:"superseded,omitempty"`
	// Cancelled lists dependents of the superseded jobs that were
	// cancelled with them.
	Cancelled []*Job `json:"-"`
}

// EnqueueBatch is the argument of EnqueueMany.
type EnqueueBatch struct {
	Jobs []*Job
	// ExplicitGen says, per job, what Enqueue's explicitGen says; nil
	// means false for every job.
	ExplicitGen []bool
	// Atomic makes the batch all or nothing.
	Atomic bool
}

// EnqueueBatchResult is what EnqueueMany did: one entry per job, in order.
// Results is zero where Errs has an error.
type EnqueueBatchResult struct {
	Results []EnqueueResult
	Errs    []error
}

// BatchError is the refusal of an all-or-nothing batch: entry Index was
// bad, and nothing of the batch was stored.
type BatchError struct {
	Index int
	Err   error
}

func (e *BatchError) Error() string { return fmt.Sprintf("entry %d: %v", e.Index, e.Err) }
func (e *BatchError) Unwrap() error { return e.Err }

// ListPage is one page of List.
type ListPage struct {
	Jobs []*Job
	// Next is the cursor of the following page; empty on the last page.
	Next string
}

// CompleteResult is what Complete did.
type CompleteResult struct {
	Job       *Job
	Cancelled []*Job
}

// Cycle is one CompleteAndClaim step.
type Cycle struct {
	Started []StartRecord
	Done    []Completion
	Claim   ClaimRequest
}

// StartRecord is the process of a running attempt, as MarkStarted takes it.
type StartRecord struct {
	ID       string
	Attempt  int
	PID      int
	PIDStart int64
}

// CycleResult is what CompleteAndClaim did.
type CycleResult struct {
	StartErrs []error          // one per start record, in order
	Completed []CompleteResult // one per completion, in order; zero where Errs has an error
	Errs      []error          // one per completion, in order
	Claimed   []*Job
	ClaimErr  error
}

// ClaimRequest asks for jobs to run.
type ClaimRequest struct {
	Owner string
	Now   time.Time
	Limit int
	// Idle and OnAC are the machine's conditions now: jobs that wait for
	// idleness or AC power are claimable only when these hold.
	Idle bool
	OnAC bool
	// QueueLimits caps the RUNNING jobs per queue (across all owners);
	// queues not listed are unlimited.
	QueueLimits map[string]int
	// Quota caps how many jobs of each queue this one claim may take;
	// DefaultQuota applies to queues not listed. Zero means no cap. The
	// engine uses it to share free workers between queues by weight.
	Quota        map[string]int
	DefaultQuota int
}

// Completion ends one attempt.
type Completion struct {
	ID         string
	Attempt    int
	State      State // QUEUED (retry or interrupted), DONE, FAILED or CANCELLED
	Outcome    Outcome
	Reason     string
	ExitCode   *int
	FinishedAt time.Time
	// RunAt is when a retried job becomes due.
	RunAt time.Time
	// Refund gives the attempt back: an interrupted attempt (shutdown) does
	// not count against max_attempts.
	Refund bool
}

// PruneRequest says which finished jobs Prune deletes.
type PruneRequest struct {
	Before time.Time
	Keep   int
	Limit  int
}

// ListFilter selects jobs for List. Zero fields match everything.
type ListFilter struct {
	States  []State
	Queue   string
	Type    string
	Subject string
	Limit   int
	// Cursor continues a listing after the page that returned it
	// (ListPage.Next); empty starts with the newest job.
	Cursor string
}

// Wake tells the scheduler when something time-based will next happen.
type Wake struct {
	NextRunAt  time.Time
	NextExpiry time.Time
}

// StoreStats are counters the store keeps.
type StoreStats struct {
	// Queues maps queue name to the number of jobs in each state.
	Queues map[string]map[State]int64 `json:"queues"`
	// DBBytes is the size of the database on disk, where the store knows it.
	DBBytes int64 `json:"db_bytes"`
}

// LogLineOverhead is what one log line costs beyond its text, in memory
// and on disk, for the purpose of the log limit.
const LogLineOverhead = 64

// LogLine is one line of a job's output.
type LogLine struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Attempt int       `json:"attempt"`
	Stream  string    `json:"stream"` // "stdout", "stderr" or "stq" for the daemon's own notes
	Text    string    `json:"text"`
}
