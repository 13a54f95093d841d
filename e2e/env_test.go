package e2e

// The caller's environment (issue 10, §6): a job enqueued from a shell with
// PATH changed or a virtualenv active runs with that shell's environment,
// not the daemon's, unless it asks for the daemon's.

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// envScript prints what the tests look at: a variable only the caller has,
// one only the daemon has, and where mytool comes from.
const envScript = `echo "var=[$MY_VAR] daemon=[$STQ_E2E_DAEMON_ONLY]"; command -v mytool || echo "no mytool"`

// callerShell is a shell as a user has it: a tool directory first in PATH and
// a variable of its own.
type callerShell struct {
	e     *testEnv
	tools string
}

func newCallerShell(t *testing.T, e *testEnv) *callerShell {
	t.Helper()
	tools := t.TempDir()
	if err := os.WriteFile(filepath.Join(tools, "mytool"), []byte("#!/bin/sh\necho \"mytool ran with MY_VAR=[$MY_VAR]\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &callerShell{e: e, tools: tools}
}

// cmd is `stq ARGS...` started from the caller's shell.
func (s *callerShell) cmd(args ...string) *exec.Cmd {
	c := s.e.cmd(args...)
	c.Env = append(c.Env, "MY_VAR=from-shell", "PATH="+s.tools+string(os.PathListSeparator)+os.Getenv("PATH"))
	return c
}

// enqueue runs `stq enqueue ARGS...` from the shell and returns the id.
func (s *callerShell) enqueue(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.cmd(append([]string{"enqueue"}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("enqueue %v: %v\n%s", args, err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// output waits for the job to end DONE and returns its log.
func (e *testEnv) output(t *testing.T, id string) string {
	t.Helper()
	if r := e.run("wait", id); r.code != 0 {
		t.Fatalf("wait %s: exit %d: %s%s\n%s", id, r.code, r.stdout, r.stderr, e.ok("tail", id))
	}
	return e.ok("tail", id)
}

func wantLog(t *testing.T, what, log string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(log, w) {
			t.Errorf("%s: log lacks %q:\n%s", what, w, log)
		}
	}
}

// jobBaseEnv is a job's base_env member as show --json prints it.
func (e *testEnv) jobBaseEnv(t *testing.T, id string) *struct {
	SHA256 string `json:"sha256"`
	Vars   int    `json:"vars"`
} {
	t.Helper()
	var j struct {
		BaseEnv *struct {
			SHA256 string `json:"sha256"`
			Vars   int    `json:"vars"`
		} `json:"base_env"`
	}
	if err := json.Unmarshal([]byte(e.ok("show", "--json", id)), &j); err != nil {
		t.Fatal(err)
	}
	return j.BaseEnv
}

func TestAJobRunsWithItsCallersEnvironment(t *testing.T) {
	// Only the daemon has STQ_E2E_DAEMON_ONLY: it is set while the daemon
	// starts and gone before any client runs.
	t.Setenv("STQ_E2E_DAEMON_ONLY", "yes")
	e := newEnv(t)
	e.startDaemon("--workers", "2")
	os.Unsetenv("STQ_E2E_DAEMON_ONLY")
	sh := newCallerShell(t, e)

	t.Run("by default the job sees the caller's variables and PATH, not the daemon's", func(t *testing.T) {
		id := sh.enqueue(t, "--", "sh", "-c", envScript)
		wantLog(t, "caller's environment", e.output(t, id), "var=[from-shell] daemon=[]", filepath.Join(sh.tools, "mytool"))
		env := e.jobBaseEnv(t, id)
		if env == nil || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(env.SHA256) || env.Vars < 3 {
			t.Fatalf("show --json base_env = %+v, want a sha256 and a count", env)
		}
		if human := e.ok("show", id); !strings.Contains(human, fmt.Sprintf("the caller's, %d variables (sha256 %s)", env.Vars, env.SHA256[:12])) {
			t.Errorf("show does not say which environment:\n%s", human)
		}
		// Identical environments are one: a second job from the same shell
		// has the same digest.
		again := sh.enqueue(t, "--", "true")
		e.output(t, again)
		if env2 := e.jobBaseEnv(t, again); env2 == nil || env2.SHA256 != env.SHA256 {
			t.Errorf("a second job from the same shell has base_env %+v, want digest %s", env2, env.SHA256)
		}
	})

	t.Run("the command itself is found in the caller's PATH", func(t *testing.T) {
		id := sh.enqueue(t, "--", "mytool")
		wantLog(t, "program from the caller's PATH", e.output(t, id), "mytool ran with MY_VAR=[from-shell]")
	})

	t.Run("--env overrides the caller's variable", func(t *testing.T) {
		id := sh.enqueue(t, "--env", "MY_VAR=override", "--", "sh", "-c", envScript)
		wantLog(t, "--env on top", e.output(t, id), "var=[override] daemon=[]", filepath.Join(sh.tools, "mytool"))
	})

	t.Run("--daemon-env runs the job with the daemon's environment", func(t *testing.T) {
		id := sh.enqueue(t, "--daemon-env", "--", "sh", "-c", envScript)
		wantLog(t, "daemon's environment", e.output(t, id), "var=[] daemon=[yes]", "no mytool")
		if env := e.jobBaseEnv(t, id); env != nil {
			t.Errorf("a --daemon-env job has base_env %+v, want null", env)
		}
		if human := e.ok("show", id); !strings.Contains(human, "the daemon's") {
			t.Errorf("show does not say the daemon's environment:\n%s", human)
		}
		id = sh.enqueue(t, "--daemon-env", "--env", "MY_VAR=added", "--", "sh", "-c", envScript)
		wantLog(t, "daemon's environment plus --env", e.output(t, id), "var=[added] daemon=[yes]")
	})

	t.Run("a socket client that sends no base_env gets the daemon's environment", func(t *testing.T) {
		r := e.dialRaw()
		r.auth(e.token())
		params, _ := json.Marshal(map[string]any{"command": []string{"sh", "-c", envScript}, "cwd": "/", "env": map[string]string{"MY_VAR": "socket"}})
		r.send(`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":` + string(params) + `}`)
		rep, ok := r.recv()
		if !ok || rep.Error != nil {
			t.Fatalf("enqueue over the socket: %+v", rep.Error)
		}
		var res struct {
			Job struct {
				ID      string          `json:"id"`
				BaseEnv json.RawMessage `json:"base_env"`
			} `json:"job"`
		}
		if err := json.Unmarshal(rep.Result, &res); err != nil {
			t.Fatal(err)
		}
		if string(res.Job.BaseEnv) != "null" {
			t.Errorf("job of a client without base_env has base_env %s, want null", res.Job.BaseEnv)
		}
		wantLog(t, "socket client", e.output(t, res.Job.ID), "var=[socket] daemon=[yes]", "no mytool")
	})

	t.Run("a job enqueued from inside a job gets its own STQ variables and keeps STQ_HOME", func(t *testing.T) {
		inner := `id=$("$STQ" enqueue -- sh -c 'echo "inner job=[$STQ_JOB_ID] var=[$MY_VAR]"') && "$STQ" wait "$id" >/dev/null && echo "inner=$id"`
		c := sh.cmd("enqueue", "--env", "STQ="+stqBin, "--", "sh", "-c", inner)
		out, err := c.Output()
		if err != nil {
			t.Fatalf("enqueue: %v", err)
		}
		outer := strings.TrimSpace(string(out))
		log := e.output(t, outer)
		m := regexp.MustCompile(`inner=(\S+)`).FindStringSubmatch(log)
		if m == nil {
			t.Fatalf("the outer job did not enqueue the inner one:\n%s", log)
		}
		wantLog(t, "inner job", e.output(t, m[1]), fmt.Sprintf("inner job=[%s] var=[from-shell]", m[1]))
	})

	t.Run("batch lines without base_env get the caller's environment unless --daemon-env", func(t *testing.T) {
		line := func(extra string) string {
			return `{"command":["sh","-c",` + strconvQuote(envScript) + `]` + extra + `}`
		}
		input := line("") + "\n" + line(`,"base_env":{"MY_VAR":"from-line","PATH":"/usr/bin:/bin"}`) + "\n"
		c := sh.cmd("enqueue", "--batch", "-")
		c.Stdin = strings.NewReader(input)
		out, err := c.Output()
		if err != nil {
			t.Fatalf("enqueue --batch: %v", err)
		}
		ids := strings.Fields(string(out))
		if len(ids) != 2 {
			t.Fatalf("enqueue --batch printed %q", out)
		}
		wantLog(t, "batch line without base_env", e.output(t, ids[0]), "var=[from-shell] daemon=[]", filepath.Join(sh.tools, "mytool"))
		wantLog(t, "batch line with its own base_env", e.output(t, ids[1]), "var=[from-line] daemon=[]", "no mytool")

		c = sh.cmd("enqueue", "--batch", "-", "--daemon-env")
		c.Stdin = strings.NewReader(line("") + "\n")
		out, err = c.Output()
		if err != nil {
			t.Fatalf("enqueue --batch --daemon-env: %v", err)
		}
		wantLog(t, "batch with --daemon-env", e.output(t, strings.TrimSpace(string(out))), "var=[] daemon=[yes]", "no mytool")
	})
}

func strconvQuote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
