package store

// Placeholders for the queue-control methods while they are being written;
// this file is removed by the change that implements them.

import (
	"context"
	"errors"
	"time"

	"stq/engine"
)

var errPending = errors.New("not available yet")

func (s *Store) SetPaused(ctx context.Context, queue string, paused bool) error { return errPending }
func (s *Store) PausedQueues(ctx context.Context) ([]string, error)             { return nil, nil }
func (s *Store) Retry(ctx context.Context, id string, now time.Time) (*engine.Job, error) {
	return nil, errPending
}
func (s *Store) Prune(ctx context.Context, req engine.PruneRequest) (int, error) {
	return 0, errPending
}
func (s *Store) Checkpoint(ctx context.Context) error { return errPending }
