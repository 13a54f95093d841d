package e2e

// Fault class 1 of docs/RELIABILITY.md: SIGKILL at random moments during a storm.

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

func TestReliabilitySIGKILLDuringStormLosesNothing(t *testing.T) {
	t.Parallel()
	needProc(t)
	iterations := scaled(5, 50)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)

	e := newEnv(t)
	ran := filepath.Join(t.TempDir(), "ran")
	// Every execution appends "job-id pid" before doing anything else, so
	// the file counts executions, including those a crash cut short. A slow
	// job's first attempt sleeps until a crash or its 1s deadline stops it:
	// it is what recovery must kill, and it would outlive the test as an
	// orphan if recovery missed it.
	quick := `echo "$STQ_JOB_ID $$" >> ` + ran
	slow := quick + `; if [ "$STQ_ATTEMPT" = 1 ]; then sleep 300; fi`

	const clients = 8
	var (
		mu    sync.Mutex
		acked = map[string]string{} // id -> kind
		lost  atomic.Int64          // requests without an answer (daemon killed)
		odd   errLog                // any other failure
	)
	ack := func(id, kind string) {
		mu.Lock()
		acked[id] = kind
		mu.Unlock()
	}
	kindOf := func(i int) string {
		switch i % 8 {
		case 0:
			return "slow"
		case 1, 2, 3, 4:
			return "quick"
		}
		return "noop"
	}
	cliArgs := func(kind string) []string {
		args := []string{"enqueue", "--max-attempts", "20", "--backoff", "10ms"}
		switch kind {
		case "noop":
			return append(args, "--type", "noop")
		case "slow":
			return append(args, "--deadline", "1s", "--", "sh", "-c", slow)
		}
		return append(args, "--", "sh", "-c", quick)
	}
	rpcReq := func(kind string) engine.EnqueueRequest {
		r := engine.EnqueueRequest{MaxAttempts: intPtr(20), Backoff: durPtr(10 * time.Millisecond)}
		switch kind {
		case "noop":
			r.Type = "noop"
		case "slow":
			r.Command, r.Deadline = []string{"sh", "-c", slow}, durPtr(time.Second)
		default:
			r.Command = []string{"sh", "-c", quick}
		}
		return r
	}

	var delays []time.Duration
	for it := 0; it < iterations; it++ {
		d := e.startDaemon("--workers", "4")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := 0; c < clients; c++ {
			wg.Add(1)
			go func(c int) {
				defer wg.Done()
				var cl *ipc.Client
				defer func() {
					if cl != nil {
						cl.Close()
					}
				}()
				for i := c; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					kind := kindOf(i)
					if c%2 == 0 { // half the clients use the CLI
						r := e.run(cliArgs(kind)...)
						switch {
						case r.code == 0:
							ack(strings.TrimSpace(r.stdout), kind)
						case r.code == 3 || connectionLost(r.stderr):
							lost.Add(1)
							time.Sleep(5 * time.Millisecond)
						default:
							odd.add("stq enqueue: exit %d: %s", r.code, r.stderr)
						}
						continue
					}
					if cl == nil {
						var err error
						if cl, err = e.dial(); err != nil {
							cl = nil
							time.Sleep(5 * time.Millisecond)
							continue
						}
					}
					id, err := enqueueRPC(cl, rpcReq(kind))
					if err != nil {
						if connectionLost(err.Error()) {
							lost.Add(1)
						} else {
							odd.add("dev.enqueue.v1: %v", err)
						}
						cl.Close()
						cl = nil
						continue
					}
					ack(id, kind)
				}
			}(c)
		}
		delay := 50*time.Millisecond + time.Duration(rng.Int64N(int64(450*time.Millisecond)))
		delays = append(delays, delay)
		time.Sleep(delay)
		d.kill()
		close(stop)
		wg.Wait()
	}

	if odd.n != 0 {
		t.Errorf("%d enqueues failed other than by losing the daemon: %q", odd.n, odd.samples)
	}
	d := e.startDaemon("--workers", "4")
	c := e.mustDial()
	ids := make([]string, 0, len(acked))
	for id := range acked {
		ids = append(ids, id)
	}
	waitAll(t, c, ids, 3*time.Minute)
	// Jobs committed but never acknowledged (the kill came first) are
	// stored too; they must end as well.
	stored := map[string]job{}
	var all []string
	for _, j := range allJobs(t, c) {
		all = append(all, j.ID)
	}
	for id, j := range waitAll(t, c, all, 3*time.Minute) {
		stored[id] = j
	}

	// Executions per job.
	execs := map[string]int{}
	b, err := os.ReadFile(ran)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if f := strings.Fields(line); len(f) == 2 {
			execs[f[0]]++
		} else if line != "" {
			t.Fatalf("bad line in the executions file: %q", line)
		}
	}

	for id, kind := range acked {
		if _, ok := stored[id]; !ok {
			t.Errorf("acknowledged %s job %s is missing", kind, id)
		}
	}
	var crashed, interrupted, reran, states = 0, 0, 0, map[string]int{}
	for id, lj := range stored {
		states[lj.State]++
		j := getJob(t, c, id)
		if j.State != "DONE" {
			t.Errorf("job %s (%s) ended %s: %q, attempts %+v", id, acked[id], j.State, j.Error, j.Attempts)
			continue
		}
		outcomes := map[string]int{}
		for _, a := range j.Attempts {
			outcomes[a.Outcome]++
		}
		crashed += outcomes["crashed"]
		interrupted += outcomes["interrupted"]
		if outcomes["succeeded"] != 1 || outcomes["running"] != 0 {
			t.Errorf("job %s is DONE with attempts %+v: want exactly one succeeded and none running", id, j.Attempts)
		}
		n := execs[id]
		if j.Type == "noop" {
			if n != 0 {
				t.Errorf("noop job %s ran a process %d times", id, n)
			}
			continue
		}
		if n < 1 {
			t.Errorf("job %s is DONE but its command never ran", id)
		}
		if n > len(j.Attempts) {
			t.Errorf("job %s ran %d times with %d attempts recorded: %+v", id, n, len(j.Attempts), j.Attempts)
		}
		// A second execution is allowed only for an attempt cut short: a
		// crash, a shutdown, or (slow jobs only) the deadline.
		cut := outcomes["crashed"] + outcomes["interrupted"]
		if strings.Contains(strings.Join(j.Command, " "), "sleep 300") {
			cut += outcomes["failed"]
		}
		if n-1 > cut {
			t.Errorf("job %s ran %d times but only %d attempts were cut short: %+v", id, n, cut, j.Attempts)
		}
		if n > 1 {
			reran++
		}
	}
	var running struct {
		Jobs []job `json:"jobs"`
	}
	if err := call(c, ipc.MethodList, map[string]any{"states": []string{"RUNNING"}}, &running); err != nil || len(running.Jobs) != 0 {
		t.Errorf("jobs left RUNNING: %d (%v)", len(running.Jobs), err)
	}

	// No job process outlives its job. A process whose PID was never
	// recorded comes from the window DESIGN.md admits (started just before
	// the crash, PID not yet stored); one whose PID was recorded is a leak.
	orphans := e.jobProcesses()
	var untracked []string
	for pid, p := range orphans {
		j := getJob(t, c, p.id)
		tracked, unrecorded := false, false
		for _, a := range j.Attempts {
			if a.PID == p.pgid || a.PID == pid {
				tracked = true
			}
			if a.Outcome == "crashed" && a.PID == 0 {
				unrecorded = true
			}
		}
		switch {
		case tracked:
			t.Errorf("orphan: pid %d (group %d, %q) of job %s survived recovery although its PID was recorded: %+v", pid, p.pgid, p.cmd, p.id, j.Attempts)
		case !unrecorded:
			t.Errorf("orphan: pid %d (group %d, %q) of job %s, which has no crashed attempt without a PID: %+v", pid, p.pgid, p.cmd, p.id, j.Attempts)
		default:
			untracked = append(untracked, fmt.Sprintf("pid %d (group %d, %s) of job %s", pid, p.pgid, strings.Fields(p.cmd)[0], p.id))
		}
		_ = syscallKillGroup(p.pgid)
	}
	unrecordedCrashes := 0
	for id := range stored {
		for _, a := range getJob(t, c, id).Attempts {
			if a.Outcome == "crashed" && a.PID == 0 {
				unrecordedCrashes++
			}
		}
	}
	sort.Strings(untracked)

	if code := d.stop(); code != 0 {
		t.Errorf("daemon exit code after SIGTERM: %d", code)
	}
	integrity, fk := sqliteCheck(t, e.path("stq.db"))
	if integrity != "ok" || fk != 0 {
		t.Errorf("integrity_check: %q, foreign key violations: %d", integrity, fk)
	}
	kinds := map[string]int{}
	for _, k := range acked {
		kinds[k]++
	}
	sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
	report(t, "%d SIGKILLs after %v to %v (median %v); %d acknowledged enqueues (%v), %d jobs stored, %d requests unanswered (daemon killed); final states %v; %d crashed attempts (%d before their PID was recorded), %d interrupted; %d jobs ran more than once, each after a cut-short attempt; orphan processes %d (untracked %d); integrity_check %q, foreign key violations %d",
		iterations, delays[0].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond), delays[len(delays)/2].Round(time.Millisecond), len(acked), kinds, len(stored), lost.Load(), states, crashed, unrecordedCrashes, interrupted, reran, len(orphans), len(untracked), integrity, fk)
	if len(untracked) > 0 && !t.Failed() {
		knownIssue(t, knownIssueUntrackedProcess, "a job process started just before a SIGKILL, before its PID was stored, survives recovery and runs next to the retry (%d orphan processes after %d kills: %v)",
			len(untracked), iterations, untracked)
	}
}
