package e2e

// Reliability tests. Each one drives real daemons (the race-built binary
// from TestMain) through one class of failure -- SIGKILL in the middle of a
// storm, job processes killed from outside, endless output, write
// contention, WAL growth behind a reader, token leaks, connection floods, a
// soak -- and checks precisely that it leaves nothing behind. Every loop is
// bounded in count and time; STQ_LONG=1 scales them up (see
// docs/RELIABILITY.md). Measured figures are logged on lines starting with
// "RELIABILITY", so
//
//	go test -race -count=1 -v -run TestReliability . | grep RELIABILITY
//
// collects them.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
	"stq/ipc"
)

// longRun selects the long versions of the loops.
var longRun = os.Getenv("STQ_LONG") == "1"

// scaled picks the CI or the STQ_LONG=1 value.
func scaled[T any](ci, long T) T {
	if longRun {
		return long
	}
	return ci
}

// report logs one measured figure for docs/RELIABILITY.md.
func report(t *testing.T, format string, args ...any) {
	t.Helper()
	t.Logf("RELIABILITY %s: %s", t.Name(), fmt.Sprintf(format, args...))
}

// Known issues found by this suite whose fix is outside the tests (see
// docs/RELIABILITY.md). While one is true, the test that shows it logs its
// figures and skips with "known issue: ..." instead of failing; set it to
// false once the fix lands, so that a regression fails again.
const (
	knownIssueUntrackedProcess = false // test 1: process started just before a crash survives recovery
	knownIssueShortLines       = false // test 3: log_limit counts text bytes only
	knownIssueWALLeftLarge     = false // test 5: journal_size_limit is 64 MiB
	knownIssueCancelRace       = false // test 8: cancel right after the claim names the daemon itself as "another daemon"
)

// knownIssue skips with the message while the issue is open, and fails
// the test once it is marked fixed.
func knownIssue(t *testing.T, open bool, format string, args ...any) {
	t.Helper()
	if open {
		t.Skipf("known issue: "+format, args...)
	}
	t.Fatalf(format, args...)
}

func needProc(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
}

// procStatusKB reads a size field ("VmRSS", "VmHWM") of /proc/PID/status,
// in KiB.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssMB is the daemon's resident set now (VmRSS), in MiB.
func (d *daemon) rssMB() float64 {
	d.t.Helper()
	kb, err := procStatusKB(d.cmd.Process.Pid, "VmRSS")
	if err != nil {
		d.t.Fatalf("read daemon RSS: %v", err)
	}
	return float64(kb) / 1024
}

// peakRSSMB is the daemon's peak resident set so far (VmHWM), in MiB.
func (d *daemon) peakRSSMB() float64 {
	d.t.Helper()
	kb, err := procStatusKB(d.cmd.Process.Pid, "VmHWM")
	if err != nil {
		d.t.Fatalf("read daemon peak RSS: %v", err)
	}
	return float64(kb) / 1024
}

