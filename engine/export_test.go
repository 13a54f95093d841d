package engine

import (
	"context"
	"time"
)

// FlushOnce and ExpireOnce let the external tests drive one round of the
// flush loop and of expiry directly, without waiting for a timer.
func (e *Engine) FlushOnce() { e.flushOnce() }

func (e *Engine) ExpireOnce(ctx context.Context, now time.Time) { e.expire(ctx, now) }
