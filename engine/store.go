package engine

import (
	"context"
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
	// same transaction. For a job with a subject:
	//   - without explicitGen, the job gets the highest generation seen for
	//     its key plus one;
	//   - a generation lower than or equal to the highest seen for its key is
	//     stored SUPERSEDED at once;
	//   - every QUEUED job of the key with a lower generation becomes
	//     SUPERSEDED.
	// The job's ID, CreatedAt and RunAt are set by the caller.
	Enqueue(ctx context.Context, job *Job, explicitGen bool) (EnqueueResult, error)

	// Claim moves up to req.Limit due QUEUED jobs to RUNNING for req.Owner,
	// starting their next attempt, and returns them. Order: priority
	// descending, then enqueue order. It never returns a job whose run_at is
	// after req.Now, whose TTL has passed, whose key already has a RUNNING
	// job, or whose key has a newer generation; it never returns two jobs of
	// one key. A job is claimed at most once.
	Claim(ctx context.Context, req ClaimRequest) ([]*Job, error)

	// MarkStarted records the process of a running attempt, so that recovery
	// can find and kill it after a crash.
	MarkStarted(ctx context.Context, id string, attempt int, pid int, pidStart int64) error

	// Complete ends attempt c.Attempt of a RUNNING job and moves the job to
	// c.State. A retry (State QUEUED) of a job whose key has a newer
	// generation becomes SUPERSEDED instead. It returns ErrStale if the job
	// is not RUNNING that attempt, and ErrNotFound for an unknown id.
	Complete(ctx context.Context, c Completion) (*Job, error)

	// CancelQueued moves the listed jobs that are still QUEUED to CANCELLED
	// and returns those it changed.
	CancelQueued(ctx context.Context, ids []string, reason string, now time.Time) ([]*Job, error)

	// ExpireDue moves QUEUED jobs whose TTL has passed at now to EXPIRED and
	// returns them.
	ExpireDue(ctx context.Context, now time.Time) ([]*Job, error)

	// Get returns a job with its attempt history, or ErrNotFound.
	Get(ctx context.Context, id string) (*Job, error)
	// List returns jobs matching f, newest first, without attempt history.
	List(ctx context.Context, f ListFilter) ([]*Job, error)
	// Running returns every RUNNING job with its attempt history.
	Running(ctx context.Context) ([]*Job, error)
	// NextWake says when the earliest future run_at and the earliest TTL
	// expiry among QUEUED jobs fall; zero times mean none.
	NextWake(ctx context.Context, now time.Time) (Wake, error)
	// Stats counts jobs by queue and state without scanning finished history.
	Stats(ctx context.Context) (StoreStats, error)

	// AppendLog adds output lines to a job's log, dropping the oldest lines
	// once the log holds more than maxBytes of text, and marking the job's
	// log truncated when it does.
	AppendLog(ctx context.Context, id string, lines []LogLine, maxBytes int64) error
	// Logs returns up to limit lines of a job's log with Seq > afterSeq.
	Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]LogLine, error)

	Close() error
}

// EnqueueResult is what Enqueue did.
type EnqueueResult struct {
	// Job is the job as stored; its State is SUPERSEDED when its generation
	// was already outdated on arrival.
	Job *Job `json:"job"`
	// Superseded lists the ids of older QUEUED jobs this one superseded.
	Superseded []string `json:"superseded,omitempty"`
}

// ClaimRequest asks for jobs to run.
type ClaimRequest struct {
	Owner string
	Now   time.Time
	Limit int
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

// ListFilter selects jobs for List. Zero fields match everything.
type ListFilter struct {
	States  []State
	Queue   string
	Type    string
	Subject string
	Limit   int
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

// LogLine is one line of a job's output.
type LogLine struct {
	Seq     int64     `json:"seq"`
	Time    time.Time `json:"time"`
	Attempt int       `json:"attempt"`
	Stream  string    `json:"stream"` // "stdout", "stderr" or "stq" for the daemon's own notes
	Text    string    `json:"text"`
}
