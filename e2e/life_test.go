package e2e

// The daemon's life on the real binary: --detach, a client waiting for a
// daemon that is starting, stq shutdown, stq reload and SIGHUP, the PID and
// version in stats, token problems, and the README's quick start run as a
// script.

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// detach runs `stq daemon --detach` and returns the PID it printed; the
// daemon is killed when the test ends.
func (e *testEnv) detach(args ...string) int {
	e.t.Helper()
	out := e.ok(append([]string{"daemon", "--detach"}, args...)...)
	pid, err := strconv.Atoi(out)
	if err != nil {
		e.t.Fatalf("daemon --detach printed %q, want a PID", out)
	}
	e.t.Cleanup(func() {
		if processAlive(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if e.t.Failed() {
			b, _ := os.ReadFile(e.path("daemon.log"))
			e.t.Logf("daemon.log:\n%s", b)
		}
	})
	return pid
}

type statsJSON struct {
	PID     int    `json:"pid"`
	Version string `json:"version"`
	Workers int    `json:"workers"`
}

func (e *testEnv) stats() statsJSON {
	e.t.Helper()
	var st statsJSON
	if err := json.Unmarshal([]byte(e.ok("stats", "--json")), &st); err != nil {
		e.t.Fatalf("decode stats: %v", err)
	}
	return st
}

func TestDetachReturnsOnceTheDaemonAnswersAndShutdownWaitsForItsExit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	pid := e.detach()

	// No sleep, no retry: the daemon answers as soon as --detach returns.
	id := e.ok("enqueue", "--", "true")
	if st := e.stats(); st.PID != pid || st.Version != "v0.0.0-e2e" {
		t.Fatalf("stats: pid %d version %q, want pid %d (printed by --detach) and v0.0.0-e2e", st.PID, st.Version, pid)
	}
	e.ok("wait", id)
	fi, err := os.Stat(e.path("daemon.log"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("daemon.log: %v, mode %v; want mode 0600", err, fi.Mode())
	}
	if b, _ := os.ReadFile(e.path("daemon.log")); !strings.Contains(string(b), "stq daemon ready") {
		t.Fatalf("daemon.log lacks the daemon's log:\n%s", b)
	}

	// A second one is refused as a second `stq daemon` is: exit 1 naming
	// the running one's PID.
	r := e.run("daemon", "--detach")
	if r.code != 1 || !strings.Contains(r.stderr, "another stq daemon (pid "+strconv.Itoa(pid)+")") || r.stdout != "" {
		t.Fatalf("second --detach: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if !processAlive(pid) {
		t.Fatal("the first daemon died when a second one was refused")
	}

	// stq shutdown returns once the daemon has exited, and lets its
	// running job finish within the grace period.
	slow := e.ok("enqueue", "--", "sleep", "1")
	e.waitState(slow, "RUNNING")
	start := time.Now()
	if r := e.run("shutdown"); r.code != 0 || r.stdout != "" {
		t.Fatalf("shutdown: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if processAlive(pid) {
		t.Fatal("stq shutdown returned while the daemon still runs")
	}
	if d := time.Since(start); d < 500*time.Millisecond {
		t.Fatalf("shutdown took %s: it did not wait for the running job", d)
	}
	if r := e.run("shutdown"); r.code != 3 {
		t.Fatalf("shutdown without a daemon: exit %d, want 3\n%s", r.code, r.stderr)
	}
	e.detach()
	if j := e.show(slow); j.State != "DONE" || len(j.Attempts) != 1 {
		t.Fatalf("the job running at shutdown: %s with %d attempts, want DONE with 1", j.State, len(j.Attempts))
	}
}

func TestDetachReportsTheDaemonsOwnError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.configure("[daemon]\nwrokers = 2\n")
	r := e.run("daemon", "--detach")
	if r.code != 1 || !strings.Contains(r.stderr, "stq: ") || !strings.Contains(r.stderr, "wrokers") || r.stdout != "" {
		t.Fatalf("--detach with a bad config: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
}

func TestShutdownUsesTheDaemonsGraceAndExitsZero(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon("--grace", "1s")
	dir := t.TempDir()
	id := e.ok("enqueue", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 300")
	pid := readPID(t, dir+"/pid")
	e.ok("pause", "default") // so the next daemon does not start the job again
	start := time.Now()
	if r := e.run("shutdown"); r.code != 0 {
		t.Fatalf("shutdown: exit %d\n%s", r.code, r.stderr)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		t.Fatal("stq shutdown returned, the daemon process did not end")
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("daemon exit %d after stq shutdown, want 0 as after SIGTERM", code)
	}
	if took := time.Since(start); took < time.Second {
		t.Fatalf("shutdown took %s, less than the daemon's grace of 1s", took)
	}
	if processAlive(pid) {
		t.Fatal("the job's process outlived the daemon")
	}
	e.startDaemon()
	if j := e.show(id); j.State != "QUEUED" || !j.attemptOutcome("interrupted") {
		t.Fatalf("job cut short by the grace: %s, attempts %+v; want it QUEUED again, interrupted as on SIGTERM", j.State, j.Attempts)
	}
}

func TestClientWaitsForADaemonThatIsStarting(t *testing.T) {
	// Not parallel: it times the client's patience (under 1.5 s, over 2 s).
	e := newEnv(t)
	// Nothing runs: "no daemon" at once, not after a wait.
	start := time.Now()
	if r := e.run("stats"); r.code != 3 || time.Since(start) > 1500*time.Millisecond {
		t.Fatalf("stats without a daemon: exit %d after %s\n%s", r.code, time.Since(start), r.stderr)
	}

	// A daemon reading its config from a FIFO holds the home's lock and
	// waits there, before its token and socket exist: a daemon starting,
	// for as long as the test likes.
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(e.path("config.toml"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := e.cmd("daemon")
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = d.Wait(); close(done) }()
	t.Cleanup(func() { _ = d.Process.Kill(); <-done })
	waitFor(t, "the daemon to take the home's lock", 30*time.Second, func() bool {
		b, _ := os.ReadFile(e.path("stq.lock"))
		return strings.TrimSpace(string(b)) == strconv.Itoa(d.Process.Pid)
	})

	// Still starting after the client's patience: "no daemon", saying why.
	start = time.Now()
	r := e.run("stats")
	if r.code != 3 || time.Since(start) < 2*time.Second || !strings.Contains(r.stderr, "(pid "+strconv.Itoa(d.Process.Pid)+")") {
		t.Fatalf("stats while the daemon never finishes starting: exit %d after %s\n%s", r.code, time.Since(start), r.stderr)
	}

	// Ready within the client's patience: the client gets through.
	client := e.cmd("enqueue", "--", "true")
	var out strings.Builder
	client.Stdout, client.Stderr = &out, &out
	if err := client.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond) // the client is waiting now
	f, err := os.OpenFile(e.path("config.toml"), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Close() // an empty config: the daemon goes on starting
	if err := client.Wait(); err != nil {
		t.Fatalf("enqueue while the daemon was starting: %v\n%s", err, out.String())
	}
}

func TestReloadPutsConfigInForceWithoutTouchingRunningJobs(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()

	// A type without a handler: refused, and the hint says what to do.
	r := e.run("enqueue", "--type", "X")
	if r.code != 1 || !strings.Contains(r.stderr, `job type "X" has no handler`) ||
		!strings.Contains(r.stderr, "hint: ") || !strings.Contains(r.stderr, "[handlers.X]") ||
		!strings.Contains(r.stderr, e.path("config.toml")) || !strings.Contains(r.stderr, "stq reload") {
		t.Fatalf("enqueue of a type without a handler: exit %d\n%s", r.code, r.stderr)
	}

	running := e.ok("enqueue", "--", "sleep", "2")
	e.waitState(running, "RUNNING")
	e.configure("[handlers.X]\ncommand = [\"true\"]\n")
	if r := e.run("reload"); r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Fatalf("reload: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	x := e.ok("enqueue", "--type", "X")
	e.ok("wait", x)
	e.ok("wait", running)
	if j := e.show(running); len(j.Attempts) != 1 || j.Attempts[0].Outcome != "succeeded" {
		t.Fatalf("the job running across the reload: %+v, want one succeeded attempt", j.Attempts)
	}

	// An invalid file: exit 1 with its error; the old config stays.
	e.configure("[handlers.X]\ncommand = [\"true\"]\n[handlers.Y]\nmode = \"bogus\"\n")
	r = e.run("reload")
	if r.code != 1 || !strings.Contains(r.stderr, "stq: ") || !strings.Contains(r.stderr, "handlers.Y") ||
		!strings.Contains(r.stderr, "unchanged") {
		t.Fatalf("reload of an invalid file: exit %d\n%s", r.code, r.stderr)
	}
	e.ok("wait", e.ok("enqueue", "--type", "X"))

	// Settings that need a restart are named.
	e.configure("[daemon]\nworkers = 7\n[handlers.X]\ncommand = [\"true\"]\n")
	r = e.run("reload")
	if r.code != 0 || !strings.Contains(r.stderr, "daemon.workers") {
		t.Fatalf("reload with a new worker count: exit %d\n%s", r.code, r.stderr)
	}
	if st := e.stats(); st.Workers == 7 {
		t.Fatal("workers changed without a restart")
	}

	// Queue caps and rate limits follow the file too.
	e.configure("[queues.q]\nconcurrency = 1\n")
	e.ok("reload")
	first := e.ok("enqueue", "-q", "q", "--", "sleep", "30")
	second := e.ok("enqueue", "-q", "q", "--", "true")
	e.waitState(first, "RUNNING")
	if j := e.show(second); j.State != "QUEUED" || j.Waiting != "queue full" {
		t.Fatalf("second job of a queue capped at 1: %s waiting %q", j.State, j.Waiting)
	}
	e.configure("[queues.q]\nconcurrency = 2\n[limits]\nenqueue_rate = 1\nenqueue_burst = 1\n")
	e.ok("reload")
	e.ok("wait", "--timeout", "20s", second)
	r = e.runStdin("{\"command\":[\"true\"]}\n{\"command\":[\"true\"]}\n", "enqueue", "--batch", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "burst") {
		t.Fatalf("a batch of 2 over a reloaded burst of 1: exit %d\n%s", r.code, r.stderr)
	}
	e.ok("cancel", first)

	// SIGHUP does what stq reload does, and an invalid file keeps the
	// daemon running on the old config.
	e.configure("[handlers.Z]\ncommand = [\"true\"]\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "SIGHUP to put [handlers.Z] in force", 10*time.Second, func() bool {
		return e.run("enqueue", "--type", "Z").code == 0
	})
	e.configure("[handlers.Z\n")
	if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the daemon to log the refused reload", 10*time.Second, func() bool {
		return strings.Contains(d.output(), "config not reloaded")
	})
	e.ok("wait", e.ok("enqueue", "--type", "Z"))
	select {
	case <-d.done:
		t.Fatalf("SIGHUP stopped the daemon:\n%s", d.output())
	default:
	}
}

func TestStatsShowsThePIDAndVersion(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.startDaemon()
	if st := e.stats(); st.PID != d.cmd.Process.Pid || st.Version != "v0.0.0-e2e" {
		t.Fatalf("stats --json: pid %d version %q, want %d and v0.0.0-e2e", st.PID, st.Version, d.cmd.Process.Pid)
	}
	out := e.ok("stats")
	if !strings.Contains(out, "pid "+strconv.Itoa(d.cmd.Process.Pid)) || !strings.Contains(out, "version v0.0.0-e2e") {
		t.Fatalf("stats does not show the pid and version:\n%s", out)
	}
}

func TestTokenProblemsAreAuthErrorsNotNoDaemon(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	tok := e.token()

	check := func(what, want string) {
		t.Helper()
		r := e.run("stats")
		if r.code != 5 || !strings.Contains(r.stderr, want) || strings.Contains(r.stderr, "no daemon") {
			t.Fatalf("%s: exit %d, want 5 with %q\n%s", what, r.code, want, r.stderr)
		}
	}
	if err := os.Remove(e.path("token")); err != nil {
		t.Fatal(err)
	}
	check("token file missing", "token file "+e.path("token")+" is missing")

	if err := os.Mkdir(e.path("token"), 0o700); err != nil {
		t.Fatal(err)
	}
	check("a directory in place of the token file", "cannot use token file "+e.path("token")+": is a directory")
	os.Remove(e.path("token"))

	if os.Getuid() != 0 { // root reads a mode-000 file all the same
		if err := os.WriteFile(e.path("token"), []byte(tok+"\n"), 0o000); err != nil {
			t.Fatal(err)
		}
		check("an unreadable token file", "permission denied")
		os.Remove(e.path("token"))
	}

	wrong := make([]byte, 32)
	if err := os.WriteFile(e.path("token"), []byte(hex.EncodeToString(wrong)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	check("a token the daemon refuses", "refused this client's token")

	if err := os.WriteFile(e.path("token"), []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.ok("stats")
}

// TestReadmeQuickStartRunsAsAScript runs the README's quick start, between
// its <!-- quickstart --> markers, with sh -e: what it promises must hold
// when it is pasted.
func TestReadmeQuickStartRunsAsAScript(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- quickstart -->\\s*```sh\\n(.*?)```\\s*<!-- /quickstart -->").FindSubmatch(b)
	if m == nil {
		t.Fatal("README.md has no ```sh block between <!-- quickstart --> and <!-- /quickstart -->")
	}
	script := string(m[1])

	// The script runs in a fresh directory with the test's stq as ./stq
	// and on PATH. `go build` is stood in for: stq is built already, and
	// `go build ./...` is the example job.
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	tmp := filepath.Join(dir, "tmp")
	for _, d := range []string{bin, tmp} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	exe, err := os.ReadFile(stqBin)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(dir, "stq"), filepath.Join(bin, "stq")} {
		if err := os.WriteFile(p, exe, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	goShim := "#!/bin/sh\ncase \"$*\" in\n\"build -o stq .\"|\"build ./...\") echo \"go $*: ok\"; exit 0 ;;\nesac\necho \"unexpected: go $*\" >&2; exit 2\n"
	if err := os.WriteFile(filepath.Join(bin, "go"), []byte(goShim), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killHomeDaemons(t, tmp) })

	cmd := exec.Command("sh", "-e", "-c", script)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"TMPDIR="+tmp, "HOME="+dir, "NO_COLOR=1", "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	cmd.Env = withoutEnv(cmd.Env, "STQ_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the README quick start failed: %v\n%s", err, out)
	}
	for _, want := range []string{"built", "home:"} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("the quick start's output lacks %q:\n%s", want, out)
		}
	}
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// killHomeDaemons kills the daemons whose homes are under dir, by the PID
// in their lock files, in case a script left one running.
func killHomeDaemons(t *testing.T, dir string) {
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.Name() != "stq.lock" {
			return nil
		}
		b, _ := os.ReadFile(path)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && processAlive(pid) {
			t.Errorf("the quick start left its daemon (pid %d) running", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return nil
	})
}
