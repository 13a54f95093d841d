package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDebounceTenQuickSavesRunOnceTheLast(t *testing.T) {
	// Not parallel: its ten enqueues must land within the 1s debounce.
	e := newEnv(t)
	e.startDaemon()
	runs := filepath.Join(t.TempDir(), "runs")
	var ids []string
	for i := 0; i < 10; i++ {
		ids = append(ids, e.ok("enqueue", "--subject", "src/main.rs", "--debounce", "1s", "--", "sh", "-c", "echo $STQ_GENERATION >> "+runs))
	}
	last := ids[len(ids)-1]
	if j := e.show(last); j.State != "QUEUED" {
		t.Fatalf("last save's job is %s inside its debounce window", j.State)
	}
	e.ok(append([]string{"wait"}, last)...)
	e.run(append([]string{"wait"}, ids...)...)
	b, _ := os.ReadFile(runs)
	if got := strings.TrimSpace(string(b)); got != "10" {
		t.Fatalf("runs: %q, want one run of generation 10", got)
	}
	for _, id := range ids[:9] {
		if j := e.show(id); j.State != "SUPERSEDED" {
			t.Fatalf("earlier save %s is %s", id, j.State)
		}
	}
}

func TestReplaceKillsTheRunningOlderGeneration(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	dir := t.TempDir()
	old := e.ok("enqueue", "--subject", "build", "--", "sh", "-c", "echo $$ > "+dir+"/old; sleep 300 & wait")
	pid := readPID(t, dir+"/old")
	newer := e.ok("enqueue", "--subject", "build", "--replace", "--", "true")
	e.ok("wait", newer)
	j := e.show(old)
	if j.State != "SUPERSEDED" || !strings.Contains(j.Error, newer) || !j.attemptOutcome("superseded") {
		t.Fatalf("replaced job: %s %q", j.State, j.Error)
	}
	waitFor(t, "the replaced job's process to die", 10*time.Second, func() bool { return !processAlive(pid) })
}

func (j job) attemptOutcome(o string) bool {
	return len(j.Attempts) > 0 && j.Attempts[len(j.Attempts)-1].Outcome == o
}

func TestAfterChains(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "2")
	dir := t.TempDir()
	// The parent ends when the test says so, not after a guessed time, so
	// the child is seen waiting however slow the machine is.
	gate := filepath.Join(dir, "gate")
	parent := e.ok("enqueue", "--", "sh", "-c", "while [ ! -f "+gate+" ]; do sleep 0.02; done; touch "+dir+"/parent")
	child := e.ok("enqueue", "--after", parent, "--", "sh", "-c", "test -f "+dir+"/parent")
	if j := e.show(child); j.State != "QUEUED" || j.Waiting != "after "+parent {
		t.Fatalf("child before its parent ended: %s waiting %q", j.State, j.Waiting)
	}
	if err := os.WriteFile(gate, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("wait", child) // DONE only if it ran after the parent's file existed

	failing := e.ok("enqueue", "--max-attempts", "1", "--", "false")
	dependent := e.ok("enqueue", "--after", failing, "--", "touch", dir+"/never")
	grandchild := e.ok("enqueue", "--after", dependent, "--", "touch", dir+"/never")
	e.run("wait", failing, dependent, grandchild)
	for _, id := range []string{dependent, grandchild} {
		j := e.show(id)
		if j.State != "CANCELLED" || !strings.Contains(j.Error, "dependency") {
			t.Fatalf("dependent %s of a failed job: %s %q", id, j.State, j.Error)
		}
	}
	if _, err := os.Stat(dir + "/never"); err == nil {
		t.Fatal("a dependent of a failed job ran")
	}
	late := e.ok("enqueue", "--after", failing, "--", "true")
	if j := e.show(late); j.State != "CANCELLED" {
		t.Fatalf("enqueued after an already failed job: %s", j.State)
	}
	r := e.run("enqueue", "--after", "0000000000000000000000nope", "--", "true")
	if r.code != 1 || !strings.Contains(r.stderr, "unknown job") {
		t.Fatalf("unknown dependency: exit %d %q", r.code, r.stderr)
	}
}

func TestPauseSurvivesARestartAndResumeRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()
	e.ok("pause", "indexing")
	id := e.ok("enqueue", "--queue", "indexing", "--", "true")
	other := e.ok("enqueue", "--queue", "default", "--", "true")
	e.ok("wait", other) // other queues keep running
	if j := e.show(id); j.State != "QUEUED" || j.Waiting != "queue paused" {
		t.Fatalf("job in a paused queue: %s waiting %q", j.State, j.Waiting)
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("stop: %d", code)
	}
	e.startDaemon()
	var st struct {
		Paused []string `json:"paused"`
	}
	if err := json.Unmarshal([]byte(e.ok("stats", "--json")), &st); err != nil || len(st.Paused) != 1 || st.Paused[0] != "indexing" {
		t.Fatalf("paused after restart: %+v %v", st.Paused, err)
	}
	if j := e.show(id); j.State != "QUEUED" {
		t.Fatalf("paused job after restart: %s", j.State)
	}
	e.ok("resume", "indexing")
	e.ok("wait", id)
}

