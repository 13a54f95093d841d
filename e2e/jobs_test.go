package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestVersionIsInjectedAtLinkTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if out := e.ok("--version"); !strings.Contains(out, "v0.0.0-e2e") {
		t.Fatalf("--version printed %q", out)
	}
}

func TestAJobRunsWithItsEnvironmentPayloadAndOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "2")
	work := t.TempDir()
	script := `echo "id=$STQ_JOB_ID q=$STQ_QUEUE t=$STQ_TYPE s=$STQ_SUBJECT g=$STQ_GENERATION a=$STQ_ATTEMPT x=$EXTRA"; pwd; cat; echo; echo oops >&2`
	c := e.cmd("enqueue", "--queue", "build", "--subject", "src/main.rs", "--gen", "3", "--env", "EXTRA=42",
		"--payload", `{"path":"src/main.rs"}`, "--", "sh", "-c", script)
	c.Dir = work
	out, err := c.Output()
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	id := strings.TrimSpace(string(out))
	if strings.ContainsAny(id, " \n") || len(id) == 0 {
		t.Fatalf("enqueue printed %q, want just an id", out)
	}
	if r := e.run("wait", id); r.code != 0 {
		t.Fatalf("wait: exit %d: %s %s", r.code, r.stdout, r.stderr)
	}
	j := e.show(id)
	if j.State != "DONE" || j.Attempt != 1 || j.Queue != "build" || j.Type != "exec" || j.Subject != "src/main.rs" || j.Generation != 3 {
		t.Fatalf("job = %+v", j)
	}
	if j.ExitCode == nil || *j.ExitCode != 0 || j.StartedAt == nil || j.FinishedAt == nil || j.Cwd != work {
		t.Fatalf("job timing/exit/cwd wrong: %+v", j)
	}
	if len(j.Attempts) != 1 || j.Attempts[0].Outcome != "succeeded" || j.Attempts[0].PID <= 0 || j.Attempts[0].PIDStart <= 0 {
		t.Fatalf("attempts = %+v", j.Attempts)
	}
	logs := e.ok("tail", id)
	for _, want := range []string{
		fmt.Sprintf("id=%s q=build t=exec s=src/main.rs g=3 a=1 x=42", id),
		work,
		`{"path":"src/main.rs"}`,
		"[stderr] oops",
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}
	// Every documented field is present in show --json.
	var raw map[string]any
	if err := json.Unmarshal([]byte(e.ok("show", "--json", id)), &raw); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"id", "queue", "type", "subject", "generation", "priority", "state", "attempt", "max_attempts",
		"payload", "command", "cwd", "env", "run_at", "deadline", "ttl", "backoff", "created_at", "started_at", "finished_at", "exit_code", "attempts"} {
		if _, ok := raw[f]; !ok {
			t.Errorf("show --json lacks field %q", f)
		}
	}
}

