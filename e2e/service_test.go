package e2e

// End-to-end tests of `stq service` and `stq completion`: the units the
// real binary writes, the daemon started the way a unit starts it, install
// and uninstall against a stand-in systemctl, and completions from a
// running daemon.

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runWith runs stq with extra environment (later entries win).
func (e *testEnv) runWith(env []string, args ...string) result {
	e.t.Helper()
	c := e.cmd(args...)
	c.Env = append(c.Env, env...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
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

// unitValue is the value of the first "key=" line of a unit.
func unitValue(t *testing.T, unit, key string) string {
	t.Helper()
	for line := range strings.SplitSeq(unit, "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	t.Fatalf("no %s= in unit:\n%s", key, unit)
	return ""
}

// splitExecStart splits an ExecStart= value into words as systemd does for
// what `stq service` writes: double quotes with backslash escapes, and "%%"
// and "$$" for a literal "%" and "$".
func splitExecStart(t *testing.T, s string) []string {
	t.Helper()
	var words []string
	var cur strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case quoted && ch == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case ch == '"':
			quoted, inWord = !quoted, true
		case !quoted && ch == ' ':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case (ch == '%' || ch == '$') && i+1 < len(s) && s[i+1] == ch:
			i++
			cur.WriteByte(ch)
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quoted {
		t.Fatalf("unterminated quote in ExecStart=%s", s)
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}

// TestServiceUnitStartsDaemon runs exactly the command line of the unit
// `stq service install --print` writes, with no STQ_HOME in the
// environment, and checks the daemon it starts serves jobs on the test
// home and stops within the unit's TimeoutStopSec.
func TestServiceUnitStartsDaemon(t *testing.T) {
	e := newEnv(t)
	unit := e.ok("service", "install", "--print")
	argv := splitExecStart(t, unitValue(t, unit, "ExecStart"))
	bin, err := filepath.EvalSymlinks(stqBin)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{bin, "--home", e.home, "daemon"}; strings.Join(argv, "\x00") != strings.Join(want, "\x00") {
		t.Fatalf("ExecStart words = %q, want %q", argv, want)
	}
	stopTimeout, err := strconv.Atoi(unitValue(t, unit, "TimeoutStopSec"))
	if err != nil || stopTimeout <= 15 {
		t.Fatalf("TimeoutStopSec=%d (%v): must exceed the default grace and kill grace", stopTimeout, err)
	}

	cmd := exec.Command(argv[0], argv[1:]...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STQ_HOME=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("daemon log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for e.run("stats", "--json").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the daemon the unit starts did not answer")
		}
		time.Sleep(20 * time.Millisecond)
	}
	id := e.ok("enqueue", "--", "true")
	e.ok("wait", id)

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err // for the cleanup
		if err != nil {
			t.Fatalf("daemon exit on SIGTERM: %v", err)
		}
	case <-time.After(time.Duration(stopTimeout) * time.Second):
		t.Fatalf("the daemon outlived the unit's TimeoutStopSec=%d", stopTimeout)
	}
	t.Logf("stopped in %s (TimeoutStopSec=%d)", time.Since(start).Round(time.Millisecond), stopTimeout)
}

// TestServicePlistArgsMatchUnit checks the launchd plist starts the same
// command line as the systemd unit.
func TestServicePlistArgsMatchUnit(t *testing.T) {
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	e := newEnv(t)
	unit := e.ok("service", "install", "--print", "--manager", "systemd")
	plist := e.ok("service", "install", "--print", "--manager", "launchd")
	py := exec.Command("python3", "-c", "import json,plistlib,sys; print(json.dumps(plistlib.loads(sys.stdin.buffer.read())['ProgramArguments']))")
	py.Stdin = strings.NewReader(plist)
	out, err := py.CombinedOutput()
	if err != nil {
		t.Fatalf("plist does not parse: %v\n%s", err, out)
	}
	var args []string
	if err := json.Unmarshal(out, &args); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(args, "\x00"), strings.Join(splitExecStart(t, unitValue(t, unit, "ExecStart")), "\x00"); got != want {
		t.Fatalf("plist runs %q, the unit %q", args, splitExecStart(t, unitValue(t, unit, "ExecStart")))
	}
}

// fakeSystemctl puts a systemctl on PATH that logs its arguments and says
// "enabled" to is-enabled: install and uninstall are tested without a
// user manager, which test machines do not run.
func fakeSystemctl(t *testing.T) (env []string, logPath string) {
	dir := t.TempDir()
	logPath = filepath.Join(dir, "calls")
	script := "#!/bin/sh\necho \"$*\" >> " + logPath + "\ncase \"$*\" in *is-enabled*) echo enabled ;; esac\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return []string{"PATH=" + dir + ":" + os.Getenv("PATH"), "XDG_CONFIG_HOME=" + t.TempDir()}, logPath
}

func configHome(env []string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "XDG_CONFIG_HOME="); ok {
			return v
		}
	}
	return ""
}

