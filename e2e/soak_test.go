package e2e

// Fault class 8 of docs/RELIABILITY.md: a bounded soak.

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

// idRing keeps the most recent job ids for the clients that act on them.
type idRing struct {
	mu     sync.Mutex
	recent []string
	all    []string
}

func (r *idRing) add(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.all = append(r.all, id)
	if len(r.recent) >= 256 {
		r.recent = r.recent[1:]
	}
	r.recent = append(r.recent, id)
}

func (r *idRing) pick() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.recent) == 0 {
		return ""
	}
	return r.recent[rand.IntN(len(r.recent))]
}

func TestReliabilitySoak(t *testing.T) {
	// Not parallel: a soak measures the daemon alone.
	needProc(t)
	runFor := scaled(20*time.Second, 5*time.Minute)
	e := newEnv(t)
	d := e.startDaemon("--workers", "4")
	pid := d.cmd.Process.Pid
	rssStart, fdStart := d.rssMB(), fdCount(pid)
	var st struct {
		Owner string `json:"owner"`
	}
	if err := json.Unmarshal([]byte(e.ok("stats", "--json")), &st); err != nil || st.Owner == "" {
		t.Fatalf("stats: %v", err)
	}
	owner := st.Owner
	var selfRace errLog
	stopAt := time.Now().Add(runFor)
	var (
		errs                                   errLog
		ids                                    idRing
		wg                                     sync.WaitGroup
		enqueued, cancels, conflicts           atomic.Int64
		follows, followLines, followTimeouts   atomic.Int64
		queueEvents, fellBehind, statsCalls    atomic.Int64
		cliTails, lists                        atomic.Int64
		requestsPerClient                      = 25 * time.Millisecond
		rpcLoop                                func(name string, every time.Duration, step func(cl *ipc.Client) (*ipc.Client, error))
		running                                = func() bool { return time.Now().Before(stopAt) }
		cancelledMu                            sync.Mutex
		cancelled                              = map[string][]job{} // id -> the jobs the reply listed
		enqueuers, cancellers, followers, cliN = 4, 2, 2, 1
	)
	// rpcLoop runs step every so often on its own connection, redialling
	// when step reports the connection unusable (returns nil).
	rpcLoop = func(name string, every time.Duration, step func(cl *ipc.Client) (*ipc.Client, error)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var cl *ipc.Client
			defer func() {
				if cl != nil {
					cl.Close()
				}
			}()
			for running() {
				if cl == nil {
					var err error
					if cl, err = e.dial(); err != nil {
						errs.add("%s: dial: %v", name, err)
						return
					}
				}
				next, err := step(cl)
				if err != nil {
					errs.add("%s: %v", name, err)
				}
				if next == nil {
					cl.Close()
				}
				cl = next
				time.Sleep(every)
			}
		}()
	}
	for c := 0; c < enqueuers; c++ {
		i := c
		rpcLoop(fmt.Sprintf("enqueuer %d", c), requestsPerClient, func(cl *ipc.Client) (*ipc.Client, error) {
			i++
			req := engine.EnqueueRequest{Type: "noop", Queue: fmt.Sprintf("q%d", i%3)}
			switch i % 10 {
			case 0:
				req = engine.EnqueueRequest{Command: []string{"sh", "-c", "echo out $STQ_JOB_ID; echo err >&2"}}
			case 1:
				req = engine.EnqueueRequest{Command: []string{"sh", "-c", "echo failing; exit 3"}, MaxAttempts: intPtr(2), Backoff: durPtr(10 * time.Millisecond)}
			case 2:
				req = engine.EnqueueRequest{Command: []string{"sh", "-c", "for i in 1 2 3 4; do echo tick $i; sleep 0.05; done"}}
			case 3:
				req.Subject = fmt.Sprintf("s%d", i%3)
			case 4:
				req.Delay = durPtr(300 * time.Millisecond)
			case 5:
				req.Payload = json.RawMessage(`{"blob":"` + strings.Repeat("p", 4096) + `"}`)
			}
			id, err := enqueueRPC(cl, req)
			if err != nil {
				return nil, fmt.Errorf("enqueue: %w", err)
			}
			ids.add(id)
			enqueued.Add(1)
			return cl, nil
		})
	}
	for c := 0; c < cancellers; c++ {
		rpcLoop(fmt.Sprintf("canceller %d", c), 40*time.Millisecond, func(cl *ipc.Client) (*ipc.Client, error) {
			id := ids.pick()
			if id == "" {
				return cl, nil
			}
			var res struct {
				Jobs []job `json:"jobs"`
			}
			err := call(cl, ipc.MethodCancel, engine.CancelRequest{ID: id}, &res)
			switch {
			case err == nil:
				cancels.Add(1)
				cancelledMu.Lock()
				cancelled[id] = res.Jobs
				cancelledMu.Unlock()
			case rpcCode(err) == -32003: // it had finished: expected
				conflicts.Add(1)
			case rpcCode(err) == -32602 && strings.Contains(err.Error(), "running under another daemon ("+owner+")"):
				// The daemon's own job, claimed but not yet registered as
				// running (see knownIssueCancelRace).
				selfRace.add("%s", id)
			default:
				return cl, fmt.Errorf("cancel %s: %w", id, err)
			}
			return cl, nil
		})
	}
	for c := 0; c < followers; c++ {
		rpcLoop(fmt.Sprintf("follower %d", c), 10*time.Millisecond, func(cl *ipc.Client) (*ipc.Client, error) {
			id := ids.pick()
			if id == "" {
				return cl, nil
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var res ipc.TailResult
			err := cl.Stream(ctx, ipc.MethodTail, ipc.TailParams{JobID: id, Follow: true}, func(method string, params json.RawMessage) error {
				followLines.Add(1)
				return nil
			}, &res)
			switch {
			case err == nil:
				follows.Add(1)
				if res.Job == nil || !res.Job.State.Terminal() {
					return cl, fmt.Errorf("tail -f of %s ended with a job that is not finished: %+v", id, res.Job)
				}
				return cl, nil
			case ctx.Err() != nil: // a job still queued behind the backlog
				followTimeouts.Add(1)
				return nil, nil
			case rpcCode(err) == -32005: // documented: fell behind
				fellBehind.Add(1)
				return cl, nil
			}
			return nil, fmt.Errorf("tail -f %s: %w", id, err)
		})
	}
	// One subscriber to every event for the whole run.
	rpcLoop("queue follower", 10*time.Millisecond, func(cl *ipc.Client) (*ipc.Client, error) {
		ctx, cancel := context.WithDeadline(context.Background(), stopAt)
		defer cancel()
		err := cl.Stream(ctx, ipc.MethodTail, ipc.TailParams{Follow: true}, func(method string, params json.RawMessage) error {
			queueEvents.Add(1)
			return nil
		}, nil)
		switch {
		case ctx.Err() != nil:
			return nil, nil
		case rpcCode(err) == -32005:
			fellBehind.Add(1)
			return cl, nil
		}
		return nil, fmt.Errorf("follow all: %w", err)
	})
	rpcLoop("stats and list", 50*time.Millisecond, func(cl *ipc.Client) (*ipc.Client, error) {
		var st map[string]any
		if err := call(cl, ipc.MethodStats, nil, &st); err != nil {
			return nil, fmt.Errorf("stats: %w", err)
		}
		statsCalls.Add(1)
		var l struct {
			Jobs []job `json:"jobs"`
		}
		if err := call(cl, ipc.MethodList, map[string]any{"states": []string{"queued", "running"}, "limit": 100}, &l); err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		lists.Add(1)
		return cl, nil
	})
	// CLI clients: enqueue, tail, tail -f, stats.
	for c := 0; c < cliN; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; running(); i++ {
				var args []string
				switch i % 4 {
				case 0:
					args = []string{"enqueue", "--", "sh", "-c", "echo from the cli"}
				case 1:
					if id := ids.pick(); id != "" {
						args = []string{"tail", id}
					}
				case 2:
					if id := ids.pick(); id != "" {
						args = []string{"tail", "-f", "--job", id}
					}
				case 3:
					args = []string{"stats", "--json"}
				}
				if args == nil {
					continue
				}
				r, took, timedOut := e.runBounded(30*time.Second, args...)
				// tail -f --job exits with the job's outcome: 1 for a job
				// that ended other than DONE, which is an answer here.
				followEnded := len(args) > 1 && args[1] == "-f" && r.code == 1 && r.stderr == ""
				switch {
				case timedOut:
					errs.add("stq %v: no answer after %v", args, took)
				case r.code != 0 && !followEnded:
					errs.add("stq %v: exit %d: %s", args, r.code, r.stderr)
				case args[0] == "enqueue":
					ids.add(strings.TrimSpace(r.stdout))
					enqueued.Add(1)
				case args[0] == "tail":
					cliTails.Add(1)
				case args[0] == "stats":
					statsCalls.Add(1)
				}
			}
		}()
	}
	var rssMid float64
	time.Sleep(runFor / 2)
	rssMid = d.rssMB()
	wg.Wait()
	rssLoaded := d.rssMB()

	c := e.mustDial()
	ids.mu.Lock()
	all := append([]string(nil), ids.all...)
	ids.mu.Unlock()
	stored := waitAll(t, c, all, 3*time.Minute)
	states := map[string]int{}
	for _, j := range stored {
		states[j.State]++
	}
	if states["RUNNING"]+states["QUEUED"] != 0 {
		t.Errorf("jobs left unfinished: %v", states)
	}
	// A cancel that answered success lists the job, CANCELLED, and the job
	// stays CANCELLED.
	for id, listed := range cancelled {
		if len(listed) != 1 || listed[0].ID != id || listed[0].State != "CANCELLED" {
			t.Errorf("cancel of %s answered %+v, want that job CANCELLED", id, listed)
		}
		if j := stored[id]; j.State != "CANCELLED" {
			jj := getJob(t, c, id)
			t.Errorf("cancel of %s succeeded but the job ended %s: %q, attempts %+v", id, jj.State, jj.Error, jj.Attempts)
		}
	}
	if errs.n != 0 {
		t.Errorf("%d unexpected client errors, first ones: %q", errs.n, errs.samples)
	}
	c.Close()
	// Every connection of the run is closed: the daemon's descriptors go
	// back to where they started.
	fdEnd := fdCount(pid)
	waitFor(t, fmt.Sprintf("the daemon's open files to return near %d", fdStart), 15*time.Second, func() bool {
		fdEnd = fdCount(pid)
		return fdEnd <= fdStart+4
	})
	// The bound applies at the end of the load: the drain's own large
	// replies (dev.wait.v1 of a thousand jobs at a time) come after it.
	rssEnd, peak := d.rssMB(), d.peakRSSMB()
	const rssGrowth = 100.0 // MiB
	if rssLoaded > rssStart+rssGrowth {
		t.Errorf("daemon RSS grew from %.0f to %.0f MiB over the soak, more than %.0f MiB", rssStart, rssLoaded, rssGrowth)
	}
	report(t, "%v with %d socket enqueuers, %d cancellers, %d tail -f followers, 1 all-events subscriber, 1 stats+list poller and %d CLI client(s): %d jobs enqueued, final states %v; %d cancels (+%d already finished), %d follows to the end (%d events, %d timed out waiting for a queued job), %d all-events notifications, %d fell behind; %d stats calls, %d lists, %d CLI tails; unexpected errors %d; daemon RSS %.0f MiB at start, %.0f mid-run, %.0f at the end of the load, %.0f after the drain (peak %.0f); open fds %d at start, %d at the end",
		runFor, enqueuers, cancellers, followers, cliN, enqueued.Load(), states, cancels.Load(), conflicts.Load(), follows.Load(), followLines.Load(), followTimeouts.Load(),
		queueEvents.Load(), fellBehind.Load(), statsCalls.Load(), lists.Load(), cliTails.Load(), errs.n, rssStart, rssMid, rssLoaded, rssEnd, peak, fdStart, fdEnd)
	if selfRace.n > 0 {
		report(t, "%d cancels refused with -32602 \"running under another daemon (%s)\", naming this very daemon: %v", selfRace.n, owner, selfRace.samples)
		if !t.Failed() {
			knownIssue(t, knownIssueCancelRace, "%d of %d cancels of a job this daemon had just claimed were refused with -32602 \"running under another daemon (%s)\" (the daemon's own owner): engine.cancelOne looks in e.running without claimMu, between the claim's commit and e.start",
				selfRace.n, cancels.Load()+conflicts.Load()+int64(selfRace.n), owner)
		}
	}
}