// stq enqueue --json prints the daemon's whole reply, indented; without
// --json only the id.
func TestEnqueueJSONIsTheDaemonsReply(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "1")
	first := e.ok("enqueue", "--subject", "src/a.rs", "--in", "1h", "--", "true")
	out := e.ok("enqueue", "--json", "--subject", "src/a.rs", "--in", "1h", "--", "true")
	var res struct {
		Job        job      `json:"job"`
		Superseded []string `json:"superseded"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("enqueue --json printed %q: %v", out, err)
	}
	if res.Job.ID == "" || res.Job.State != "QUEUED" || res.Job.Generation != 2 || len(res.Superseded) != 1 || res.Superseded[0] != first {
		t.Fatalf("reply %+v, want generation 2 superseding %s", res, first)
	}
	if !strings.HasPrefix(out, "{\n  \"job\": {") {
		t.Fatalf("reply is not indented: %q", out)
	}
}

func TestFailingJobRetriesWithBackoffThenFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--max-attempts", "3", "--backoff", "100ms", "--", "sh", "-c", "exit 7")
	r := e.run("wait", id)
	if r.code != 1 || !strings.Contains(r.stdout, "FAILED") {
		t.Fatalf("wait on a failing job: exit %d, %q", r.code, r.stdout)
	}
	j := e.show(id)
	if j.State != "FAILED" || j.Attempt != 3 || len(j.Attempts) != 3 || j.Error != "exit status 7" {
		t.Fatalf("job = %+v", j)
	}
	for _, a := range j.Attempts {
		if a.Outcome != "failed" || a.ExitCode == nil || *a.ExitCode != 7 {
			t.Fatalf("attempt = %+v", a)
		}
	}

	perm := e.ok("enqueue", "--max-attempts", "5", "--", "sh", "-c", "exit 100")
	e.run("wait", perm)
	if j := e.show(perm); j.State != "FAILED" || j.Attempt != 1 {
		t.Fatalf("exit 100 must fail at once: %+v", j)
	}
}

func TestInProcessNoopAndConfiguredHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	marker := filepath.Join(t.TempDir(), "indexed")
	cfg := fmt.Sprintf("[handlers.INDEX_FILE]\ncommand = [\"sh\", \"-c\", \"cat >> %s\"]\nmax_attempts = 5\ndeadline = \"20s\"\n", marker)
	if err := os.WriteFile(e.path("config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startDaemon()
	noop := e.ok("enqueue", "--type", "noop")
	idx := e.ok("enqueue", "--queue", "indexing", "--type", "INDEX_FILE", "--subject", "src/main.rs", "--payload", `{"path":"src/main.rs"}`)
	e.ok("wait", noop, idx)
	j := e.show(idx)
	if j.MaxAttempts != 5 || j.Deadline != "20s" {
		t.Fatalf("type defaults not applied: %+v", j)
	}
	if b, _ := os.ReadFile(marker); string(b) != `{"path":"src/main.rs"}` {
		t.Fatalf("handler got payload %q", b)
	}
	r := e.run("enqueue", "--type", "NO_SUCH_TYPE")
	if r.code != 1 || !strings.Contains(r.stderr, `job type "NO_SUCH_TYPE" has no handler`) {
		t.Fatalf("unknown type: exit %d, %q", r.code, r.stderr)
	}
}

// blockers fills every worker with a job that waits for a file, so the
// test controls when queued jobs may start.
func (e *testEnv) blockers(n int) (release func()) {
	e.t.Helper()
	gate := filepath.Join(e.home, "..", "gate")
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, e.ok("enqueue", "--queue", "blockers", "--", "sh", "-c", "while [ ! -f "+gate+" ]; do sleep 0.02; done"))
	}
	for _, id := range ids {
		e.waitState(id, "RUNNING")
	}
	return func() {
		if err := os.WriteFile(gate, nil, 0o600); err != nil {
			e.t.Fatal(err)
		}
		e.ok(append([]string{"wait"}, ids...)...)
	}
}

func TestSupersedeStormRunsOnlyTheNewestGeneration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "4")
	release := e.blockers(4)

	runs := filepath.Join(t.TempDir(), "runs")
	const clients, perClient, subjects = 16, 5, 4
	var wg sync.WaitGroup
	errs := make(chan string, clients*perClient)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < perClient; i++ {
				subj := fmt.Sprintf("file-%d", (c+i)%subjects)
				r := e.run("enqueue", "--queue", "index", "--subject", subj, "--", "sh", "-c", "echo $STQ_SUBJECT $STQ_GENERATION >> "+runs)
				if r.code != 0 {
					errs <- r.stderr
				}
			}
		}(c)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("enqueue failed: %s", e)
	}
	release()

	all := e.list("--queue", "index")
	if len(all) != clients*perClient {
		t.Fatalf("stored %d jobs, want %d", len(all), clients*perClient)
	}
	var ids []string
	for _, j := range all {
		ids = append(ids, j.ID)
	}
	e.run(append([]string{"wait"}, ids...)...)
	all = e.list("--queue", "index")
	gens := map[string][]int64{}
	done := map[string][]int64{}
	for _, j := range all {
		gens[j.Subject] = append(gens[j.Subject], j.Generation)
		switch j.State {
		case "DONE":
			done[j.Subject] = append(done[j.Subject], j.Generation)
		case "SUPERSEDED":
		default:
			t.Errorf("job %s of %s gen %d ended %s", j.ID, j.Subject, j.Generation, j.State)
		}
	}
	for subj, gs := range gens {
		sort.Slice(gs, func(a, b int) bool { return gs[a] < gs[b] })
		for i, g := range gs {
			if g != int64(i+1) {
				t.Fatalf("%s generations %v are not 1..%d", subj, gs, len(gs))
			}
		}
		if len(done[subj]) != 1 || done[subj][0] != gs[len(gs)-1] {
			t.Errorf("%s: ran generations %v, want only the newest %d", subj, done[subj], gs[len(gs)-1])
		}
	}
	b, _ := os.ReadFile(runs)
	if lines := strings.Split(strings.TrimSpace(string(b)), "\n"); len(lines) != subjects {
		t.Errorf("%d executions, want %d:\n%s", len(lines), subjects, b)
	}
}

func TestOneKeyNeverRunsTwoJobsAtOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "4")
	trace := filepath.Join(t.TempDir(), "trace")
	script := "echo start $STQ_SUBJECT $STQ_GENERATION >> " + trace + "; sleep 0.1; echo end $STQ_SUBJECT $STQ_GENERATION >> " + trace
	var wg sync.WaitGroup
	var mu sync.Mutex
	var ids []string
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 4; i++ {
				id := e.ok("enqueue", "--subject", fmt.Sprintf("k%d", (c+i)%2), "--", "sh", "-c", script)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
				time.Sleep(30 * time.Millisecond) // spread arrivals so some run while newer ones come
			}
		}(c)
	}
	wg.Wait()
	e.run(append([]string{"wait"}, ids...)...)
	b, err := os.ReadFile(trace)
	if err != nil {
		t.Fatal(err)
	}
	running := map[string]string{}
	ran := 0
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			t.Fatalf("bad trace line %q", line)
		}
		switch f[0] {
		case "start":
			if g, busy := running[f[1]]; busy {
				t.Fatalf("%s generation %s started while generation %s was running", f[1], f[2], g)
			}
			running[f[1]] = f[2]
			ran++
		case "end":
			delete(running, f[1])
		}
	}
	if ran < 2 || ran > len(ids) {
		t.Fatalf("%d runs for %d jobs", ran, len(ids))
	}
}

func TestExplicitOlderGenerationIsSupersededOnArrival(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "1")
	release := e.blockers(1)
	newer := e.ok("enqueue", "--subject", "s", "--gen", "5", "--", "true")
	r := e.run("enqueue", "--subject", "s", "--gen", "5", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, "superseded on arrival") {
		t.Fatalf("equal generation: exit %d, stderr %q", r.code, r.stderr)
	}
	stale := strings.TrimSpace(r.stdout)
	if j := e.show(stale); j.State != "SUPERSEDED" {
		t.Fatalf("stale generation stored as %s", j.State)
	}
	auto := e.ok("enqueue", "--subject", "s", "--", "true")
	if j := e.show(auto); j.Generation != 6 {
		t.Fatalf("auto generation = %d, want 6", j.Generation)
	}
	if j := e.show(newer); j.State != "SUPERSEDED" {
		t.Fatalf("generation 5 is %s after generation 6 arrived", j.State)
	}
	other := e.ok("enqueue", "--subject", "s", "--type", "noop")
	if j := e.show(other); j.Generation != 1 {
		t.Fatalf("another type is another key: generation %d", j.Generation)
	}
	release()
	e.ok("wait", auto, other)
}

func TestPriorityOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "1")
	release := e.blockers(1)
	order := filepath.Join(t.TempDir(), "order")
	var ids []string
	for _, p := range []string{"0", "5", "-1", "5", "10"} {
		ids = append(ids, e.ok("enqueue", "--priority", p, "--", "sh", "-c", "echo "+p+" $STQ_JOB_ID >> "+order))
	}
	release()
	e.ok(append([]string{"wait"}, ids...)...)
	b, _ := os.ReadFile(order)
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		got = append(got, l)
	}
	want := []string{"10 " + ids[4], "5 " + ids[1], "5 " + ids[3], "0 " + ids[0], "-1 " + ids[2]}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("run order\n got %v\nwant %v", got, want)
	}
}

func TestScheduledJobWaitsForItsTime(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--in", "2s", "--", "true")
	if j := e.show(id); j.State != "QUEUED" {
		t.Fatalf("scheduled job is %s right away", j.State)
	}
	e.ok("wait", id)
	j := e.show(id)
	if j.StartedAt.Before(j.CreatedAt.Add(2 * time.Second)) {
		t.Fatalf("started %v after enqueue, before its time", j.StartedAt.Sub(j.CreatedAt))
	}
	at := time.Now().Add(500 * time.Millisecond).UTC().Format(time.RFC3339Nano)
	id2 := e.ok("enqueue", "--at", at, "--", "true")
	e.ok("wait", id2)
}

func TestDeadlineKillsTheWholeProcessGroup(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	pidFile := filepath.Join(t.TempDir(), "grandchild")
	id := e.ok("enqueue", "--deadline", "1s", "--max-attempts", "1", "--", "sh", "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
	gc := readPID(t, pidFile)
	r := e.run("wait", id)
	if r.code != 1 {
		t.Fatalf("wait: exit %d", r.code)
	}
	j := e.show(id)
	if j.State != "FAILED" || !strings.Contains(j.Error, "deadline of 1s exceeded") {
		t.Fatalf("job = %s %q", j.State, j.Error)
	}
	waitFor(t, "grandchild to die", 10*time.Second, func() bool { return !processAlive(gc) })
}

func TestGrandchildHoldingStdoutDoesNotHangTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	pidFile := filepath.Join(t.TempDir(), "gc")
	id := e.ok("enqueue", "--", "sh", "-c", "sleep 300 & echo $! > "+pidFile+"; echo bye")
	gc := readPID(t, pidFile)
	e.ok("wait", "--timeout", "20s", id)
	waitFor(t, "leftover grandchild to be killed", 10*time.Second, func() bool { return !processAlive(gc) })
}

func TestTTLExpiresAJobThatCouldNotStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "1")
	release := e.blockers(1)
	marker := filepath.Join(t.TempDir(), "ran")
	id := e.ok("enqueue", "--ttl", "300ms", "--", "touch", marker)
	j := e.waitState(id, "EXPIRED") // expires while the only worker is busy
	release()
	if !strings.Contains(j.Error, "ttl") || j.Attempt != 0 {
		t.Fatalf("expired job = %+v", j)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("an expired job ran")
	}
	if r := e.run("wait", id); r.code != 1 {
		t.Fatalf("wait on an expired job: exit %d", r.code)
	}
}

func TestCancelQueuedRunningAndFinished(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "1")
	pidFile := filepath.Join(t.TempDir(), "pid")
	running := e.ok("enqueue", "--", "sh", "-c", "sleep 300 & echo $! > "+pidFile+"; wait")
	gc := readPID(t, pidFile)
	queued := e.ok("enqueue", "--subject", "x", "--", "true")
	queued2 := e.ok("enqueue", "--subject", "y", "--", "true")

	if out := e.ok("cancel", "--subject", "x"); out != queued {
		t.Fatalf("cancel by subject printed %q, want %s", out, queued)
	}
	if out := e.ok("cancel", running); out != running {
		t.Fatalf("cancel printed %q", out)
	}
	if j := e.show(running); j.State != "CANCELLED" || j.Attempts[0].Outcome != "cancelled" {
		t.Fatalf("running job after cancel: %+v", j)
	}
	waitFor(t, "cancelled job's process group to die", 10*time.Second, func() bool { return !processAlive(gc) })

	e.ok("wait", queued2)
	for _, id := range []string{queued, queued2, running} {
		before := e.show(id)
		r := e.run("cancel", id)
		if r.code != 1 || !strings.Contains(r.stderr, "already finished") {
			t.Fatalf("cancel of finished job %s: exit %d, %q", id, r.code, r.stderr)
		}
		if after := e.show(id); after.State != before.State {
			t.Fatalf("cancel of a finished job changed it from %s to %s", before.State, after.State)
		}
	}
}

func TestSIGKILLedDaemonLosesNoAckedJobAndRecoversRunningOnes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon("--workers", "2")
	dir := t.TempDir()
	// Two running jobs, each with a grandchild, in their own process groups.
	retry := e.ok("enqueue", "--max-attempts", "2", "--backoff", "100ms", "--", "sh", "-c",
		"if [ \"$STQ_ATTEMPT\" = 1 ]; then sleep 300 & echo $! > "+dir+"/a; wait; fi; echo second attempt")
	last := e.ok("enqueue", "--max-attempts", "1", "--", "sh", "-c", "sleep 300 & echo $! > "+dir+"/b; wait")
	gcA, gcB := readPID(t, dir+"/a"), readPID(t, dir+"/b")
	leaders := map[string]int{}
	for _, id := range []string{retry, last} {
		j := e.waitState(id, "RUNNING")
		waitFor(t, "pid recorded", 10*time.Second, func() bool {
			j = e.show(id)
			return j.Attempts[0].PID > 0
		})
		leaders[id] = j.Attempts[0].PID
	}
	// Acknowledged enqueues that must survive.
	var acked []string
	for i := 0; i < 50; i++ {
		acked = append(acked, e.ok("enqueue", "--in", "1h", "--", "true"))
	}
	d.kill()
	if !processAlive(gcA) || !processAlive(leaders[last]) {
		t.Fatal("job processes died with the daemon; the recovery test needs them alive")
	}

	e.startDaemon("--workers", "2")
	for _, pid := range []int{gcA, gcB, leaders[retry], leaders[last]} {
		waitFor(t, fmt.Sprintf("leftover process %d to be killed", pid), 10*time.Second, func() bool { return !processAlive(pid) })
	}
	e.ok("wait", retry)
	j := e.show(retry)
	if j.Attempt != 2 || j.Attempts[0].Outcome != "crashed" || j.Attempts[0].Reason != "daemon crashed" || j.Attempts[1].Outcome != "succeeded" {
		t.Fatalf("retried job: %+v", j)
	}
	r := e.run("wait", last)
	if j := e.show(last); r.code != 1 || j.State != "FAILED" || j.Error != "daemon crashed" {
		t.Fatalf("job without attempts left: %s %q", j.State, j.Error)
	}
	for _, id := range acked {
		if j := e.show(id); j.State != "QUEUED" {
			t.Fatalf("acknowledged job %s is %s", id, j.State)
		}
	}
	var rep struct {
		Scanned   int `json:"scanned"`
		Recovered []struct {
			ID string `json:"id"`
		} `json:"recovered"`
	}
	if err := json.Unmarshal([]byte(e.ok("recover", "--json")), &rep); err != nil || len(rep.Recovered) != 0 {
		t.Fatalf("recover on a healthy daemon: %+v %v", rep, err)
	}
}

func TestSIGTERMRequeuesRunningJobsWithoutUsingAnAttempt(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon("--grace", "300ms")
	dir := t.TempDir()
	id := e.ok("enqueue", "--max-attempts", "1", "--", "sh", "-c",
		"if [ ! -f "+dir+"/once ]; then touch "+dir+"/once; echo $$ > "+dir+"/pid; sleep 300; fi")
	pid := readPID(t, dir+"/pid")
	if code := d.stop(); code != 0 {
		t.Fatalf("daemon exit code after SIGTERM: %d", code)
	}
	if processAlive(pid) {
		t.Fatal("job process survived the daemon's shutdown")
	}
	e.startDaemon()
	e.ok("wait", id)
	j := e.show(id)
	if j.State != "DONE" || j.Attempt != 1 || len(j.Attempts) != 2 || j.Attempts[0].Outcome != "interrupted" {
		t.Fatalf("job after shutdown and restart: %+v", j)
	}
}

func TestSecondDaemonOnOneHomeIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()
	r := e.run("daemon")
	if r.code == 0 || !strings.Contains(r.stderr, "already running") || !strings.Contains(r.stderr, strconv.Itoa(d.cmd.Process.Pid)) {
		t.Fatalf("second daemon: exit %d, %q", r.code, r.stderr)
	}
	e.ok("stats") // the first one still serves
}

func TestStaleSocketIsReplacedAndASymlinkIsNot(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()
	d.kill() // leaves stq.sock behind
	if _, err := os.Lstat(e.path("stq.sock")); err != nil {
		t.Fatalf("expected a stale socket: %v", err)
	}
	d = e.startDaemon()
	d.kill()

	target := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(e.path("stq.sock"))
	if err := os.Symlink(target, e.path("stq.sock")); err != nil {
		t.Fatal(err)
	}
	r := e.run("daemon")
	if r.code == 0 || !strings.Contains(r.stderr, "symbolic link") {
		t.Fatalf("daemon with a symlink at the socket path: exit %d, %q", r.code, r.stderr)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "keep" {
		t.Fatal("the symlink's target was touched")
	}
}

func TestFileModes(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	for name, want := range map[string]os.FileMode{"": 0o700, "stq.sock": 0o600, "token": 0o600, "stq.db": 0o600} {
		fi, err := os.Stat(e.path(name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s has mode %o, want %o", e.path(name), got, want)
		}
	}
}

func TestNoDaemonExitsThree(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, args := range [][]string{{"stats"}, {"enqueue", "--", "true"}, {"list"}} {
		r := e.run(args...)
		if r.code != 3 || !strings.Contains(r.stderr, "no daemon at") || !strings.Contains(r.stderr, "stq daemon") {
			t.Fatalf("stq %v without daemon: exit %d, %q", args, r.code, r.stderr)
		}
	}
}

func TestStatsAndListOutput(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--queue", "q1", "--type", "noop")
	e.ok("wait", id)
	var st struct {
		Queues  map[string]map[string]int64 `json:"queues"`
		Workers int                         `json:"workers"`
		DBBytes int64                       `json:"db_bytes"`
		Paths   map[string]string           `json:"paths"`
	}
	if err := json.Unmarshal([]byte(e.ok("stats", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Queues["q1"]["DONE"] != 1 || st.Workers < 1 || st.DBBytes <= 0 || st.Paths["socket"] != e.path("stq.sock") {
		t.Fatalf("stats = %+v", st)
	}
	plain := e.ok("stats")
	if !strings.Contains(plain, e.path("stq.db")) || !strings.Contains(plain, "q1") {
		t.Fatalf("stats output:\n%s", plain)
	}
	if out := e.ok("list"); !strings.Contains(out, id) || strings.Contains(out, "\x1b[") {
		t.Fatalf("list on a pipe must be plain text with the job:\n%q", out)
	}
	if js := e.list("--state", "done", "--queue", "q1"); len(js) != 1 || js[0].ID != id {
		t.Fatalf("list filter: %+v", js)
	}
	if js := e.list("--state", "FAILED"); len(js) != 0 {
		t.Fatalf("list --state FAILED: %+v", js)
	}
	if out := e.ok("list", "--json", "--state", "FAILED"); out != "[]" {
		t.Fatalf("empty list --json = %q, want []", out)
	}
}

func TestTailFollowEndsWithTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--in", "300ms", "--", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.05; done")
	done := make(chan result, 1)
	go func() { done <- e.run("tail", "-f", "--job", id) }()
	select {
	case r := <-done:
		if r.code != 0 {
			t.Fatalf("tail -f: exit %d %s", r.code, r.stderr)
		}
		for _, want := range []string{"line1", "line2", "line3", "DONE"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("tail -f output lacks %q:\n%s", want, r.stdout)
			}
		}
		if strings.Count(r.stdout, "line2") != 1 {
			t.Fatalf("tail -f repeated a line:\n%s", r.stdout)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail -f did not end when the job ended")
	}
}

func TestJobOutputIsBounded(t *testing.T) {
	// Not parallel: exec gives a finished job's output readers 200 ms
	// (DefaultDrainTimeout) before it closes the pipes, and on a loaded
	// machine the newest lines are lost with them, which this test sees.
	e := newEnv(t)
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.path("config.toml"), []byte("[daemon]\nlog_limit = 65536\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startDaemon()
	id := e.ok("enqueue", "--", "sh", "-c", "i=0; while [ $i -lt 20000 ]; do echo line-$i; i=$((i+1)); done")
	e.ok("wait", id)
	out := e.ok("tail", id)
	if !strings.Contains(out, "line-19999") || strings.Contains(out, " line-0\n") || !strings.Contains(out, "earlier output was dropped") {
		t.Fatalf("bounded log should keep the newest lines and note the drop; got %d bytes:\n%s...", len(out), out[:min(len(out), 300)])
	}
	var raw map[string]any
	_ = json.Unmarshal([]byte(e.ok("show", "--json", id)), &raw)
	if raw["log_truncated"] != true {
		t.Fatalf("log_truncated not set: %v", raw["log_truncated"])
	}
	total := 0
	for _, l := range strings.Split(out, "\n") {
		if i := strings.Index(l, " "); i > 0 {
			total += len(l) - i - 1
		}
	}
	if total > 70000 {
		t.Fatalf("stored log text is %d bytes, over the 64 KiB limit", total)
	}
}

func TestAnotherUIDIsRefused(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root to run a client as another uid")
	}
	e := newEnv(t)
	e.startDaemon()
	// Let uid 65534 reach the socket so the daemon's own peer check is what
	// refuses it, not the file system.
	for _, p := range []string{filepath.Dir(e.home), e.home} {
		if err := os.Chmod(p, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(e.path("stq.sock"), 0o666); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(filepath.Dir(e.home), "helper")
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	c := execCommandAs(exe, 65534)
	c.Env = []string{"STQ_E2E_HELPER=1", "STQ_E2E_SOCKET=" + e.path("stq.sock"), "STQ_E2E_TOKEN=" + e.token()}
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "-32000") {
		t.Fatalf("a client with another uid and the right token got: %s", out)
	}
	e.ok("stats")
}

func execCommandAs(exe string, uid uint32) *exec.Cmd {
	c := exec.Command(exe)
	c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	return c
}

func TestAcknowledgedEnqueuesSurviveSIGKILLMidStorm(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()
	const clients = 8
	var (
		mu    sync.Mutex
		acked []string
		wg    sync.WaitGroup
		stop  = make(chan struct{})
	)
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := e.run("enqueue", "--in", "1h", "--subject", fmt.Sprintf("c%d-%d", c, i%3), "--", "true")
				if r.code == 0 {
					mu.Lock()
					acked = append(acked, strings.TrimSpace(r.stdout))
					mu.Unlock()
				} else if r.code != 3 && r.code != 1 {
					t.Errorf("enqueue during the crash: exit %d %s", r.code, r.stderr)
				}
			}
		}(c)
	}
	waitFor(t, "some acknowledged enqueues", 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= 40
	})
	d.kill()
	close(stop)
	wg.Wait()

	e.startDaemon()
	stored := map[string]job{}
	for _, j := range e.list() {
		stored[j.ID] = j
	}
	for _, id := range acked {
		j, ok := stored[id]
		if !ok {
			t.Fatalf("acknowledged job %s is missing after SIGKILL (of %d acknowledged)", id, len(acked))
		}
		if j.State != "QUEUED" && j.State != "SUPERSEDED" {
			t.Fatalf("acknowledged job %s is %s", id, j.State)
		}
	}
	t.Logf("%d acknowledged enqueues, all present after SIGKILL and restart", len(acked))
}

func TestPayloadFromStdinReachesTheJob(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	out := filepath.Join(t.TempDir(), "got")
	r := e.runStdin(`{"path":"src/lib.rs"}`, "enqueue", "--payload-file", "-", "--", "sh", "-c", "cat > "+out)
	if r.code != 0 {
		t.Fatalf("enqueue with --payload-file -: exit %d %q", r.code, r.stderr)
	}
	e.ok("wait", strings.TrimSpace(r.stdout))
	if b, _ := os.ReadFile(out); string(b) != `{"path":"src/lib.rs"}` {
		t.Fatalf("job read %q from stdin", b)
	}
	if r := e.runStdin(`not json`, "enqueue", "--payload-file", "-", "--", "true"); r.code != 2 {
		t.Fatalf("invalid JSON on stdin: exit %d", r.code)
	}
}

func TestDaemonHelpPrintsThePaths(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	out := e.ok("daemon", "--help")
	for _, want := range []string{e.path("stq.db"), e.path("stq.sock"), e.path("token"), e.path("config.toml")} {
		if !strings.Contains(out, want) {
			t.Fatalf("daemon --help does not name %s:\n%s", want, out)
		}
	}
}
