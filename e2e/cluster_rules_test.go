package e2e

// Two daemons on one PostgreSQL schema, each on a home of its own as if on
// a host of its own: the rules of docs/SCALING.md that need no leases, seen
// from outside. Each job records its run in files the daemons know nothing
// of, so the checks do not rest only on what the store says happened.
//
// Until the engine listens for the store's wake-ups, a daemon that has
// nothing to do sleeps through the other's enqueues: the tests enqueue
// through both and never time how soon a job starts.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"stq/engine"
	"stq/ipc"
)

// clusterPair starts two daemons with 4 workers each on two homes and one
// fresh schema, config appended to both homes' config.toml. Both start
// before any job exists: they run on the same host, and a daemon that
// starts recovers the RUNNING jobs of its host's other daemons as crashed
// (one daemon per host and schema, docs/SCALING.md).
func clusterPair(t *testing.T, config string) (a, b *testEnv) {
	t.Helper()
	schema := pgSchema(t)
	homes := [2]*testEnv{}
	for i := range homes {
		e := pgEnv(t, schema)
		f, err := os.OpenFile(e.path("config.toml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		_, err = f.WriteString(config)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		e.startDaemon("--workers", "4")
		homes[i] = e
	}
	return homes[0], homes[1]
}

// daemonOwner is the owner string of the daemon behind a client.
func daemonOwner(t *testing.T, c *ipc.Client) string {
	t.Helper()
	st, err := c.Stats(context.Background())
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	return st.Owner
}

// waitCounted polls the schema-wide counters (any daemon's stats count
// every daemon's jobs) until the queue holds n jobs in the given states.
// It does not use dev.wait.v1: a daemon hears of its own jobs' changes
// only, and these jobs run on either daemon.
func waitCounted(t *testing.T, c *ipc.Client, queue string, n int64, timeout time.Duration, states ...engine.State) {
	t.Helper()
	var got int64
	var counts map[engine.State]int64
	waitFor(t, fmt.Sprintf("%d jobs of queue %s in %v", n, queue, states), timeout, func() bool {
		st, err := c.Stats(context.Background())
		if err != nil {
			t.Fatalf("stats: %v", err)
		}
		counts, got = st.Queues[queue], 0
		for _, s := range states {
			got += counts[s]
		}
		return got >= n
	})
	if got != n {
		t.Fatalf("queue %s has %d jobs in %v, want %d (all counts %v)", queue, got, states, n, counts)
	}
}

// finished reads finished jobs with their attempt history, 1,000 per
// request: dev.wait.v1 on jobs that have all ended answers at once.
func finished(t *testing.T, c *ipc.Client, ids []string) []*engine.Job {
	t.Helper()
	out := make([]*engine.Job, 0, len(ids))
	zero := engine.Duration(time.Millisecond)
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		res, err := c.Wait(context.Background(), ipc.WaitParams{IDs: ids[:n], Timeout: &zero})
		if err != nil {
			t.Fatalf("read %d jobs: %v", n, err)
		}
		if res.TimedOut {
			for _, j := range res.Jobs {
				if !j.State.Terminal() {
					t.Fatalf("job %s is %s, want it finished", j.ID, j.State)
				}
			}
		}
		out = append(out, res.Jobs...)
		ids = ids[n:]
	}
	return out
}

// claimSlack is maxOverlap's slack for attempts recorded by the daemons.
const claimSlack = 20 * time.Millisecond

// interval is one attempt's run, as the store recorded it.
type interval struct {
	job        string
	start, end time.Time
}

// maxOverlap is the largest number of intervals that hold one instant,
// each interval's start taken slack later (never past its end). An
// interval ends before another starting at the same nanosecond.
//
// The slack is there because an attempt's recorded start is the clock
// reading of the daemon's claim round, taken before the claim's
// transaction counts what runs (and, on PostgreSQL, before the same
// transaction stores the round's completions): a claim that saw another
// daemon's job end can record a start a little before that job's end.
func maxOverlap(ivs []interval, slack time.Duration) (most int, at time.Time) {
	type edge struct {
		t     time.Time
		delta int
	}
	edges := make([]edge, 0, 2*len(ivs))
	for _, iv := range ivs {
		start := iv.start.Add(slack)
		if start.After(iv.end) {
			start = iv.end
		}
		edges = append(edges, edge{start, 1}, edge{iv.end, -1})
	}
	sort.Slice(edges, func(i, j int) bool {
		if !edges[i].t.Equal(edges[j].t) {
			return edges[i].t.Before(edges[j].t)
		}
		return edges[i].delta < edges[j].delta
	})
	n := 0
	for _, e := range edges {
		n += e.delta
		if n > most {
			most, at = n, e.t
		}
	}
	return most, at
}

// attemptIntervals are the finished attempts of jobs as intervals; an
// attempt without an end fails the test.
func attemptIntervals(t *testing.T, jobs []*engine.Job) []interval {
	t.Helper()
	var ivs []interval
	for _, j := range jobs {
		for _, a := range j.Attempts {
			if a.FinishedAt == nil {
				t.Fatalf("job %s is %s with an unfinished attempt %+v", j.ID, j.State, a)
			}
			ivs = append(ivs, interval{j.ID, a.StartedAt, *a.FinishedAt})
		}
	}
	return ivs
}

// readLines is the lines of a file the jobs appended to; none when the
// file is not there.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestClusterMaxOverlap(t *testing.T) {
	at := func(ms int) time.Time { return time.Unix(0, int64(ms)*int64(time.Millisecond)) }
	for _, tc := range []struct {
		name  string
		ivs   [][2]int
		slack int
		want  int
	}{
		{"none", nil, 0, 0},
		{"one", [][2]int{{0, 10}}, 0, 1},
		{"end meets start", [][2]int{{0, 10}, {10, 20}, {20, 30}}, 0, 1},
		{"two of three", [][2]int{{0, 10}, {5, 15}, {12, 20}}, 0, 2},
		{"nested three", [][2]int{{0, 100}, {10, 20}, {15, 16}}, 0, 3},
		{"start within the slack of an end", [][2]int{{0, 10}, {8, 20}}, 5, 1},
		{"start before the slack of an end", [][2]int{{0, 10}, {2, 20}}, 5, 2},
		{"shorter than the slack: not counted", [][2]int{{0, 100}, {10, 12}}, 5, 1},
	} {
		var ivs []interval
		for _, iv := range tc.ivs {
			ivs = append(ivs, interval{"j", at(iv[0]), at(iv[1])})
		}
		if got, _ := maxOverlap(ivs, time.Duration(tc.slack)*time.Millisecond); got != tc.want {
			t.Errorf("%s: max overlap %d, want %d", tc.name, got, tc.want)
		}
	}
}

