package e2e

// The SIGKILL storm of fault class 1 (docs/RELIABILITY.md), shared by the
// SQLite test (sigkill_test.go) and the PostgreSQL one
// (cluster_storm_test.go): they differ only in the home they start from
// and the store's own integrity check at the end.

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

// stormClients enqueue at once during each life of the daemon; the even
// ones through the CLI, the odd ones over one socket connection each.
const stormClients = 8

// storm is what the clients saw while the daemon was killed again and
// again.
type storm struct {
	ran    string // every execution appends "job-id pid" here first
	mu     sync.Mutex
	acked  map[string]string // job id -> kind, for every acknowledged enqueue
	lost   atomic.Int64      // requests without an answer (daemon killed)
	odd    errLog            // any other failure
	delays []time.Duration   // how long each life of the daemon lasted
}

// stormRequest is the i-th job of a client: 1 in 8 slow (its first
// attempt sleeps until a crash or its 1 s deadline stops it: what recovery
// must kill, and an orphan if it missed it), 4 in 8 quick commands, 3 in 8
// in-process noops. It returns the CLI arguments and the RPC request for
// the same job.
func (s *storm) request(i int) (kind string, cli []string, rpc engine.EnqueueRequest) {
	quick := `echo "$STQ_JOB_ID $$" >> ` + s.ran
	slow := quick + `; if [ "$STQ_ATTEMPT" = 1 ]; then sleep 300; fi`
	cli = []string{"enqueue", "--max-attempts", "20", "--backoff", "10ms"}
	rpc = engine.EnqueueRequest{MaxAttempts: intPtr(20), Backoff: durPtr(10 * time.Millisecond)}
	switch i % 8 {
	case 0:
		rpc.Command, rpc.Deadline = []string{"sh", "-c", slow}, durPtr(time.Second)
		return "slow", append(cli, "--deadline", "1s", "--", "sh", "-c", slow), rpc
	case 1, 2, 3, 4:
		rpc.Command = []string{"sh", "-c", quick}
		return "quick", append(cli, "--", "sh", "-c", quick), rpc
	}
	rpc.Type = "noop"
	return "noop", append(cli, "--type", "noop"), rpc
}

// runStorm starts the daemon, lets stormClients enqueue for 50 to 500 ms,
// kills it with SIGKILL, and does that iterations times.
func runStorm(t *testing.T, e *testEnv, iterations int, rng *rand.Rand) *storm {
	t.Helper()
	s := &storm{ran: filepath.Join(t.TempDir(), "ran"), acked: map[string]string{}}
	for range iterations {
		d := e.startDaemon("--workers", "4")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range stormClients {
			wg.Go(func() { s.client(e, c, stop) })
		}
		delay := 50*time.Millisecond + time.Duration(rng.Int64N(int64(450*time.Millisecond)))
		s.delays = append(s.delays, delay)
		time.Sleep(delay)
		d.kill()
		close(stop)
		wg.Wait()
	}
	if s.odd.n != 0 {
		t.Errorf("%d enqueues failed other than by losing the daemon: %q", s.odd.n, s.odd.samples)
	}
	slices.Sort(s.delays)
	return s
}

