package ipc

import (
	"errors"
	"sync"
	"testing"
	"time"

	"stq/engine"
)

// countingObserver counts what a ServerObserver hears.
type countingObserver struct {
	mu                    sync.Mutex
	opened, closed, limit int
}

func (o *countingObserver) ConnOpened()  { o.mu.Lock(); o.opened++; o.mu.Unlock() }
func (o *countingObserver) ConnClosed()  { o.mu.Lock(); o.closed++; o.mu.Unlock() }
func (o *countingObserver) RateLimited() { o.mu.Lock(); o.limit++; o.mu.Unlock() }

func (o *countingObserver) counts() (opened, closed, limit int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.opened, o.closed, o.limit
}

func TestServerObserverHearsConnectionsAndRefusals(t *testing.T) {
	t.Parallel()
	obs := &countingObserver{}
	ts := startServer(t, nil, ServerOptions{Observer: obs, Limits: RateLimits{EnqueueRate: 0.001, EnqueueBurst: 1}})
	ctx := testCtx(t)
	req := engine.EnqueueRequest{Queue: "q", Type: "exec", Command: []string{"true"}}
	var res engine.EnqueueResult
	for i := range 3 {
		cl := dialClient(t, ts.path)
		err := cl.Call(ctx, MethodEnqueue, req, &res)
		var re *RPCError
		if limited := errors.As(err, &re) && re.Code == CodeRateLimited; limited != (i > 0) {
			t.Fatalf("enqueue %d: %v", i, err)
		}
		cl.Close()
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		opened, closed, limit := obs.counts()
		if opened == 3 && closed == 3 && limit == 2 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("heard %d opened, %d closed, %d rate-limited; want 3, 3, 2", opened, closed, limit)
		}
		time.Sleep(5 * time.Millisecond) // the connection goroutines end on their own
	}
}
