package ipc

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"stq/engine"
)

func TestPauseResumeAndRetryRoundTrip(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, ServerOptions{})
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	var qr QueueResult
	if err := cl.Call(ctx, MethodPause, QueueParams{Queue: "indexing"}, &qr); err != nil || !qr.Paused || qr.Queue != "indexing" {
		t.Fatalf("pause = %+v, %v", qr, err)
	}
	ts.fake.mu.Lock()
	paused := ts.fake.paused["indexing"]
	ts.fake.mu.Unlock()
	if !paused {
		t.Fatal("the backend was not asked to pause")
	}
	if err := cl.Call(ctx, MethodResume, QueueParams{Queue: "indexing"}, &qr); err != nil || qr.Paused {
		t.Fatalf("resume = %+v, %v", qr, err)
	}
	var re *RPCError
	if err := cl.Call(ctx, MethodPause, QueueParams{}, &qr); !errors.As(err, &re) || re.Code != CodeInvalidParams {
		t.Fatalf("pause without a queue: %v", err)
	}
	if err := cl.Call(ctx, MethodRetry, RetryParams{ID: "nope"}, &engine.Job{}); !errors.As(err, &re) || re.Code != CodeNotFound {
		t.Fatalf("retry of an unknown job: %v", err)
	}
}

func TestEnqueueOverTheConnectionLimitIsRefusedWithRetryAfter(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, ServerOptions{Limits: RateLimits{ConnEnqueueRate: 1, ConnEnqueueBurst: 3}})
	cl := dialClient(t, ts.path)
	ctx := testCtx(t)
	req := engine.EnqueueRequest{Queue: "q", Type: "exec", Command: []string{"true"}}
	var res engine.EnqueueResult
	for i := 0; i < 3; i++ {
		if err := cl.Call(ctx, MethodEnqueue, req, &res); err != nil {
			t.Fatalf("enqueue %d within the burst: %v", i, err)
		}
	}
	err := cl.Call(ctx, MethodEnqueue, req, &res)
	var re *RPCError
	if !errors.As(err, &re) || re.Code != CodeRateLimited {
		t.Fatalf("enqueue over the limit: %v", err)
	}
	var data RateLimitedData
	if json.Unmarshal(re.Data, &data) != nil || data.RetryAfterMS < 1 || data.RetryAfterMS > 1000 {
		t.Fatalf("retry_after_ms = %+v (%s)", data, re.Data)
	}
	ts.fake.mu.Lock()
	stored := len(ts.fake.jobs)
	ts.fake.mu.Unlock()
	if stored != 3 {
		t.Fatalf("%d jobs stored, want the 3 admitted", stored)
	}
	// Another connection has its own bucket.
	other := dialClient(t, ts.path)
	if err := other.Call(ctx, MethodEnqueue, req, &res); err != nil {
		t.Fatalf("a second client was limited by the first: %v", err)
	}
	// After waiting as told, the first client gets through again.
	time.Sleep(time.Duration(data.RetryAfterMS) * time.Millisecond)
	if err := cl.Call(ctx, MethodEnqueue, req, &res); err != nil {
		t.Fatalf("enqueue after retry_after: %v", err)
	}
}

func TestTheServerWideEnqueueLimitAppliesAcrossConnections(t *testing.T) {
	t.Parallel()
	ts := startServer(t, nil, ServerOptions{Limits: RateLimits{EnqueueRate: 1, EnqueueBurst: 2}})
	ctx := testCtx(t)
	req := engine.EnqueueRequest{Queue: "q", Type: "exec", Command: []string{"true"}}
	var res engine.EnqueueResult
	refused := 0
	for i := 0; i < 4; i++ {
		cl := dialClient(t, ts.path)
		var re *RPCError
		if err := cl.Call(ctx, MethodEnqueue, req, &res); errors.As(err, &re) && re.Code == CodeRateLimited {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if refused != 2 {
		t.Fatalf("%d of 4 single enqueues from 4 clients refused, want 2 past the burst of 2", refused)
	}
}