// client enqueues until stop, counting what was acknowledged and what
// was lost with the daemon.
func (s *storm) client(e *testEnv, c int, stop <-chan struct{}) {
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
		kind, args, req := s.request(i)
		if c%2 == 0 {
			r := e.run(args...)
			switch {
			case r.code == 0:
				s.ack(strings.TrimSpace(r.stdout), kind)
			case r.code == 3 || connectionLost(r.stderr):
				s.lost.Add(1)
				time.Sleep(5 * time.Millisecond)
			default:
				s.odd.add("stq enqueue: exit %d: %s", r.code, r.stderr)
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
		id, err := enqueueRPC(cl, req)
		if err != nil {
			if connectionLost(err.Error()) {
				s.lost.Add(1)
			} else {
				s.odd.add("dev.enqueue.v1: %v", err)
			}
			cl.Close()
			cl = nil
			continue
		}
		s.ack(id, kind)
	}
}

func (s *storm) ack(id, kind string) {
	s.mu.Lock()
	s.acked[id] = kind
	s.mu.Unlock()
}

// stormEnd is what the daemon started after the storm made of it.
type stormEnd struct {
	stored      map[string]job // every job stored, acknowledged or not, as it ended
	states      map[string]int
	crashed     int // crashed attempts
	unrecorded  int // of those, crashed before their PID was stored
	interrupted int
	reran       int      // jobs whose command ran more than once
	untracked   []string // job processes left alive whose PID was never stored
}

// checkStorm starts the daemon once more, waits for every job to end and
// checks that no acknowledged job is missing, every job ended DONE after
// one succeeded attempt, commands ran more than once only after attempts
// cut short, nothing is left RUNNING, and no job process whose PID was
// recorded outlived its job. The daemon is stopped with SIGTERM at the
// end; its exit code must be 0.
func checkStorm(t *testing.T, e *testEnv, s *storm) stormEnd {
	t.Helper()
	d := e.startDaemon("--workers", "4")
	c := e.mustDial()
	waitAll(t, c, slices.Collect(maps.Keys(s.acked)), 3*time.Minute)
	// Jobs committed but never acknowledged (the kill came first) are
	// stored too; they must end as well.
	var all []string
	for _, j := range allJobs(t, c) {
		all = append(all, j.ID)
	}
	end := stormEnd{stored: waitAll(t, c, all, 3*time.Minute), states: map[string]int{}}
	for id, kind := range s.acked {
		if _, ok := end.stored[id]; !ok {
			t.Errorf("acknowledged %s job %s is missing", kind, id)
		}
	}
	execs := stormExecutions(t, s.ran)
	for id, lj := range end.stored {
		end.states[lj.State]++
		j := getJob(t, c, id)
		if n := stormCheckJob(t, j, execs[id]); n > 1 {
			end.reran++
		}
		for _, a := range j.Attempts {
			switch a.Outcome {
			case "crashed":
				end.crashed++
				if a.PID == 0 {
					end.unrecorded++
				}
			case "interrupted":
				end.interrupted++
			}
		}
	}
	var running struct {
		Jobs []job `json:"jobs"`
	}
	if err := call(c, ipc.MethodList, map[string]any{"states": []string{"RUNNING"}}, &running); err != nil || len(running.Jobs) != 0 {
		t.Errorf("jobs left RUNNING: %d (%v)", len(running.Jobs), err)
	}
	end.untracked = stormOrphans(t, e, c)
	if code := d.stop(); code != 0 {
		t.Errorf("daemon exit code after SIGTERM: %d", code)
	}
	return end
}

// summary is the report line both storm tests print.
func (s *storm) summary(end stormEnd) string {
	kinds := map[string]int{}
	for _, k := range s.acked {
		kinds[k]++
	}
	return fmt.Sprintf("%d SIGKILLs after %v to %v (median %v); %d acknowledged enqueues (%v), %d jobs stored, %d requests unanswered (daemon killed); final states %v; %d crashed attempts (%d before their PID was recorded), %d interrupted; %d jobs ran more than once, each after a cut-short attempt; untracked orphan processes %d",
		len(s.delays), s.delays[0].Round(time.Millisecond), s.delays[len(s.delays)-1].Round(time.Millisecond), s.delays[len(s.delays)/2].Round(time.Millisecond),
		len(s.acked), kinds, len(end.stored), s.lost.Load(), end.states, end.crashed, end.unrecorded, end.interrupted, end.reran, len(end.untracked))
}

// knownOrphans reports the untracked job processes as the known issue
// they are (a process started just before a SIGKILL, before its PID was
// stored, survives recovery), unless the test already failed.
func (s *storm) knownOrphans(t *testing.T, end stormEnd) {
	t.Helper()
	if len(end.untracked) > 0 && !t.Failed() {
		knownIssue(t, knownIssueUntrackedProcess, "a job process started just before a SIGKILL, before its PID was stored, survives recovery and runs next to the retry (%d orphan processes after %d kills: %v)",
			len(end.untracked), len(s.delays), end.untracked)
	}
}

// stormExecutions counts the lines "job-id pid" of the executions file per
// job id.
func stormExecutions(t *testing.T, path string) map[string]int {
	t.Helper()
	execs := map[string]int{}
	b, err := os.ReadFile(path)
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
	return execs
}

// stormCheckJob checks one job after the storm: DONE after exactly one
// succeeded attempt, its command run at least once, and more than once
// only after attempts cut short (a crash, a shutdown, or for the slow
// jobs their deadline). It returns n, the job's executions.
func stormCheckJob(t *testing.T, j job, n int) int {
	t.Helper()
	if j.State != "DONE" {
		t.Errorf("job %s ended %s: %q, attempts %+v", j.ID, j.State, j.Error, j.Attempts)
		return n
	}
	outcomes := map[string]int{}
	for _, a := range j.Attempts {
		outcomes[a.Outcome]++
	}
	if outcomes["succeeded"] != 1 || outcomes["running"] != 0 {
		t.Errorf("job %s is DONE with attempts %+v: want exactly one succeeded and none running", j.ID, j.Attempts)
	}
	if j.Type == "noop" {
		if n != 0 {
			t.Errorf("noop job %s ran a process %d times", j.ID, n)
		}
		return n
	}
	if n < 1 {
		t.Errorf("job %s is DONE but its command never ran", j.ID)
	}
	if n > len(j.Attempts) {
		t.Errorf("job %s ran %d times with %d attempts recorded: %+v", j.ID, n, len(j.Attempts), j.Attempts)
	}
	allowed := outcomes["crashed"] + outcomes["interrupted"]
	if strings.Contains(strings.Join(j.Command, " "), "sleep 300") {
		allowed += outcomes["failed"] // the slow job's deadline
	}
	if n-1 > allowed {
		t.Errorf("job %s ran %d times but only %d attempts were cut short: %+v", j.ID, n, allowed, j.Attempts)
	}
	return n
}

// stormOrphans kills the job processes of the home still alive, failing
// the test for any whose PID the store had recorded, and returns the
// others: started just before a crash, before their PID was stored (the
// window DESIGN.md admits).
func stormOrphans(t *testing.T, e *testEnv, c *ipc.Client) []string {
	t.Helper()
	var untracked []string
	for pid, p := range e.jobProcesses() {
		j := getJob(t, c, p.id)
		tracked, unrecorded := false, false
		for _, a := range j.Attempts {
			tracked = tracked || a.PID == p.pgid || a.PID == pid
			unrecorded = unrecorded || (a.Outcome == "crashed" && a.PID == 0)
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
	slices.Sort(untracked)
	return untracked
}
