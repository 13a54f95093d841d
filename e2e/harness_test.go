package e2e

// The harness every test in this package shares: TestMain builds the real
// stq binary (with the race detector) from the repository root; newEnv
// gives a test its own temporary home, startDaemon a real daemon on it, and
// run, ok, show, list and waitState drive it through the CLI as users and
// scripts do. The socket, /proc and reliability helpers are in the other
// harness_*_test.go files.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var stqBin string

func TestMain(m *testing.M) {
	if os.Getenv("STQ_E2E_HELPER") != "" {
		os.Exit(e2eHelper())
	}
	dir, err := os.MkdirTemp("", "stq-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	stqBin = filepath.Join(dir, "stq")
	// The binary is the repository root's main package, one level up.
	build := exec.Command("go", "build", "-race", "-ldflags", "-X main.version=v0.0.0-e2e", "-o", stqBin, ".")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build stq:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// e2eHelper runs inside a child process started by a test (for example as
// another uid): it connects to the socket, sends one auth line and prints
// what came back.
func e2eHelper() int {
	conn, err := net.Dial("unix", os.Getenv("STQ_E2E_SOCKET"))
	if err != nil {
		fmt.Println("dial error:", err)
		return 0
	}
	defer conn.Close()
	fmt.Fprintf(conn, `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":%q}}`+"\n", os.Getenv("STQ_E2E_TOKEN"))
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(conn).ReadString('\n')
	fmt.Print(line)
	return 0
}

type testEnv struct {
	t    *testing.T
	home string
}

// newEnv makes a short home directory: Unix socket paths are limited to
// about 100 bytes, and t.TempDir() paths can be longer.
func newEnv(t *testing.T) *testEnv {
	t.Helper()
	home, err := os.MkdirTemp("", "stq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	return &testEnv{t: t, home: filepath.Join(home, "h")}
}

func (e *testEnv) path(name string) string { return filepath.Join(e.home, name) }

type result struct {
	stdout, stderr string
	code           int
}

func (e *testEnv) cmd(args ...string) *exec.Cmd {
	c := exec.Command(stqBin, args...)
	// A race-enabled binary sleeps a second at exit unless told not to.
	c.Env = append(os.Environ(), "STQ_HOME="+e.home, "NO_COLOR=1", "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	return c
}

// run runs one stq command to completion.
func (e *testEnv) run(args ...string) result {
	e.t.Helper()
	return e.runStdin("", args...)
}

func (e *testEnv) runStdin(stdin string, args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	c.Stdin = strings.NewReader(stdin)
	err := c.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		e.t.Fatalf("run stq %v: %v", args, err)
	}
	return result{out.String(), errb.String(), code}
}

// ok runs a command that must succeed and returns its trimmed stdout.
func (e *testEnv) ok(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("stq %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return strings.TrimSpace(r.stdout)
}

// configure writes the home's config.toml, as a user does before starting
// the daemon (or before `stq reload`).
func (e *testEnv) configure(text string) {
	e.t.Helper()
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(e.path("config.toml"), []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
}

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

type daemon struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *bytes.Buffer
	done chan struct{}
	mu   *sync.Mutex
}

type lockedBuffer struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (l lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

// startDaemon starts `stq daemon` and waits until it answers on its socket.
func (e *testEnv) startDaemon(args ...string) *daemon {
	e.t.Helper()
	d := e.launchDaemon(nil, args...)
	e.waitReady(d)
	return d
}

// launchDaemon starts `stq daemon` with env added to its environment and
// returns at once, for tests that watch the start itself (startDaemon
// also waits for it to answer).
func (e *testEnv) launchDaemon(env []string, args ...string) *daemon {
	e.t.Helper()
	c := e.cmd(append([]string{"daemon", "--log-level", "debug"}, args...)...)
	c.Env = append(c.Env, env...)
	d := &daemon{t: e.t, cmd: c, log: &bytes.Buffer{}, done: make(chan struct{}), mu: &sync.Mutex{}}
	c.Stdout = lockedBuffer{d.mu, d.log}
	c.Stderr = lockedBuffer{d.mu, d.log}
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = c.Wait(); close(d.done) }()
	e.t.Cleanup(func() {
		// A test may leave its daemon stopped (SIGSTOP); SIGCONT first, so
		// the kill is not left pending behind the stop.
		_ = d.cmd.Process.Signal(syscall.SIGCONT)
		d.kill()
		if e.t.Failed() {
			e.t.Logf("daemon %s log:\n%s", e.home, d.output())
		}
	})
	return d
}

// waitReady waits until d answers on the home's socket, failing the test
// if it exits first.
func (e *testEnv) waitReady(d *daemon) {
	e.t.Helper()
	waitFor(e.t, "daemon on "+e.home+" to answer", 30*time.Second, func() bool {
		select {
		case <-d.done:
			e.t.Fatalf("daemon exited during start:\n%s", d.output())
		default:
		}
		return e.run("stats", "--json").code == 0
	})
}

func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

func (d *daemon) kill() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemon) stop() int {
	d.t.Helper()
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(60 * time.Second):
		d.t.Fatalf("daemon did not stop after SIGTERM:\n%s", d.output())
	}
	return d.cmd.ProcessState.ExitCode()
}

type attempt struct {
	N        int    `json:"n"`
	Outcome  string `json:"outcome"`
	Reason   string `json:"reason"`
	ExitCode *int   `json:"exit_code"`
	PID      int    `json:"pid"`
	PIDStart int64  `json:"pid_start"`
}

type job struct {
	ID          string            `json:"id"`
	Queue       string            `json:"queue"`
	Type        string            `json:"type"`
	Subject     string            `json:"subject"`
	Generation  int64             `json:"generation"`
	Priority    int               `json:"priority"`
	State       string            `json:"state"`
	Attempt     int               `json:"attempt"`
	MaxAttempts int               `json:"max_attempts"`
	Payload     json.RawMessage   `json:"payload"`
	Command     []string          `json:"command"`
	Cwd         string            `json:"cwd"`
	Env         map[string]string `json:"env"`
	RunAt       time.Time         `json:"run_at"`
	Deadline    string            `json:"deadline"`
	TTL         string            `json:"ttl"`
	Backoff     string            `json:"backoff"`
	CreatedAt   time.Time         `json:"created_at"`
	StartedAt   *time.Time        `json:"started_at"`
	FinishedAt  *time.Time        `json:"finished_at"`
	ExitCode    *int              `json:"exit_code"`
	Error       string            `json:"error"`
	Waiting     string            `json:"waiting"`
	Attempts    []attempt         `json:"attempts"`
}

func (e *testEnv) show(id string) job {
	e.t.Helper()
	var j job
	if err := json.Unmarshal([]byte(e.ok("show", "--json", id)), &j); err != nil {
		e.t.Fatalf("decode show: %v", err)
	}
	return j
}

func (e *testEnv) list(args ...string) []job {
	e.t.Helper()
	var js []job
	out := e.ok(append([]string{"list", "--json", "--limit", "10000"}, args...)...)
	if err := json.Unmarshal([]byte(out), &js); err != nil {
		e.t.Fatalf("decode list: %v\n%s", err, out)
	}
	return js
}

// waitFor polls cond until it holds or the time is up. It observes outside
// effects (a process, a file); it never stands in for logic.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *testEnv) waitState(id, state string) job {
	e.t.Helper()
	var j job
	waitFor(e.t, "job "+id+" to be "+state, 30*time.Second, func() bool {
		j = e.show(id)
		return j.State == state
	})
	return j
}