func (e *testEnv) writeConfig(text string) {
	e.t.Helper()
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.path("config.toml"), []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

// dial opens an authenticated ipc.Client, the client the CLI itself uses.
// It does not touch t, so goroutines may call it.
func (e *testEnv) dial() (*ipc.Client, error) {
	tok, err := os.ReadFile(e.path("token"))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return ipc.Dial(ctx, e.path("stq.sock"), strings.TrimSpace(string(tok)))
}

// mustDial is dial for the test goroutine.
func (e *testEnv) mustDial() *ipc.Client {
	e.t.Helper()
	c, err := e.dial()
	if err != nil {
		e.t.Fatalf("dial: %v", err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// call is one request with a generous bound, so a wedged daemon fails the
// test instead of hanging it.
func call(c *ipc.Client, method string, params, result any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return c.Call(ctx, method, params, result)
}

func enqueueRPC(c *ipc.Client, req engine.EnqueueRequest) (string, error) {
	var res struct {
		Job job `json:"job"`
	}
	if err := call(c, ipc.MethodEnqueue, req, &res); err != nil {
		return "", err
	}
	if res.Job.ID == "" {
		return "", errors.New("enqueue reply without a job id")
	}
	return res.Job.ID, nil
}

func durPtr(d time.Duration) *engine.Duration {
	v := engine.Duration(d)
	return &v
}

func intPtr(v int) *int { return &v }

// waitAll blocks until every job is terminal, in chunks the API accepts,
// and returns the jobs as they ended. An acknowledged id the daemon does not
// know fails the test, naming it.
func waitAll(t *testing.T, c *ipc.Client, ids []string, timeout time.Duration) map[string]job {
	t.Helper()
	out := make(map[string]job, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		var res struct {
			Jobs     []job `json:"jobs"`
			TimedOut bool  `json:"timed_out"`
		}
		// The client waits longer than the server-side timeout, so a slow
		// drain is reported as timed_out with the jobs still live, not as a
		// bare client deadline (call's 60s) that says nothing.
		ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
		err := c.Call(ctx, ipc.MethodWait, map[string]any{"ids": ids[:n], "timeout": timeout.String()}, &res)
		cancel()
		if rpcCode(err) == -32001 {
			for _, id := range ids[:n] {
				if err := call(c, ipc.MethodGet, map[string]string{"id": id}, nil); rpcCode(err) == -32001 {
					t.Errorf("acknowledged job %s is missing", id)
				}
			}
			t.FailNow()
		}
		if err != nil {
			t.Fatalf("wait for %d jobs: %v", n, err)
		}
		if res.TimedOut {
			var live []string
			for _, j := range res.Jobs {
				if !terminal(j.State) {
					live = append(live, j.ID+"="+j.State)
				}
			}
			t.Fatalf("%d jobs not finished after %s: %v", len(live), timeout, live[:min(len(live), 20)])
		}
		for _, j := range res.Jobs {
			out[j.ID] = j
		}
		ids = ids[n:]
	}
	return out
}

func terminal(state string) bool {
	switch state {
	case "DONE", "FAILED", "CANCELLED", "SUPERSEDED", "EXPIRED":
		return true
	}
	return false
}

// allJobs lists every job of the home (newest first), without attempts.
func allJobs(t *testing.T, c *ipc.Client) []job {
	t.Helper()
	var res struct {
		Jobs []job `json:"jobs"`
	}
	if err := call(c, ipc.MethodList, map[string]any{"limit": 10000}, &res); err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(res.Jobs) == 10000 {
		t.Fatal("10000 jobs or more: the check would miss some; lower the load")
	}
	return res.Jobs
}

func getJob(t *testing.T, c *ipc.Client, id string) job {
	t.Helper()
	var j job
	if err := call(c, ipc.MethodGet, map[string]string{"id": id}, &j); err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return j
}

// jobProcesses lists the live processes that run jobs of this home: every
// job inherits the daemon's environment, which holds STQ_HOME, plus its own
// STQ_JOB_ID. The map goes from PID to (job id, process group).
type jobProc struct {
	id   string
	pgid int
	cmd  string
}

func (e *testEnv) jobProcesses() map[int]jobProc {
	procs := map[int]jobProc{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return procs
	}
	home := []byte("STQ_HOME=" + e.home)
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		var id string
		mine := false
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(kv, home) {
				mine = true
			}
			if v, ok := bytes.CutPrefix(kv, []byte("STQ_JOB_ID=")); ok {
				id = string(v)
			}
		}
		if !mine || id == "" || !processAlive(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		procs[pid] = jobProc{id: id, pgid: pgidOf(pid), cmd: strings.ReplaceAll(string(cmdline), "\x00", " ")}
	}
	return procs
}

// pgidOf reads the process group from /proc/PID/stat (field 5).
func pgidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// sqliteCheck opens the database file directly (the daemon must be stopped)
// and returns what PRAGMA integrity_check and foreign_key_check say: "ok"
// and no rows when the file is sound.
func sqliteCheck(t *testing.T, path string) (integrity string, fkViolations int) {
	t.Helper()
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	rows := func(sql string) []string {
		stmt, _, err := db.Prepare(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer stmt.Close()
		var out []string
		for stmt.Step() {
			out = append(out, stmt.ColumnText(0))
		}
		if err := stmt.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return out
	}
	return strings.Join(rows("PRAGMA integrity_check"), "\n"), len(rows("PRAGMA foreign_key_check"))
}

// connectionLost reports an error that only says the daemon went away
// mid-request (it was killed), as the CLI and ipc.Client word it.
func connectionLost(msg string) bool {
	for _, s := range []string{"EOF", "connection reset", "broken pipe", "no daemon", "connection refused", "use of closed network connection"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// syscallKillGroup kills a leftover process group the test found.
func syscallKillGroup(pgid int) error {
	if pgid <= 1 {
		return nil
	}
	return syscall.Kill(-pgid, syscall.SIGKILL)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// --- 1. SIGKILL at random moments during a storm -------------------------

func TestReliabilitySIGKILLDuringStormLosesNothing(t *testing.T) {
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

// --- 2. A job's process killed from outside -------------------------------

func TestReliabilityJobKilledFromOutsideFailsTheAttemptAndRetries(t *testing.T) {
	needProc(t)
	e := newEnv(t)
	e.startDaemon("--workers", "2")
	for _, tc := range []struct {
		name  string
		group bool // kill -9 -PGID instead of kill -9 PID
	}{{"kill -9 PID", false}, {"kill -9 -PGID", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			// The first attempt leaves a grandchild in its group and waits;
			// the second succeeds at once.
			script := `if [ "$STQ_ATTEMPT" = 1 ]; then echo $$ > ` + dir + `/leader; sleep 300 & echo $! > ` + dir + `/child; wait; fi; echo attempt $STQ_ATTEMPT ok`
			id := e.ok("enqueue", "--max-attempts", "3", "--backoff", "10ms", "--", "sh", "-c", script)
			leader, child := readPID(t, dir+"/leader"), readPID(t, dir+"/child")
			var j job
			waitFor(t, "the PID to be recorded", 30*time.Second, func() bool {
				j = e.show(id)
				return len(j.Attempts) == 1 && j.Attempts[0].PID == leader
			})
			target := leader
			if tc.group {
				target = -leader // the leader's PID is the group id
			}
			if err := syscall.Kill(target, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if r := e.run("wait", "--timeout", "60s", id); r.code != 0 {
				t.Fatalf("wait: exit %d %s %s", r.code, r.stdout, r.stderr)
			}
			j = e.show(id)
			if j.State != "DONE" || j.Attempt != 2 || len(j.Attempts) != 2 {
				t.Fatalf("job after its process was killed: %+v", j)
			}
			a := j.Attempts[0]
			if a.Outcome != "failed" || a.Reason != "killed by signal SIGKILL" || a.ExitCode != nil || a.PID != leader {
				t.Fatalf("killed attempt: %+v, want failed with \"killed by signal SIGKILL\"", a)
			}
			if j.Attempts[1].Outcome != "succeeded" {
				t.Fatalf("retry: %+v", j.Attempts[1])
			}
			log := e.ok("tail", id)
			if !strings.Contains(log, "attempt 1: killed by signal SIGKILL") || !strings.Contains(log, "attempt 2 ok") {
				t.Fatalf("log does not tell the story:\n%s", log)
			}
			// Whatever the killed leader left in its group is killed too.
			waitFor(t, "the grandchild to be killed", 10*time.Second, func() bool { return !processAlive(child) })
			report(t, "attempt 1 %s %q, attempt 2 %s; grandchild killed", a.Outcome, a.Reason, j.Attempts[1].Outcome)
		})
	}
}

// --- 3. A job that prints without end --------------------------------------

// runBounded runs one stq command but gives up after timeout (killing it),
// so a command that hangs fails the test instead of stalling it.
func (e *testEnv) runBounded(timeout time.Duration, args ...string) (r result, took time.Duration, timedOut bool) {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	start := time.Now()
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(timeout):
		_ = c.Process.Kill()
		err = <-done
		timedOut = true
	}
	took = time.Since(start)
	r = result{out.String(), errb.String(), 0}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	}
	return r, took, timedOut
}

// storedLog reads a job's whole stored log through `stq tail --json`:
// lines, bytes of text, and whether the store's "[stq] N lines dropped"
// note is among them.
func (e *testEnv) storedLog(id string) (lines int, textBytes int, dropNote bool) {
	e.t.Helper()
	out := e.ok("tail", "--json", id)
	for l := range strings.SplitSeq(out, "\n") {
		if l == "" {
			continue
		}
		var ev struct {
			Line struct {
				Stream string `json:"stream"`
				Text   string `json:"text"`
			} `json:"line"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			e.t.Fatalf("tail --json line %q: %v", l, err)
		}
		lines++
		textBytes += len(ev.Line.Text)
		if ev.Line.Stream == "stq" && strings.Contains(ev.Line.Text, "dropped") {
			dropNote = true
		}
	}
	return lines, textBytes, dropNote
}

func TestReliabilityEndlessOutputStaysBounded(t *testing.T) {
	needProc(t)
	const (
		logLimit = 1 << 20 // the default, configured explicitly
		rssBound = 200.0   // MiB, under -race
	)
	runFor := scaled(4*time.Second, 30*time.Second)
	shortLines := "the log limit counts only text bytes, so a job printing short or empty lines " +
		"makes the daemon hold ~100+ bytes per line in memory (and on disk) far past log_limit; " +
		"fix in engine.output/flushJob and store.AppendLog (see docs/RELIABILITY.md)"
	for _, tc := range []struct {
		name       string
		cmd        []string
		knownIssue string
	}{
		{"100-byte lines", []string{"sh", "-c", "while :; do echo " + strings.Repeat("x", 99) + "; done"}, ""},
		{"1-byte lines (yes)", []string{"yes"}, shortLines},
		{"empty lines (yes '')", []string{"yes", ""}, shortLines},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.writeConfig(fmt.Sprintf("[daemon]\nlog_limit = %d\n", logLimit))
			d := e.startDaemon("--workers", "1")
			base := d.rssMB()
			id := e.ok(append([]string{"enqueue", "--deadline", "0", "--max-attempts", "1", "--"}, tc.cmd...)...)
			e.waitState(id, "RUNNING")
			start := time.Now()
			peak := 0.0
			for time.Since(start) < runFor && peak <= rssBound {
				time.Sleep(100 * time.Millisecond)
				peak = max(peak, d.rssMB())
			}
			ran := time.Since(start)
			peak = max(peak, d.peakRSSMB())
			if peak > rssBound {
				// Stop here: waiting for the cancel of such a job takes
				// minutes (the daemon first stores a huge backlog of lines).
				procs := e.jobProcesses()
				d.kill()
				for _, p := range procs {
					_ = syscallKillGroup(p.pgid)
				}
				msg := fmt.Sprintf("daemon RSS reached %.0f MiB (from %.0f MiB at start) after %v of %s, over the %.0f MiB bound with log_limit = %d",
					peak, base, ran.Round(100*time.Millisecond), tc.name, rssBound, logLimit)
				report(t, "%s", msg)
				if tc.knownIssue != "" {
					knownIssue(t, knownIssueShortLines, "%s: %s", tc.knownIssue, msg)
				}
				t.Fatal(msg)
			}
			r, took, timedOut := e.runBounded(60*time.Second, "cancel", id)
			if timedOut || r.code != 0 {
				t.Fatalf("cancel of the printing job: exit %d after %v (timed out: %v): %s", r.code, took, timedOut, r.stderr)
			}
			j := e.show(id)
			var raw map[string]any
			if err := json.Unmarshal([]byte(e.ok("show", "--json", id)), &raw); err != nil {
				t.Fatal(err)
			}
			lines, text, note := e.storedLog(id)
			// The drop is recorded in log_truncated, which `stq tail` turns
			// into its first line.
			plain := e.ok("tail", id)
			if j.State != "CANCELLED" || raw["log_truncated"] != true || !strings.HasPrefix(plain, "[stq] earlier output was dropped") {
				t.Errorf("job %s, log_truncated %v, tail starts %q", j.State, raw["log_truncated"], plain[:min(len(plain), 80)])
			}
			if text > logLimit {
				t.Errorf("stored log holds %d bytes of text, over log_limit %d", text, logLimit)
			}
			// A stored line costs a row whatever its text: the budget must
			// count at least a little per line, or empty lines are free.
			if maxLines := logLimit/16 + 1; lines > maxLines {
				t.Errorf("stored log holds %d lines for %d bytes of text: over %d, so lines are not paid for", lines, text, maxLines)
			}
			dbBytes := fileSize(e.path("stq.db")) + fileSize(e.path("stq.db-wal"))
			report(t, "printed for %v: daemon RSS %.0f MiB at start, peak %.0f MiB (bound %.0f); stored log %d lines, %d bytes of text (log_limit %d), log_truncated %v, \"[stq] ... lines dropped\" line kept: %v; db+wal %.1f MiB; cancel took %v",
				ran.Round(100*time.Millisecond), base, peak, rssBound, lines, text, logLimit, raw["log_truncated"], note, mb(dbBytes), took.Round(time.Millisecond))
		})
	}
}

// --- 4. "database is locked" never reaches a client --------------------------

// lockedOrBusy reports an error text that leaks SQLite contention.
func lockedOrBusy(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "locked") || strings.Contains(s, "busy")
}

// errLog keeps a count and the first few errors seen by concurrent clients.
type errLog struct {
	mu      sync.Mutex
	n       int
	locked  int
	samples []string
}

func (l *errLog) add(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if lockedOrBusy(msg) {
		l.locked++
	}
	if len(l.samples) < 10 {
		l.samples = append(l.samples, msg)
	}
}

func TestReliabilityDatabaseLockedNeverReachesAClient(t *testing.T) {
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

// --- 5. WAL growth behind an outside reader -------------------------------

func TestReliabilityWALShrinksAfterAReaderLetsGo(t *testing.T) {
	const walBound = 8 << 20 // bytes: what a burst may leave behind for good
	jobs := scaled(1200, 5000)
	settle := scaled(5*time.Second, 30*time.Second)
	e := newEnv(t)
	e.startDaemon("--workers", "4")
	wal := e.path("stq.db-wal")

	// An outside reader holds a snapshot: no checkpoint can pass it, so
	// the WAL must grow while it is open.
	db, err := sqlite3.OpenFlags(e.path("stq.db"), sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.BusyTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	stmt, _, err := db.Prepare("SELECT count(*) FROM jobs")
	if err != nil {
		t.Fatal(err)
	}
	if !stmt.Step() {
		t.Fatalf("read: %v", stmt.Err())
	}
	before := stmt.ColumnInt64(0)
	stmt.Close()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
		errs errLog
		next atomic.Int64
	)
	start := time.Now()
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := e.dial()
			if err != nil {
				errs.add("dial: %v", err)
				return
			}
			defer cl.Close()
			for next.Add(1) <= int64(jobs) {
				id, err := enqueueRPC(cl, engine.EnqueueRequest{Type: "noop"})
				if err != nil {
					errs.add("enqueue: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if errs.n != 0 {
		t.Fatalf("%d enqueue errors: %q", errs.n, errs.samples)
	}
	c := e.mustDial()
	waitAll(t, c, ids, 3*time.Minute)
	burst := time.Since(start)
	peak := fileSize(wal)

	// The snapshot still shows the world before the burst.
	stmt, _, err = db.Prepare("SELECT count(*) FROM jobs")
	if err != nil {
		t.Fatal(err)
	}
	if !stmt.Step() || stmt.ColumnInt64(0) != before {
		t.Fatalf("the reader's snapshot moved: %d jobs, was %d (%v)", stmt.ColumnInt64(0), before, stmt.Err())
	}
	stmt.Close()
	if err := db.Exec("COMMIT"); err != nil {
		t.Fatal(err)
	}

	// A light load keeps the writer committing, which is what gives SQLite
	// its chances to checkpoint and restart the WAL.
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl, err := e.dial()
		if err != nil {
			errs.add("dial: %v", err)
			return
		}
		defer cl.Close()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := enqueueRPC(cl, engine.EnqueueRequest{Type: "noop"}); err != nil {
				errs.add("enqueue: %v", err)
				return
			}
		}
	}()
	released := time.Now()
	size, low, high := peak, peak, peak
	for time.Since(released) < settle {
		time.Sleep(100 * time.Millisecond)
		size = fileSize(wal)
		low, high = min(low, size), max(high, size)
		if size <= walBound {
			break
		}
	}
	took := time.Since(released)
	close(stop)
	wg.Wait()
	if errs.n != 0 {
		t.Errorf("%d enqueue errors under light load: %q", errs.n, errs.samples)
	}
	report(t, "%d noop jobs enqueued and run in %v behind an open read transaction: WAL peaked at %.1f MiB (database %.1f MiB); after the reader let go, with one enqueue every 50ms, the WAL was %.1f MiB after %v (range %.1f-%.1f MiB; bound %.0f MiB)",
		jobs, burst.Round(100*time.Millisecond), mb(peak), mb(fileSize(e.path("stq.db"))), mb(size), took.Round(100*time.Millisecond), mb(low), mb(high), mb(walBound))
	if peak <= walBound {
		t.Fatalf("the WAL only grew to %.1f MiB: the burst is too small to test shrinking under %.0f MiB", mb(peak), mb(walBound))
	}
	// Checkpoints must resume once the reader is gone: a WAL still growing
	// under a light load is checkpoint starvation.
	if high > peak+(1<<20) {
		t.Errorf("the WAL kept growing after the reader let go: %.1f MiB, peak under the reader %.1f MiB", mb(high), mb(peak))
	}
	if size > walBound && !t.Failed() {
		knownIssue(t, knownIssueWALLeftLarge, "the WAL stayed at %.1f MiB (peak %.1f MiB) for %v after the reader let go, over the %.0f MiB bound: the store truncates the WAL only down to journal_size_limit = 64 MiB, so a burst leaves up to 64 MiB behind for good",
			mb(size), mb(peak), settle, mb(walBound))
	}
}

// --- 6. The token never leaks ----------------------------------------------

// rawReply dials the socket, sends one line and returns the raw bytes of
// the first reply line and whether the server closed the connection after
// it. It does not touch t, so goroutines may call it.
func (e *testEnv) rawReply(line string) (reply []byte, closed bool, err error) {
	conn, err := net.Dial("unix", e.path("stq.sock"))
	if err != nil {
		return nil, false, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	// The server may answer and close before it has read all of a long
	// line; a failed write is then expected.
	go func() { _, _ = conn.Write([]byte(line + "\n")) }()
	r := bufio.NewReader(conn)
	reply, err = r.ReadBytes('\n')
	if err != nil {
		return reply, false, fmt.Errorf("no reply line: %w", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, rerr := r.ReadByte()
	return reply, rerr != nil && !isTimeout(rerr), nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func authLine(params string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":` + params + `}`
}

func tokenParams(tok string) string {
	b, _ := json.Marshal(map[string]string{"token": tok})
	return string(b)
}

func TestReliabilityTokenNeverLeaks(t *testing.T) {
	needProc(t)
	e := newEnv(t)
	d := e.startDaemon() // with --log-level debug
	tok := e.token()
	if len(tok) != 64 {
		t.Fatalf("token is %d characters", len(tok))
	}
	// Secrets that must not show up: the token and any long piece of it
	// (a one-character-off guess shares 63 characters with it).
	leaks := func(b []byte) string {
		for _, s := range []string{tok, tok[:32], tok[32:]} {
			if bytes.Contains(b, []byte(s)) {
				return s
			}
		}
		return ""
	}

	// Wrong tokens. Every variant gets the same bytes back and a closed
	// connection; the reply says nothing about how close the guess was.
	off := []byte(tok)
	off[63] = "01"[boolInt(off[63] == '0')]
	first := []byte(tok)
	first[0] = "01"[boolInt(first[0] == '0')]
	variants := map[string]string{
		"no token member":         authLine(`{}`),
		"no params":               `{"jsonrpc":"2.0","id":1,"method":"auth.v1"}`,
		"null token":              authLine(`{"token":null}`),
		"empty token":             authLine(tokenParams("")),
		"last character off":      authLine(tokenParams(string(off))),
		"first character off":     authLine(tokenParams(string(first))),
		"63 characters":           authLine(tokenParams(tok[:63])),
		"65 characters":           authLine(tokenParams(tok + "0")),
		"upper case":              authLine(tokenParams(strings.ToUpper(tok))),
		"with a trailing newline": authLine(tokenParams(tok + "\n")),
		"3 KiB (token + padding)": authLine(tokenParams(tok + strings.Repeat("a", 3<<10))),
		"random 64 hex":           authLine(tokenParams(strings.Repeat("0123456789abcdef", 4))),
		"a number":                authLine(`{"token":12345}`),
		"another method first":    `{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1","params":{}}`,
	}
	var want []byte
	names := make([]string, 0, len(variants))
	for name := range variants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, closed, err := e.rawReply(variants[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want == nil {
			want = got
			var rep rpcReply
			if err := json.Unmarshal(got, &rep); err != nil || rep.Error == nil || rep.Error.Code != -32000 || string(rep.ID) != "1" {
				t.Fatalf("%s: reply %s, want -32000 with id 1", name, got)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: reply %q differs from %q", name, got, want)
		}
		if !closed {
			t.Errorf("%s: connection left open after a failed auth", name)
		}
	}
	// Over the 4 KiB pre-auth line limit the documented answer is -32005
	// (id null), whatever the line holds: the same for a 10 KiB token that
	// starts with the real one as for 10 KiB of junk.
	var long []byte
	for _, name := range []string{"real token + 10 KiB", "10 KiB of junk"} {
		v := tok + strings.Repeat("a", 10<<10)
		if name == "10 KiB of junk" {
			v = strings.Repeat("b", len(v))
		}
		got, closed, err := e.rawReply(authLine(tokenParams(v)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var rep rpcReply
		if err := json.Unmarshal(got, &rep); err != nil || rep.Error == nil || rep.Error.Code != -32005 || string(rep.ID) != "null" || !closed {
			t.Fatalf("%s: reply %s (closed %v), want -32005 with id null and a closed connection", name, got, closed)
		}
		if long != nil && !bytes.Equal(got, long) {
			t.Errorf("%s: reply %q differs from %q", name, got, long)
		}
		long = got
	}

	// Brute force: 50 quick wrong-token connections, 10 at a time.
	const guesses = 50
	var refused atomic.Int64
	var bad errLog
	var wg sync.WaitGroup
	startBF := time.Now()
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < guesses/10; i++ {
				guess := fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
				got, closed, err := e.rawReply(authLine(tokenParams(guess)))
				switch {
				case err != nil:
					bad.add("guess %d/%d: %v", g, i, err)
				case !bytes.Equal(got, want) || !closed:
					bad.add("guess %d/%d: reply %q, closed %v", g, i, got, closed)
				default:
					refused.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	bfTook := time.Since(startBF)
	if refused.Load() != guesses || bad.n != 0 {
		t.Errorf("%d of %d guesses refused; problems: %q", refused.Load(), guesses, bad.samples)
	}
	// The right token still works, on the socket and through the CLI.
	e.dialRaw().auth(tok)
	e.ok("stats")

	// The job environment: a job that prints its whole environment.
	envJob := e.ok("enqueue", "--env", "EXTRA=1", "--", "env")
	e.ok("wait", envJob)
	envLog := e.ok("tail", envJob)
	if !strings.Contains(envLog, "STQ_JOB_ID="+envJob) || !strings.Contains(envLog, "EXTRA=1") {
		t.Fatalf("the env job did not print its environment:\n%s", envLog)
	}
	if s := leaks([]byte(envLog)); s != "" {
		t.Errorf("a job's environment holds the token (%q)", s)
	}

	// Every process's command line and environment, while a job runs and
	// CLI clients are connected to it (tail -f, wait).
	dir := t.TempDir()
	sleeper := e.ok("enqueue", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 300")
	readPID(t, dir+"/pid")
	var clients []*exec.Cmd
	for _, args := range [][]string{{"tail", "-f", "--job", sleeper}, {"wait", sleeper}} {
		c := e.cmd(args...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	waitFor(t, "the CLI clients to be running", 10*time.Second, func() bool {
		for _, c := range clients {
			if !processAlive(c.Process.Pid) {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // let them connect and authenticate
	scanned := 0
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err != nil {
				continue
			}
			if f == "cmdline" {
				scanned++
			}
			if s := leaks(b); s != "" {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Errorf("process %d (%q) has the token in its %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), f)
			}
		}
	}
	for _, c := range clients {
		if !processAlive(c.Process.Pid) {
			t.Errorf("CLI client %v ended early", c.Args)
		}
	}
	e.ok("cancel", sleeper)

	// The daemon's own log, at debug level, after all of the above; and the
	// database files, which hold every job's environment and output.
	if s := leaks([]byte(d.output())); s != "" {
		t.Errorf("the daemon's log holds the token (%q)", s)
	}
	authFailures := strings.Count(d.output(), "authentication failed")
	dbFiles := 0
	for _, f := range []string{"stq.db", "stq.db-wal"} {
		b, err := os.ReadFile(e.path(f))
		if err != nil {
			continue
		}
		dbFiles++
		if s := leaks(b); s != "" {
			t.Errorf("%s holds the token (%q)", f, s)
		}
	}
	report(t, "%d wrong-token variants got one identical reply %s; over 4 KiB a documented -32005 (same bytes with or without the real token inside); %d/%d brute-force guesses refused in %v, the right token still served; token absent from %d processes' cmdline and environ, the job environment dump, %d database files, and %d KiB of debug log (%d auth failures logged)",
		len(variants), bytes.TrimSpace(want), refused.Load(), guesses, bfTook.Round(time.Millisecond), scanned, dbFiles, len(d.output())>>10, authFailures)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// --- 7. Connection flood past the limit ------------------------------------

// heldConn is a raw connection that never authenticates.
type heldConn struct {
	conn   net.Conn
	dialed time.Time
}

// firstLine waits up to d for one line from the server. timedOut means the
// server said nothing (the connection is still open and waiting for auth).
func (h *heldConn) firstLine(d time.Duration) (line []byte, timedOut bool, err error) {
	_ = h.conn.SetReadDeadline(time.Now().Add(d))
	var buf []byte
	one := make([]byte, 1)
	for {
		n, err := h.conn.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return buf, false, nil
			}
			buf = append(buf, one[0])
			continue
		}
		if err != nil {
			if isTimeout(err) && len(buf) == 0 {
				return nil, true, nil
			}
			return buf, false, err
		}
	}
}

func TestReliabilityConnectionFloodAndSlowloris(t *testing.T) {
	e := newEnv(t)
	const limit, flood = 8, 20
	e.writeConfig(fmt.Sprintf("[daemon]\nmax_connections = %d\n", limit))
	e.startDaemon()

	dialAll := func() []*heldConn {
		conns := make([]*heldConn, 0, flood)
		for i := 0; i < flood; i++ {
			c, err := net.Dial("unix", e.path("stq.sock"))
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
			conns = append(conns, &heldConn{conn: c, dialed: time.Now()})
		}
		return conns
	}
	// classify reads every connection at once: the ones over the limit get
	// -32005 with a null id and are closed; the others hear nothing yet.
	classify := func(conns []*heldConn) (held []*heldConn, rejected int) {
		type res struct {
			h        *heldConn
			line     []byte
			timedOut bool
			closed   bool
			err      error
		}
		out := make([]res, len(conns))
		var wg sync.WaitGroup
		for i, h := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				line, timedOut, err := h.firstLine(2 * time.Second)
				r := res{h: h, line: line, timedOut: timedOut, err: err}
				if err == nil && !timedOut {
					_ = h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, rerr := h.conn.Read(make([]byte, 1))
					r.closed = rerr != nil && !isTimeout(rerr)
				}
				out[i] = r
			}()
		}
		wg.Wait()
		for i, r := range out {
			switch {
			case r.err != nil:
				t.Fatalf("connection %d: %v", i, r.err)
			case r.timedOut:
				held = append(held, r.h)
			default:
				var rep rpcReply
				if err := json.Unmarshal(r.line, &rep); err != nil || rep.Error == nil || rep.Error.Code != -32005 || string(rep.ID) != "null" || !strings.Contains(rep.Error.Message, "too many connections") {
					t.Fatalf("connection %d over the limit got %q, want -32005 \"too many connections\" with id null", i, r.line)
				}
				if !r.closed {
					t.Fatalf("connection %d over the limit was left open", i)
				}
				rejected++
			}
		}
		return held, rejected
	}
	closeAll := func(conns []*heldConn) {
		for _, h := range conns {
			h.conn.Close()
		}
	}

	// Phase 1: the flood; the client closes what it holds, and service
	// resumes. The CLI readiness probe's connection may take a moment to be
	// reaped, so a first round with fewer than the limit held is retried.
	var held []*heldConn
	var rejected int
	waitFor(t, fmt.Sprintf("exactly %d of %d connections to be held", limit, flood), 30*time.Second, func() bool {
		conns := dialAll()
		held, rejected = classify(conns)
		if len(held) > limit {
			t.Fatalf("%d connections held, over max_connections = %d", len(held), limit)
		}
		if len(held) < limit {
			closeAll(conns)
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	})
	if rejected != flood-limit {
		t.Fatalf("%d rejected, want %d", rejected, flood-limit)
	}
	r := e.run("stats")
	if r.code == 0 || !strings.Contains(r.stderr, "too many connections") {
		t.Fatalf("stq stats with the limit reached: exit %d, %q; want a clear refusal", r.code, r.stderr)
	}
	closeAll(held)
	waitFor(t, "an authenticated client to be served after the flood closed", 10*time.Second, func() bool {
		return e.run("stats").code == 0
	})

	// Phase 2: slowloris. Hold the limit with connections that never
	// authenticate (half of them trickle a byte every 300ms); the server
	// must drop each about 5s after accepting it, without the client
	// doing anything, and then serve again.
	conns := dialAll()
	waitFor(t, "the limit to be held again", 30*time.Second, func() bool {
		held, rejected = classify(conns)
		if len(held) < limit {
			closeAll(conns)
			time.Sleep(200 * time.Millisecond)
			conns = dialAll()
			return false
		}
		return true
	})
	stopTrickle := make(chan struct{})
	var trickle sync.WaitGroup
	for i, h := range held {
		if i%2 == 1 {
			continue
		}
		trickle.Add(1)
		go func() {
			defer trickle.Done()
			partial := []byte(`{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"`)
			for j := 0; ; j++ {
				select {
				case <-stopTrickle:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := h.conn.Write(partial[j%len(partial) : j%len(partial)+1]); err != nil {
					return
				}
			}
		}()
	}
	var lifetimes []time.Duration
	for i, h := range held {
		line, timedOut, err := h.firstLine(20 * time.Second)
		life := time.Since(h.dialed)
		lifetimes = append(lifetimes, life)
		var rep rpcReply
		if err != nil || timedOut || json.Unmarshal(line, &rep) != nil || rep.Error == nil || rep.Error.Code != -32000 || string(rep.ID) != "null" || !strings.Contains(rep.Error.Message, "within 5s") {
			t.Fatalf("idle connection %d: after %v got %q (timed out %v, err %v), want -32000 \"no auth.v1 request within 5s\"", i, life, line, timedOut, err)
		}
		if _, err := h.conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("idle connection %d still open after the auth timeout", i)
		}
		if life < 4*time.Second {
			t.Errorf("idle connection %d closed after %v, before the 5s auth timeout", i, life)
		}
	}
	close(stopTrickle)
	trickle.Wait()
	waitFor(t, "an authenticated client to be served after the slowloris connections were dropped", 10*time.Second, func() bool {
		return e.run("stats").code == 0
	})
	sort.Slice(lifetimes, func(a, b int) bool { return lifetimes[a] < lifetimes[b] })
	report(t, "max_connections = %d: of %d raw connections %d were held and %d got -32005 and were closed; `stq stats` was refused clearly while full and served once they closed; %d idle/trickling unauthenticated connections were dropped by the server after %v to %v, after which clients were served again",
		limit, flood, limit, flood-limit, len(held), lifetimes[0].Round(10*time.Millisecond), lifetimes[len(lifetimes)-1].Round(10*time.Millisecond))
}

// --- 8. A bounded soak -----------------------------------------------------

func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

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

func rpcCode(err error) int {
	var re *ipc.RPCError
	if errors.As(err, &re) {
		return re.Code
	}
	return 0
}

func TestReliabilitySoak(t *testing.T) {
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
