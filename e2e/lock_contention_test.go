package e2e

// Fault class 4 of docs/RELIABILITY.md: "database is locked" never reaches a client.

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

func TestReliabilityDatabaseLockedNeverReachesAClient(t *testing.T) {
	// Not parallel: it is a 15 s load of its own.
	runFor := scaled(15*time.Second, 60*time.Second)
	e := newEnv(t)
	d := e.startDaemon("--workers", "8")
	var (
		errs          errLog
		enqueues      atomic.Int64
		statsCalls    atomic.Int64
		idsMu         sync.Mutex
		ids           []string
		wg            sync.WaitGroup
		stopAt        = time.Now().Add(runFor)
		cliEnqueuers  = 4
		rpcEnqueuers  = 12
		subprocessJob = engine.EnqueueRequest{Command: []string{"true"}}
	)
	keep := func(id string) {
		idsMu.Lock()
		ids = append(ids, id)
		idsMu.Unlock()
		enqueues.Add(1)
	}
	for c := 0; c < rpcEnqueuers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl, err := e.dial()
			if err != nil {
				errs.add("dial: %v", err)
				return
			}
			defer cl.Close()
			for i := 0; time.Now().Before(stopAt); i++ {
				req := engine.EnqueueRequest{Type: "noop", Queue: fmt.Sprintf("q%d", c%4)}
				switch i % 8 {
				case 0:
					req = subprocessJob
				case 1:
					req.Subject = fmt.Sprintf("s%d", i%5) // supersede writes too
				}
				id, err := enqueueRPC(cl, req)
				if err != nil {
					errs.add("enqueue (socket client %d): %v", c, err)
					return // the connection is unusable after an error
				}
				keep(id)
			}
		}(c)
	}
	for c := 0; c < cliEnqueuers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; time.Now().Before(stopAt); i++ {
				args := []string{"enqueue", "--type", "noop"}
				if i%4 == 0 {
					args = []string{"enqueue", "--", "true"}
				}
				r := e.run(args...)
				if r.code != 0 {
					errs.add("stq enqueue: exit %d: %s", r.code, r.stderr)
					continue
				}
				keep(strings.TrimSpace(r.stdout))
			}
		}(c)
	}
	// `stq stats --json` started every 10ms (at most 4 at once: a CLI call
	// under -race takes longer than that), and a socket client asking
	// admin.stats.v1 every 10ms.
	var skipped, rpcStats atomic.Int64
	wg.Add(2)
	go func() {
		defer wg.Done()
		slots := make(chan struct{}, 4)
		var inflight sync.WaitGroup
		defer inflight.Wait()
		for tick := time.NewTicker(10 * time.Millisecond); time.Now().Before(stopAt); <-tick.C {
			select {
			case slots <- struct{}{}:
			default:
				skipped.Add(1)
				continue
			}
			inflight.Add(1)
			go func() {
				defer inflight.Done()
				defer func() { <-slots }()
				r := e.run("stats", "--json")
				statsCalls.Add(1)
				if r.code != 0 {
					errs.add("stq stats --json: exit %d: %s", r.code, r.stderr)
				} else if !json.Valid([]byte(r.stdout)) {
					errs.add("stq stats --json printed invalid JSON: %q", r.stdout)
				}
			}()
		}
	}()
	go func() {
		defer wg.Done()
		cl, err := e.dial()
		if err != nil {
			errs.add("dial: %v", err)
			return
		}
		defer cl.Close()
		for tick := time.NewTicker(10 * time.Millisecond); time.Now().Before(stopAt); <-tick.C {
			var st map[string]any
			if err := call(cl, ipc.MethodStats, nil, &st); err != nil {
				errs.add("admin.stats.v1: %v", err)
				return
			}
			rpcStats.Add(1)
		}
	}()
	wg.Wait()

	c := e.mustDial()
	states := map[string]int{}
	for _, j := range waitAll(t, c, ids, 3*time.Minute) {
		states[j.State]++
	}
	if states["RUNNING"]+states["QUEUED"] != 0 || states["FAILED"] != 0 {
		t.Errorf("job states after the run: %v", states)
	}
	daemonLocked := 0
	for line := range strings.SplitSeq(d.output(), "\n") {
		if lockedOrBusy(line) {
			daemonLocked++
			if daemonLocked <= 5 {
				t.Errorf("daemon log mentions contention: %s", line)
			}
		}
	}
	if errs.locked != 0 {
		t.Errorf("%d client errors mention \"locked\" or \"busy\"", errs.locked)
	}
	if errs.n != 0 {
		t.Errorf("%d client errors, first ones: %q", errs.n, errs.samples)
	}
	report(t, "%v with %d socket + %d CLI enqueuers and --workers 8: %d enqueues, %d `stq stats --json` calls (%d 10ms ticks skipped with 4 in flight), %d admin.stats.v1 socket calls; job states %v; client errors %d (locked/busy %d), daemon log lines with locked/busy %d",
		runFor, rpcEnqueuers, cliEnqueuers, enqueues.Load(), statsCalls.Load(), skipped.Load(), rpcStats.Load(), states, errs.n, errs.locked, daemonLocked)
}
