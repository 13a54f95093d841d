package sqlite

import (
	"fmt"

	"github.com/ncruces/go-sqlite3"
)

// The jobs of a paused queue stay out of the claim's walk (migration 7):
// a QUEUED job of a paused queue is held, and jobs_ready leaves held jobs
// out as it leaves out jobs not due. Before, every claim stepped over each
// of them: 10,000 jobs of a paused queue ahead of the rest cost every
// claim about 5 ms, against 0.2 ms behind as many jobs scheduled for
// later (BenchmarkClaimPastPausedBacklog).
//
// Held is set where a job becomes QUEUED: by an insert, from the paused
// queues as its write transaction sees them (pausedNow); for the jobs
// already QUEUED when a queue is paused, and released when it resumes,
// in the same write; and by a retry or a requeue. SQLite runs one write
// transaction at a time, so the flag is exact: unlike the PostgreSQL
// store's, no insert can race a resume. The claim still skips paused
// queues by their setting (a list read once per claim): the rule does not
// rest on the flag, which an older stq still running on a migrated file
// does not set.

// pausedNow is the set of paused queues as this write transaction sees
// it, read on first use in each transaction (the writer forgets it at
// BEGIN, SetPaused after its change) rather than once per job: a group
// commit holds many enqueues.
func (c *conn) pausedNow() (map[string]bool, error) {
	if c.pausedRead {
		return c.paused, nil
	}
	clear(c.paused)
	err := c.queryEach(qPaused, nil, func(st *sqlite3.Stmt) bool {
		if c.paused == nil {
			c.paused = map[string]bool{}
		}
		c.paused[st.ColumnText(0)] = true
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("read paused queues: %w", err)
	}
	c.pausedRead = true
	return c.paused, nil
}

// setPaused stores the setting and holds the queue's QUEUED jobs, or
// releases them.
func (c *conn) setPaused(queue string, paused bool) error {
	c.pausedRead = false // even if this fails: its savepoint may be rolled back
	bind := func(b *binder) {
		b.text(queue)
		b.bool(paused)
	}
	if err := c.run(qSetPaused, bind); err != nil {
		return err
	}
	return c.run(qHoldQueue, bind)
}

// heldNow is whether a job of the row's queue, stored QUEUED now, is held.
const heldNow = `EXISTS (SELECT 1 FROM queue_settings AS hq WHERE hq.queue = jobs.queue AND hq.paused = 1)`
