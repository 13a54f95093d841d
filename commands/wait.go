package commands

import (
	"context"
	"time"

	"stq/engine"
	"stq/ipc"
)

// liveJobIDs lists the jobs QUEUED or RUNNING now, in queue (every queue
// when it is empty): what `wait --queue` and `wait --all` wait for.
func liveJobIDs(ctx context.Context, cl *ipc.Client, queue string) ([]string, error) {
	p := ipc.ListParams{Queue: queue, States: []string{string(engine.StateQueued), string(engine.StateRunning)}, Limit: ipc.MaxListLimit}
	var ids []string
	for j, err := range cl.ListAll(ctx, p) {
		if err != nil {
			return nil, err
		}
		ids = append(ids, j.ID)
	}
	return ids, nil
}

// waitInChunks waits for the jobs ids names, ipc.MaxWaitIDs at a time (the
// most one dev.wait.v1 takes), within timeout when it is set, and hands
// each chunk's jobs to done as they are once the chunk has ended. When the
// timeout has run out, the chunks left are polled (a zero timeout) so that
// every job is still reported; timedOut then says that one had not ended.
func waitInChunks(ctx context.Context, cl *ipc.Client, ids []string, timeout *time.Duration, done func([]*engine.Job)) (timedOut bool, err error) {
	var deadline time.Time
	if timeout != nil {
		deadline = time.Now().Add(*timeout)
	}
	for len(ids) > 0 {
		n := min(len(ids), ipc.MaxWaitIDs)
		p := ipc.WaitParams{IDs: ids[:n]}
		if timeout != nil {
			left := engine.Duration(max(time.Until(deadline), 0))
			p.Timeout = &left
		}
		res, err := cl.Wait(ctx, p)
		if err != nil {
			return timedOut, err
		}
		timedOut = timedOut || res.TimedOut
		done(res.Jobs)
		ids = ids[n:]
	}
	return timedOut, nil
}