func readCalls(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(b)
}

type serviceState struct {
	Installed bool     `json:"installed"`
	Files     []string `json:"files"`
	Enabled   string   `json:"enabled"`
	Running   bool     `json:"running"`
	PID       int      `json:"pid"`
	Answers   bool     `json:"answers"`
}

func (e *testEnv) serviceStatus(env []string) serviceState {
	e.t.Helper()
	r := e.runWith(env, "service", "status", "--json")
	var st serviceState
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		e.t.Fatalf("service status: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	return st
}

func TestServiceInstallUninstall(t *testing.T) {
	e := newEnv(t)
	env, calls := fakeSystemctl(t)
	unitDir := filepath.Join(configHome(env), "systemd", "user")
	service := filepath.Join(unitDir, "stq.service")

	d := e.startDaemon()
	r := e.runWith(env, "service", "install")
	if r.code != 1 || !strings.Contains(r.stderr, "already runs on "+e.home) {
		t.Fatalf("install next to a running daemon: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(service); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused install wrote %s (%v)", service, err)
	}
	d.stop()

	r = e.runWith(env, "service", "install")
	if r.code != 0 {
		t.Fatalf("install: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	written, err := os.ReadFile(service)
	if err != nil {
		t.Fatal(err)
	}
	if printed := e.ok("service", "install", "--print"); strings.TrimSpace(string(written)) != printed {
		t.Fatalf("installed unit differs from --print:\n%s\n---\n%s", written, printed)
	}
	if got := readCalls(t, calls); got != "--user daemon-reload\n--user enable --now stq.service\n" {
		t.Fatalf("systemctl calls:\n%s", got)
	}
	st := e.serviceStatus(env)
	if !st.Installed || st.Enabled != "enabled" || st.Running {
		t.Fatalf("status after install, no daemon: %+v", st)
	}

	d = e.startDaemon()
	st = e.serviceStatus(env)
	if !st.Running || !st.Answers || st.PID != d.cmd.Process.Pid {
		t.Fatalf("status with the daemon (pid %d) running: %+v", d.cmd.Process.Pid, st)
	}
	d.stop()

	_ = os.Remove(calls)
	r = e.runWith(env, "service", "install", "--socket-activation")
	if r.code != 0 || !strings.Contains(r.stdout, "systemctl --user restart stq") {
		t.Fatalf("reinstall with socket activation: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	socket, err := os.ReadFile(filepath.Join(unitDir, "stq.socket"))
	if err != nil || unitValue(t, string(socket), "ListenStream") != e.path("stq.sock") {
		t.Fatalf("stq.socket (%v):\n%s", err, socket)
	}
	if got := readCalls(t, calls); got != "--user disable stq.service stq.socket\n--user daemon-reload\n--user enable --now stq.socket\n" {
		t.Fatalf("systemctl calls:\n%s", got)
	}

	_ = os.Remove(calls)
	r = e.runWith(env, "service", "uninstall")
	if r.code != 0 {
		t.Fatalf("uninstall: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := readCalls(t, calls); got != "--user disable --now stq.socket stq.service\n--user daemon-reload\n" {
		t.Fatalf("systemctl calls:\n%s", got)
	}
	if st := e.serviceStatus(env); st.Installed || st.Enabled != "no" || len(st.Files) != 0 {
		t.Fatalf("status after uninstall: %+v", st)
	}
	r = e.runWith(env, "service", "uninstall")
	if r.code != 1 || !strings.Contains(r.stderr, "no stq user unit is installed") {
		t.Fatalf("second uninstall: exit %d\n%s", r.code, r.stderr)
	}
}

// TestServiceInstallWithoutSystemctl: with no service manager to tell, the
// unit is still written, and stq says what to run once there is one.
func TestServiceInstallWithoutSystemctl(t *testing.T) {
	e := newEnv(t)
	env := []string{"PATH=" + t.TempDir(), "XDG_CONFIG_HOME=" + t.TempDir()}
	r := e.runWith(env, "service", "install")
	if r.code != 1 || !strings.Contains(r.stderr, "stq: the unit is written, but systemctl --user daemon-reload") ||
		!strings.Contains(r.stderr, "hint: once the service manager answers, run: systemctl --user daemon-reload && systemctl --user enable --now stq.service") {
		t.Fatalf("install without systemctl: exit %d\n%s", r.code, r.stderr)
	}
	service := filepath.Join(configHome(env), "systemd", "user", "stq.service")
	fi, err := os.Stat(service)
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("unit file: %v %v", fi, err)
	}
	if st := e.serviceStatus(env); !st.Installed || !strings.HasPrefix(st.Enabled, "unknown (") {
		t.Fatalf("status without systemctl: %+v", st)
	}
	// No daemon ever ran on this home, yet the token is there: the first
	// client of a socket-activated daemon reads it before connecting.
	if fi, err := os.Stat(e.path("token")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("token after install: %v %v", fi, err)
	}
}

func TestServiceBadInput(t *testing.T) {
	e := newEnv(t)
	noSudo := []string{"SUDO_USER=", "XDG_CONFIG_HOME=" + t.TempDir()}
	tests := []struct {
		name string
		args []string
		code int
		has  string
	}{
		{"both scopes", []string{"service", "install", "--user", "--system", "--print"}, 2, "--user and --system exclude each other"},
		{"an unknown manager", []string{"service", "status", "--manager", "upstart"}, 2, `invalid value "upstart" for --manager`},
		{"a system unit names its user", []string{"service", "install", "--system", "--print"}, 2, "--run-as USER"},
		{"--run-as is for --system", []string{"service", "install", "--run-as", "nobody", "--print"}, 2, "--run-as is for --system"},
		{"an unknown flag", []string{"service", "install", "--sytem"}, 2, "unknown flag --sytem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.runWith(noSudo, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.has) {
				t.Fatalf("stq %s: exit %d, want %d with %q\n%s", strings.Join(tt.args, " "), r.code, tt.code, tt.has, r.stderr)
			}
			if entries, _ := os.ReadDir(configHome(noSudo)); len(entries) != 0 {
				t.Fatalf("a refused command wrote %v", entries)
			}
		})
	}
	unit := e.runWith(noSudo, "service", "install", "--system", "--run-as", "nobody", "--print").stdout
	if unitValue(t, unit, "User") != "nobody" || unitValue(t, unit, "WantedBy") != "multi-user.target" {
		t.Fatalf("system unit:\n%s", unit)
	}
}

func TestCompletion(t *testing.T) {
	e := newEnv(t)
	for _, shell := range []string{"bash", "zsh", "fish"} {
		script := e.ok("completion", shell)
		if !strings.Contains(script, "--generate-shell-completion") {
			t.Fatalf("%s script does not ask stq for completions:\n%.300s", shell, script)
		}
		if _, err := exec.LookPath(shell); err != nil {
			t.Logf("%s is not installed: its script is not syntax-checked", shell)
			continue
		}
		check := exec.Command(shell, "-n")
		check.Stdin = strings.NewReader(script)
		if out, err := check.CombinedOutput(); err != nil {
			t.Fatalf("%s -n: %v\n%s", shell, err, out)
		}
	}
	if top := e.ok("--generate-shell-completion"); !strings.Contains(top, "\nservice:") || !strings.Contains(top, "\ncompletion:") || !strings.HasPrefix(top, "daemon:") {
		t.Fatalf("top-level completion:\n%s", top)
	}
	if sub := e.ok("service", "--generate-shell-completion"); sub != "install:write and enable a unit that runs `stq daemon` on this home\nuninstall:stop, disable and remove the unit\nstatus:say whether the unit is installed, enabled and running" {
		t.Fatalf("service subcommands:\n%s", sub)
	}
	if flags := e.ok("cancel", "--s", "--generate-shell-completion"); flags != "--subject:cancel the QUEUED and RUNNING jobs of this subject" {
		t.Fatalf("cancel --s completes to:\n%s", flags)
	}
	if got := e.ok("cancel", "--generate-shell-completion"); got != "" {
		t.Fatalf("with no daemon, job ids complete to %q", got)
	}

	e.startDaemon()
	running := e.ok("enqueue", "--queue", "build", "--subject", "long one", "--", "sleep", "60")
	done := e.ok("enqueue", "--queue", "lint", "--", "true")
	e.ok("wait", done)
	e.ok("pause", "nightly")
	short := func(id string) string {
		var jobs []struct {
			ID      string `json:"id"`
			ShortID string `json:"short_id"`
		}
		if err := json.Unmarshal([]byte(e.ok("list", "--json")), &jobs); err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.ID == id {
				return j.ShortID
			}
		}
		t.Fatalf("job %s not listed", id)
		return ""
	}
	if got, want := e.ok("cancel", "--generate-shell-completion"), short(running)+":RUNNING build exec long one"; got != want {
		t.Fatalf("cancel completes to %q, want %q (only queued and running jobs)", got, want)
	}
	if got := e.ok("show", "--generate-shell-completion"); !strings.Contains(got, short(running)+":") || !strings.Contains(got, short(done)+":DONE lint") {
		t.Fatalf("show completes to:\n%s", got)
	}
	if got := e.ok("tail", "-j", "--generate-shell-completion"); !strings.Contains(got, short(done)+":DONE") {
		t.Fatalf("tail -j completes to:\n%s", got)
	}
	for _, args := range [][]string{{"list", "--queue"}, {"wait", "-q"}, {"resume"}} {
		if got := e.ok(append(args, "--generate-shell-completion")...); got != "build\nlint\nnightly" {
			t.Fatalf("stq %s completes to %q", strings.Join(args, " "), got)
		}
	}
}
