package e2e

import (
	"context"
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

	"github.com/jackc/pgx/v5"

	"stq/engine"
	"stq/ipc"
)

// TestClusterSIGKILLDuringStormLosesNothingOnPostgres is the reliability
// suite's SIGKILL storm (TestReliabilitySIGKILLDuringStormLosesNothing in
// reliability_test.go) on a PostgreSQL home: a daemon killed with SIGKILL
// at random moments while 8 clients enqueue, restarted each time, loses no
// acknowledged job, runs each command once unless an attempt was cut
// short, and leaves no job process behind. A compact copy of the original,
// with its helpers; where the original checks the SQLite file, this one
// checks that the schema's counters agree with its rows.
func TestClusterSIGKILLDuringStormLosesNothingOnPostgres(t *testing.T) {
	needProc(t)
	schema := pgSchema(t)
	e := pgEnv(t, schema)
	iterations := scaled(5, 50)
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("seed %d", seed)

	ran := filepath.Join(t.TempDir(), "ran")
	// Every execution appends "job-id pid" first; a slow job's first
	// attempt then sleeps until a crash or its 1s deadline stops it.
	quick := `echo "$STQ_JOB_ID $$" >> ` + ran
	slow := quick + `; if [ "$STQ_ATTEMPT" = 1 ]; then sleep 300; fi`
	reqOf := func(i int) (string, engine.EnqueueRequest) {
		r := engine.EnqueueRequest{MaxAttempts: intPtr(20), Backoff: durPtr(10 * time.Millisecond)}
		switch i % 8 {
		case 0:
			r.Command, r.Deadline = []string{"sh", "-c", slow}, durPtr(time.Second)
			return "slow", r
		case 1, 2, 3, 4:
			r.Command = []string{"sh", "-c", quick}
			return "quick", r
		}
		r.Type = "noop"
		return "noop", r
	}

	const clients = 8
	var (
		mu    sync.Mutex
		acked = map[string]string{} // id -> kind
		lost  atomic.Int64
		odd   errLog
	)
	var delays []time.Duration
	for range iterations {
		d := e.startDaemon("--workers", "4")
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for c := range clients {
			wg.Go(func() {
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
					kind, req := reqOf(i)
					if c%2 == 0 { // half the clients use the CLI
						args := []string{"enqueue", "--max-attempts", "20", "--backoff", "10ms"}
						if req.Type == "noop" {
							args = append(args, "--type", "noop")
						} else {
							if req.Deadline != nil {
								args = append(args, "--deadline", "1s")
							}
							args = append(append(args, "--"), req.Command...)
						}
						r := e.run(args...)
						switch {
						case r.code == 0:
							mu.Lock()
							acked[strings.TrimSpace(r.stdout)] = kind
							mu.Unlock()
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
					id, err := enqueueRPC(cl, req)
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
					mu.Lock()
					acked[id] = kind
					mu.Unlock()
				}
			})
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
	var all []string
	for _, j := range allJobs(t, c) {
		all = append(all, j.ID)
	}
	stored := waitAll(t, c, all, 3*time.Minute)
	for id, kind := range acked {
		if _, ok := stored[id]; !ok {
			t.Errorf("acknowledged %s job %s is missing", kind, id)
		}
	}
	execs := stormExecutions(t, ran)
	states := map[string]int{}
	crashed, reran := 0, 0
	for id, lj := range stored {
		states[lj.State]++
		j := getJob(t, c, id)
		n, cut := stormCheckJob(t, j, execs[id])
		crashed += cut
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
	orphans := stormOrphans(t, e, c)

	if code := d.stop(); code != 0 {
		t.Errorf("daemon exit code after SIGTERM: %d", code)
	}
	pgCountersAgree(t, schema)
	sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
	report(t, "PostgreSQL: %d SIGKILLs after %v to %v (median %v); %d acknowledged enqueues, %d jobs stored, %d requests unanswered (daemon killed); final states %v; %d attempts cut short; %d jobs ran more than once, each after a cut-short attempt; untracked orphan processes %d",
		iterations, delays[0].Round(time.Millisecond), delays[len(delays)-1].Round(time.Millisecond), delays[len(delays)/2].Round(time.Millisecond),
		len(acked), len(stored), lost.Load(), states, crashed, reran, len(orphans))
	if len(orphans) > 0 && !t.Failed() {
		knownIssue(t, knownIssueUntrackedProcess, "a job process started just before a SIGKILL, before its PID was stored, survives recovery (%d after %d kills: %v)",
			len(orphans), iterations, orphans)
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
// only after attempts cut short. It returns the executions and the
// attempts cut short.
func stormCheckJob(t *testing.T, j job, n int) (execs, cutShort int) {
	t.Helper()
	if j.State != "DONE" {
		t.Errorf("job %s ended %s: %q, attempts %+v", j.ID, j.State, j.Error, j.Attempts)
		return n, 0
	}
	outcomes := map[string]int{}
	for _, a := range j.Attempts {
		outcomes[a.Outcome]++
	}
	if outcomes["succeeded"] != 1 || outcomes["running"] != 0 {
		t.Errorf("job %s is DONE with attempts %+v: want exactly one succeeded and none running", j.ID, j.Attempts)
	}
	cut := outcomes["crashed"] + outcomes["interrupted"]
	if j.Type == "noop" {
		if n != 0 {
			t.Errorf("noop job %s ran a process %d times", j.ID, n)
		}
		return n, cut
	}
	if n < 1 {
		t.Errorf("job %s is DONE but its command never ran", j.ID)
	}
	if n > len(j.Attempts) {
		t.Errorf("job %s ran %d times with %d attempts recorded: %+v", j.ID, n, len(j.Attempts), j.Attempts)
	}
	allowed := cut
	if strings.Contains(strings.Join(j.Command, " "), "sleep 300") {
		allowed += outcomes["failed"] // the slow job's deadline
	}
	if n-1 > allowed {
		t.Errorf("job %s ran %d times but only %d attempts were cut short: %+v", j.ID, n, allowed, j.Attempts)
	}
	return n, cut
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
			untracked = append(untracked, fmt.Sprintf("pid %d of job %s", pid, p.id))
		}
		_ = syscallKillGroup(p.pgid)
	}
	return untracked
}

// pgCountersAgree checks, with the daemon stopped, that the per-queue
// state counters `stq stats` reads (counts plus the deltas not folded
// yet) equal a count of the jobs' rows, and that no attempt is left
// "running": what a crash between a change and its counter would break.
func pgCountersAgree(t *testing.T, schema string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pgTestURL(t))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer conn.Close(ctx)
	s := pgx.Identifier{schema}.Sanitize()
	counted := func(sql string) map[string]int64 {
		rows, err := conn.Query(ctx, sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		out := map[string]int64{}
		for rows.Next() {
			var q, st string
			var n int64
			if err := rows.Scan(&q, &st, &n); err != nil {
				t.Fatal(err)
			}
			if n != 0 {
				out[q+"/"+st] = n
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return out
	}
	rowsCount := counted(`SELECT queue, state, count(*) FROM ` + s + `.jobs GROUP BY queue, state`)
	counters := counted(`SELECT queue, state, sum(n)::bigint FROM (SELECT queue, state, n FROM ` + s + `.counts
		UNION ALL SELECT queue, state, n FROM ` + s + `.count_deltas) c GROUP BY queue, state`)
	if fmt.Sprint(rowsCount) != fmt.Sprint(counters) {
		t.Errorf("counters %v disagree with the rows %v", counters, rowsCount)
	}
	var open int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+s+`.attempts WHERE outcome = 'running'`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Errorf("%d attempts left running", open)
	}
}