// 10,000 jobs enqueued through both daemons, 4 workers each: every job
// runs exactly once. Most are in-process noop jobs (the store's attempt
// history is their record); every tenth is a command that appends its id
// to a file, which counts real executions.
func TestClusterEveryJobRunsExactlyOnce(t *testing.T) {
	const total, chunk = 10000, 500
	a, b := clusterPair(t, "")
	ran := filepath.Join(t.TempDir(), "ran")
	clients := [2]*ipc.Client{a.mustDial(), b.mustDial()}
	owners := map[string]bool{daemonOwner(t, clients[0]): true, daemonOwner(t, clients[1]): true}
	if len(owners) != 2 {
		t.Fatalf("the two daemons have one owner name: %v", owners)
	}

	// Each daemon gets every other chunk; both enqueue at once, so both
	// dispatchers are awake while the other's jobs arrive.
	ids := make([][]string, total/chunk)
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for d, cl := range clients {
		wg.Go(func() {
			for c := d; c < len(ids); c += 2 {
				reqs := make([]engine.EnqueueRequest, chunk)
				for i := range reqs {
					reqs[i] = engine.EnqueueRequest{Type: "noop", MaxAttempts: intPtr(1)}
					if (c*chunk+i)%10 == 0 {
						reqs[i] = engine.EnqueueRequest{Command: []string{"sh", "-c", `echo "$STQ_JOB_ID" >> ` + ran}, Cwd: "/", MaxAttempts: intPtr(1)}
					}
				}
				res, err := cl.EnqueueMany(context.Background(), reqs)
				if err != nil {
					errs <- fmt.Errorf("daemon %d, chunk %d: %w", d, c, err)
					return
				}
				for _, r := range res {
					ids[c] = append(ids[c], r.Job.ID)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	all := slices.Concat(ids...)
	waitCounted(t, clients[0], engine.DefaultQueue, total, 5*time.Minute,
		engine.StateDone, engine.StateFailed, engine.StateCancelled, engine.StateSuperseded, engine.StateExpired)

	execs := map[string]int{}
	for _, id := range readLines(t, ran) {
		execs[id]++
	}
	byOwner := map[string]int{}
	commands := 0
	for _, j := range finished(t, clients[1], all) {
		if j.State != engine.StateDone || len(j.Attempts) != 1 || j.Attempts[0].Outcome != engine.OutcomeSucceeded {
			t.Errorf("job %s: %s with attempts %+v, want DONE after one succeeded attempt", j.ID, j.State, j.Attempts)
		}
		if !owners[j.Owner] {
			t.Errorf("job %s: owner %q is neither daemon (%v)", j.ID, j.Owner, owners)
		}
		byOwner[j.Owner]++
		if len(j.Command) > 0 {
			commands++
			if execs[j.ID] != 1 {
				t.Errorf("job %s: its command ran %d times", j.ID, execs[j.ID])
			}
		}
	}
	if commands != total/10 || len(execs) != commands {
		t.Errorf("%d command jobs, %d distinct ids in the executions file; want %d of each", commands, len(execs), total/10)
	}
	if len(byOwner) != 2 {
		t.Errorf("jobs per daemon %v: both daemons should have run some", byOwner)
	}
	t.Logf("jobs per daemon: %v", byOwner)
}

// A storm of generations on 100 subjects through both daemons: at most one
// run per subject at a time, and each subject's newest generation runs
// last and ends DONE. Each run holds a lock directory of its subject while
// it runs (mkdir fails if another run of the subject holds it) and appends
// "subject generation" to a file when it starts.
func TestClusterGenerationStormOneRunPerSubject(t *testing.T) {
	const subjects, perDaemon = 100, 500
	a, b := clusterPair(t, "")
	dir := t.TempDir()
	run := `s=$(echo "$STQ_SUBJECT" | tr / _)
if ! mkdir "$D/$s.lock" 2>/dev/null; then echo "$STQ_SUBJECT $STQ_GENERATION" >> "$D/overlaps"; exit 0; fi
echo "$STQ_SUBJECT $STQ_GENERATION" >> "$D/runs"
sleep 0.05
rmdir "$D/$s.lock"`
	clients := [2]*ipc.Client{a.mustDial(), b.mustDial()}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)

	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for g := range 4 { // two enqueuers per daemon
		cl := clients[g%2]
		rng := rand.New(rand.NewPCG(seed, uint64(g)))
		wg.Go(func() {
			for range perDaemon / 2 {
				res, err := cl.Enqueue(context.Background(), engine.EnqueueRequest{
					Subject: fmt.Sprintf("src/f%03d", rng.IntN(subjects)),
					Command: []string{"sh", "-c", run}, Cwd: "/", Env: map[string]string{"D": dir},
					MaxAttempts: intPtr(1),
				})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids = append(ids, res.Job.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("enqueue: %v", err)
	}
	waitCounted(t, clients[0], engine.DefaultQueue, int64(len(ids)), 5*time.Minute,
		engine.StateDone, engine.StateFailed, engine.StateCancelled, engine.StateSuperseded, engine.StateExpired)

	if o := readLines(t, filepath.Join(dir, "overlaps")); len(o) > 0 {
		t.Errorf("%d runs found their subject already running: %v", len(o), o[:min(len(o), 10)])
	}
	// The newest generation of each subject, by the store and by the runs.
	jobs := finished(t, clients[0], ids)
	newest := map[string]*engine.Job{}
	gens := map[string][]int64{}
	bySubject := map[string][]*engine.Job{}
	ranBy := map[string]int{}
	for _, j := range jobs {
		gens[j.Subject] = append(gens[j.Subject], j.Generation)
		bySubject[j.Subject] = append(bySubject[j.Subject], j)
		if n := newest[j.Subject]; n == nil || j.Generation > n.Generation {
			newest[j.Subject] = j
		}
		switch {
		case j.State == engine.StateDone && len(j.Attempts) == 1:
			ranBy[j.Owner]++
		case j.State == engine.StateSuperseded && len(j.Attempts) == 0:
		default:
			t.Errorf("job %s (%s gen %d) ended %s with attempts %+v: want DONE after one run, or SUPERSEDED before any", j.ID, j.Subject, j.Generation, j.State, j.Attempts)
		}
	}
	for subj, g := range gens {
		slices.Sort(g)
		for i, v := range g {
			if v != int64(i+1) {
				t.Errorf("subject %s: generations %v, want 1..%d each once", subj, g, len(g))
				break
			}
		}
		if n := newest[subj]; n.State != engine.StateDone {
			t.Errorf("subject %s: newest generation %d ended %s", subj, n.Generation, n.State)
		}
		if most, at := maxOverlap(attemptIntervals(t, bySubject[subj]), claimSlack); most > 1 {
			t.Errorf("subject %s: %d attempts overlap at %s", subj, most, at.Format(time.RFC3339Nano))
		}
	}
	last := map[string]int64{}
	for _, line := range readLines(t, filepath.Join(dir, "runs")) {
		subj, gen, ok := strings.Cut(line, " ")
		g, err := strconv.ParseInt(gen, 10, 64)
		if !ok || err != nil {
			t.Fatalf("bad line in the runs file: %q", line)
		}
		if g < last[subj] {
			t.Errorf("subject %s: generation %d ran after generation %d", subj, g, last[subj])
		}
		last[subj] = g
	}
	for subj, n := range newest {
		if last[subj] != n.Generation {
			t.Errorf("subject %s: the last run was generation %d, the newest is %d", subj, last[subj], n.Generation)
		}
	}
	if len(ranBy) != 2 {
		t.Errorf("runs per daemon %v: both daemons should have run some", ranBy)
	}
	t.Logf("%d enqueues over %d subjects; runs per daemon %v", len(ids), len(newest), ranBy)
}

// A queue capped at 2 in both daemons' config never has 3 RUNNING across
// them. Three witnesses: each run marks itself in a directory and records
// how many marks it saw after adding its own; a sampler lists the queue's
// RUNNING jobs through both daemons while they work; and the attempt
// history's intervals never put 3 at one instant.
func TestClusterQueueCapHoldsAcrossDaemons(t *testing.T) {
	const jobs = 60
	a, b := clusterPair(t, "[queues.q]\nconcurrency = 2\n")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "running"), 0o755); err != nil {
		t.Fatal(err)
	}
	run := `touch "$D/running/$STQ_JOB_ID"
ls "$D/running" | wc -l >> "$D/seen"
sleep 0.05
rm "$D/running/$STQ_JOB_ID"`
	clients := [2]*ipc.Client{a.mustDial(), b.mustDial()}
	samplers := [2]*ipc.Client{a.mustDial(), b.mustDial()}

	// Daemons wake each other (LISTEN/NOTIFY) and each is woken first by
	// its own enqueues, so with both clients enqueueing, both daemons
	// claim from q while the other's jobs hold places under the cap.
	var ids []string
	// The sampler starts now: a request to a daemon can wake its
	// dispatcher, and the long jobs' placement above relies on the other
	// daemon sleeping.
	stop := make(chan struct{})
	var sampled sync.WaitGroup
	var mostListed, samples int
	sampled.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			res, err := samplers[i%2].List(context.Background(), ipc.ListParams{States: []string{"RUNNING"}, Queue: "q", Limit: 100})
			if err != nil {
				t.Errorf("list RUNNING: %v", err)
				return
			}
			mostListed = max(mostListed, len(res.Jobs))
			samples++
			time.Sleep(2 * time.Millisecond)
		}
	})

	var mu sync.Mutex
	var wg sync.WaitGroup
	for d, cl := range clients {
		wg.Go(func() {
			for range jobs / 2 {
				res, err := cl.Enqueue(context.Background(), engine.EnqueueRequest{Queue: "q",
					Command: []string{"sh", "-c", run}, Cwd: "/", Env: map[string]string{"D": dir}, MaxAttempts: intPtr(1)})
				if err != nil {
					t.Errorf("enqueue through daemon %d: %v", d, err)
					return
				}
				mu.Lock()
				ids = append(ids, res.Job.ID)
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		close(stop)
		sampled.Wait()
		t.FailNow()
	}
	waitCounted(t, clients[0], "q", jobs, 3*time.Minute, engine.StateDone, engine.StateFailed)
	close(stop)
	sampled.Wait()

	mostSeen := 0
	for _, line := range readLines(t, filepath.Join(dir, "seen")) {
		n, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("bad line in the seen file: %q", line)
		}
		mostSeen = max(mostSeen, n)
	}
	done := finished(t, clients[0], ids)
	ranBy := map[string]int{}
	for _, j := range done {
		if j.State != engine.StateDone {
			t.Errorf("job %s ended %s: %q", j.ID, j.State, j.Error)
		}
		ranBy[j.Owner]++
	}
	mostHistory, at := maxOverlap(attemptIntervals(t, done), claimSlack)
	t.Logf("most at once: %d seen by the jobs, %d listed in %d samples, %d in the attempt history; runs per daemon %v",
		mostSeen, mostListed, samples, mostHistory, ranBy)
	if mostSeen > 2 || mostListed > 2 || mostHistory > 2 {
		t.Errorf("queue q capped at 2 ran more at once: %d seen by the jobs, %d listed, %d in the attempt history (at %s)",
			mostSeen, mostListed, mostHistory, at.Format(time.RFC3339Nano))
	}
	// The cap must have been reached for the check to mean anything. Both
	// daemons need not have run jobs: a daemon ends a job and claims the
	// next in one transaction, so the one holding the places may keep
	// them all. The other is still tested: every enqueue, through either
	// daemon, wakes it to claim against the full queue, and a daemon that
	// counted only its own RUNNING jobs would start a third.
	if mostSeen < 2 {
		t.Errorf("never more than %d job of q at once: the cap was not exercised", mostSeen)
	}
}
