package postgres

import (
	"context"
	"sync"

	"stq/engine"
)

// The jobs of a paused queue stay out of the claim's walk. They used to
// sit in jobs_ready among the others, and every claim stepped over each
// of them (one heap fetch and the paused check): 10,000 jobs of a paused
// queue ahead of the rest made every claim of every daemon cost about
// 10 ms instead of under one. A QUEUED job of a paused queue is now
// held, and jobs_ready holds only jobs that are due and not held.
//
// Held is set where a job becomes QUEUED: by every insert path, for
// the jobs already QUEUED when a queue is paused, and by a retry or a
// requeue. Resuming releases the queue's held jobs in its transaction.
//
// An insert holds a job if its queue is in the store's reading of the
// paused queues, taken at Open, after each SetPaused through this store,
// and then every foldInterval; reading queue_settings in the insert
// itself, exactly (a statement trigger's probe), cost 16 pgbench
// clients' one-row inserts about 7% of their rate, for a setting that
// changes a few times a day. The reading can be a second old, which
// costs nothing a claim relies on: like due, the flag only decides whether
// a job is in the walk, and the claim still skips paused queues itself.
// A job stored unheld in a queue just paused is only stepped over, as
// every such job was before. A job stored held in a queue just resumed
// (by a stale reading, or an insert racing the resume's release) would be
// stranded, so every claim first releases the held jobs of queues that
// are not paused (promote_due, one jobs_held probe per queue that was ever
// paused and is not now; nothing while no queue was ever paused). That
// also heals an older stq's resume, which releases nothing.

// heldNow is whether a job of the row's queue, stored QUEUED now, is held.
const heldNow = `EXISTS (SELECT 1 FROM queue_settings AS hq WHERE hq.queue = jobs.queue AND hq.paused)`

// migrationHeld is migration 5: the held flag, jobs_ready without held
// jobs, and a promote_due that releases.
const migrationHeld = `
ALTER TABLE jobs ADD COLUMN held boolean NOT NULL DEFAULT false;
UPDATE jobs SET held = true WHERE state = 'QUEUED'
	AND queue IN (SELECT queue FROM queue_settings WHERE paused);
DROP INDEX jobs_ready;
CREATE INDEX jobs_ready ON jobs ((-priority::bigint), seq) WHERE state = 'QUEUED' AND due AND NOT held;
CREATE INDEX jobs_held ON jobs (queue) WHERE state = 'QUEUED' AND held;

CREATE OR REPLACE FUNCTION promote_due(at bigint) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM jobs WHERE state = 'QUEUED' AND NOT due AND run_at <= at) THEN
		UPDATE jobs SET due = true WHERE seq IN (
			SELECT seq FROM jobs WHERE state = 'QUEUED' AND NOT due AND run_at <= at
			FOR UPDATE SKIP LOCKED);
	END IF;
	IF EXISTS (SELECT 1 FROM queue_settings AS q WHERE NOT q.paused AND EXISTS (
			SELECT 1 FROM jobs AS j WHERE j.state = 'QUEUED' AND j.held AND j.queue = q.queue)) THEN
		UPDATE jobs SET held = false WHERE seq IN (
			SELECT j.seq FROM jobs AS j JOIN queue_settings AS q ON q.queue = j.queue AND NOT q.paused
			WHERE j.state = 'QUEUED' AND j.held
			FOR UPDATE OF j SKIP LOCKED);
	END IF;
END $$;
`

// qHoldQueue holds the QUEUED jobs of queue $1 as it is paused, and
// qReleaseQueue releases them as it resumes.
const (
	qHoldQueue    = `UPDATE jobs SET held = true WHERE state = 'QUEUED' AND queue = $1 AND NOT held`
	qReleaseQueue = `UPDATE jobs SET held = false WHERE state = 'QUEUED' AND queue = $1 AND held`
)

// pausedQueues is a store's reading of which queues are paused, which
// decides whether an insert holds a new job (see above).
type pausedQueues struct {
	mu  sync.Mutex
	set map[string]bool
}

func (p *pausedQueues) has(queue string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.set[queue]
}

// replace takes a new reading: the queues paused now.
func (p *pausedQueues) replace(queues []string) {
	set := make(map[string]bool, len(queues))
	for _, q := range queues {
		set[q] = true
	}
	p.mu.Lock()
	p.set = set
	p.mu.Unlock()
}

// mark records a pause or resume this store committed.
func (p *pausedQueues) mark(queue string, paused bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		p.set = map[string]bool{}
	}
	if paused {
		p.set[queue] = true
	} else {
		delete(p.set, queue)
	}
}

// readPaused takes a new reading of the paused queues. On an error the
// last reading stays: it decides only where new jobs sit in the walk.
func (s *Store) readPaused(ctx context.Context) error {
	queues, err := s.PausedQueues(ctx)
	if err != nil {
		return err
	}
	s.paused.replace(queues)
	return nil
}

// encode is encodeJob for this store's inserts: the job held if its queue
// is paused as far as the store knows.
func (s *Store) encode(j *engine.Job) (newJob, error) {
	in, err := encodeJob(j)
	if err != nil {
		return in, err
	}
	in.held = s.paused.has(j.Queue)
	return in, nil
}
