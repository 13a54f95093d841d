package engine

import (
	"context"
	"fmt"
	"time"
)

// RetentionConfig says how much finished history to keep. Finished jobs
// (with their attempts and logs) are pruned once older than MaxAge or beyond
// the newest Keep; the write-ahead log is checkpointed on the same beat, so
// the database stops growing under a steady load.
type RetentionConfig struct {
	MaxAge   time.Duration // default 7 days; negative: no age limit
	Keep     int           // default 100,000; negative: no count limit
	Interval time.Duration // default 1 minute
}

// Retention defaults.
const (
	DefaultRetentionAge      = 7 * 24 * time.Hour
	DefaultRetentionKeep     = 100000
	DefaultRetentionInterval = time.Minute
)

// maintain runs Maintain, one round of retention, every
// Retention.Interval until ctx ends.
func (e *Engine) maintain(ctx context.Context) {
	t := e.clock.NewTimer(e.retentionInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.reconfigured: // the interval may have changed
			rearm(t, e.retentionInterval())
			continue
		case <-t.C():
		}
		if _, err := e.Maintain(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("maintenance", "err", err)
		}
		t.Reset(e.retentionInterval())
	}
}

// Maintain runs one round of retention now: it prunes finished jobs past
// the configured age and count, in bounded batches, then checkpoints the
// store. It returns how many jobs it pruned.
func (e *Engine) Maintain(ctx context.Context) (int, error) {
	r := e.conf().Retention
	req := PruneRequest{Keep: max(r.Keep, 0), Limit: 10000}
	if r.MaxAge > 0 {
		req.Before = e.clock.Now().Add(-r.MaxAge)
	}
	total := 0
	for {
		n, err := e.store.Prune(ctx, req)
		if err != nil {
			return total, fmt.Errorf("prune: %w", err)
		}
		total += n
		if n < req.Limit {
			break
		}
	}
	if total > 0 {
		e.log.Info("pruned finished jobs", "count", total)
	}
	if err := e.store.Checkpoint(ctx); err != nil {
		return total, fmt.Errorf("checkpoint: %w", err)
	}
	return total, nil
}

// retentionInterval is how long maintain sleeps between rounds.
func (e *Engine) retentionInterval() time.Duration { return e.conf().Retention.Interval }