func TestRetryStartsANewAttemptSeries(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	flag := filepath.Join(t.TempDir(), "ok")
	id := e.ok("enqueue", "--max-attempts", "1", "--", "test", "-f", flag)
	e.run("wait", id)
	if j := e.show(id); j.State != "FAILED" {
		t.Fatalf("job is %s", j.State)
	}
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if out := e.ok("retry", id); out != id {
		t.Fatalf("retry printed %q", out)
	}
	e.ok("wait", id)
	if j := e.show(id); j.State != "DONE" || len(j.Attempts) != 2 {
		t.Fatalf("after retry: %s with %d attempts", j.State, len(j.Attempts))
	}
	r := e.run("retry", id)
	if r.code != 1 {
		t.Fatalf("retry of a DONE job: exit %d", r.code)
	}
}

func TestQueueConcurrencyLimitIsNeverExceeded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.configure("[queues.indexing]\nconcurrency = 2\n")
	e.startDaemon("--workers", "4")
	trace := filepath.Join(t.TempDir(), "trace")
	var ids []string
	for i := 0; i < 8; i++ {
		ids = append(ids, e.ok("enqueue", "--queue", "indexing", "--", "sh", "-c",
			"echo start >> "+trace+"; sleep 0.2; echo end >> "+trace))
	}
	free := e.ok("enqueue", "--queue", "other", "--", "true")
	e.ok("wait", free) // a full queue does not starve the others
	e.ok(append([]string{"wait"}, ids...)...)
	b, _ := os.ReadFile(trace)
	running, peak := 0, 0
	for _, l := range strings.Fields(string(b)) {
		if l == "start" {
			running++
		} else {
			running--
		}
		peak = max(peak, running)
	}
	if peak != 2 {
		t.Fatalf("peak concurrency in the queue was %d, want exactly the limit 2", peak)
	}
}

func TestConditionsHoldJobsAndSayWhy(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A threshold no machine gets under: the machine never counts as idle.
	e.configure("[daemon]\nidle_threshold = 0.000001\n")
	e.startDaemon()
	held := e.ok("enqueue", "--wait-idle", "--", "true")
	ready := e.ok("enqueue", "--", "true")
	e.ok("wait", ready)                 // a held job never blocks a ready one
	time.Sleep(1500 * time.Millisecond) // let the probe take its first sample
	j := e.show(held)
	if j.State != "QUEUED" || j.Waiting != "idle" {
		t.Fatalf("job waiting for idle: %s waiting %q", j.State, j.Waiting)
	}
	if out := e.ok("list", "--state", "QUEUED"); !strings.Contains(out, "waiting: idle") {
		t.Fatalf("list does not say why:\n%s", out)
	}
	// This machine has no battery, so it counts as on AC.
	ac := e.ok("enqueue", "--require-charging", "--", "true")
	e.ok("wait", ac)
	e.ok("cancel", held)
}

func TestRetentionKeepsTheDatabaseBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.configure("[retention]\nkeep = 200\ninterval = \"200ms\"\n")
	e.startDaemon("--workers", "2")
	var sizes []int64
	for round := 0; round < 6; round++ {
		var ids []string
		for i := 0; i < 150; i++ {
			ids = append(ids, e.ok("enqueue", "--type", "noop", "--payload", `{"pad":"`+strings.Repeat("x", 100)+`"}`))
		}
		e.ok(append([]string{"wait"}, ids...)...)
		time.Sleep(300 * time.Millisecond) // one retention beat
		sizes = append(sizes, dbBytes(t, e))
	}
	var st struct {
		Queues map[string]map[string]int64 `json:"queues"`
	}
	_ = json.Unmarshal([]byte(e.ok("stats", "--json")), &st)
	if done := st.Queues["default"]["DONE"]; done > 200+150 {
		t.Fatalf("%d finished jobs kept, want at most about 200", done)
	}
	if last, mid := sizes[len(sizes)-1], sizes[2]; last > mid*3/2 {
		t.Fatalf("database keeps growing under a steady load: %v bytes", sizes)
	}
	t.Logf("db+wal bytes per round: %v", sizes)
}

func TestRateLimitedEnqueuesWaitOrFailClearlyAndLoseNothing(t *testing.T) {
	// Not parallel: it measures enqueue rates against the configured limit.
	e := newEnv(t)
	e.configure("[limits]\nenqueue_rate = 5\nenqueue_burst = 2\n")
	e.startDaemon()
	// Six quick enqueues against 2 + 5/s: the CLI waits as told and all
	// get through.
	var ids []string
	for i := 0; i < 6; i++ {
		ids = append(ids, e.ok("enqueue", "--type", "noop"))
	}
	e.ok(append([]string{"wait"}, ids...)...)

	e2 := newEnv(t)
	e2.configure("[limits]\nenqueue_rate = 0.1\nenqueue_burst = 1\n")
	e2.startDaemon()
	first := e2.ok("enqueue", "--type", "noop")
	r := e2.run("enqueue", "--type", "noop")
	if r.code != 1 || !strings.Contains(r.stderr, "rate-limiting") {
		t.Fatalf("enqueue far over the limit: exit %d %q", r.code, r.stderr)
	}
	if js := e2.list(); len(js) != 1 || js[0].ID != first {
		t.Fatalf("stored %d jobs, want only the admitted one", len(js))
	}
}
