package main

// The CLI's contract as script tests: each testdata/script/*.txtar file is
// a short story that runs stq as a user types it, a real daemon in the
// background on the script's own home. Run one with
// `go test -run TestScripts/NAME .`; rewrite the golden files inside the
// scripts from what stq prints with `go test -run TestScripts . -update`.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"stq/commands"
)

var update = flag.Bool("update", false, "rewrite the golden files inside testdata/script/*.txtar from what stq prints")

// TestMain makes this test binary the scripts' `stq`: testscript puts a
// copy named stq on the scripts' PATH, and a copy run under that name runs
// the CLI itself.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"stq": func() {
			os.Exit(commands.Main(context.Background(), os.Args, "v0.0.0-script", os.Stdin, os.Stdout, os.Stderr))
		},
	})
}

func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:   filepath.Join("testdata", "script"),
		Setup: setupHome,
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"exits":   cmdExits,
			"capture": cmdCapture,
			"waitfor": cmdWaitfor,
		},
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       *update,
	})
}

// setupHome gives every script a home of its own, $STQ_HOME, inside its
// $WORK (short enough for a Unix socket path under the usual temp dirs),
// so scripts run in parallel and leave nothing behind.
func setupHome(env *testscript.Env) error {
	env.Setenv("STQ_HOME", filepath.Join(env.WorkDir, "h"))
	env.Setenv("NO_COLOR", "1")
	// A race-built stq sleeps a second at exit unless told not to.
	env.Setenv("GORACE", "atexit_sleep_ms=0 halt_on_error=1")
	return nil
}

// cmdExits runs a command that must end with one exit status, since the
// README promises each code:
//
//	exits 2 stq frobnicate
//
// stdout and stderr are then the command's, as after exec.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("exits takes no '!': name the exit status instead")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exits CODE command [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: %q is not an exit status", args[0])
	}
	got := 0
	var ee *exec.ExitError
	if err := ts.Exec(args[1], args[2:]...); errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		ts.Fatalf("exits: %v", err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", strings.Join(args[1:], " "), got, want)
	}
}

// cmdCapture keeps the last command's stdout, trimmed, in an environment
// variable, so a script can name the job id that `stq enqueue` printed:
//
//	exec stq enqueue -- true
//	capture ID
//	exec stq wait $ID
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: capture NAME")
	}
	ts.Setenv(args[0], strings.TrimSpace(ts.ReadFile("stdout")))
}

// cmdWaitfor waits, up to 30 s, until the daemon answers `stq stats`
// ("waitfor daemon") or until `stq show` says a job is in a state
// ("waitfor ID RUNNING"). Scripts use it instead of sleeping: a daemon
// starting and a job starting take however long they take.
func cmdWaitfor(ts *testscript.TestScript, neg bool, args []string) {
	var args2 []string
	var done func(stdout string) bool
	switch {
	case !neg && len(args) == 1 && args[0] == "daemon":
		args2 = []string{"stats", "--json"}
		done = func(string) bool { return true }
	case !neg && len(args) == 2:
		args2 = []string{"show", "--json", args[0]}
		done = func(stdout string) bool {
			var j struct {
				State string `json:"state"`
			}
			return json.Unmarshal([]byte(stdout), &j) == nil && j.State == args[1]
		}
	default:
		ts.Fatalf("usage: waitfor daemon | waitfor JOB-ID STATE")
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := scriptStq(ts, args2...).Output()
		if err == nil && done(string(out)) {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("waitfor %s: not after 30s (last: stq %s: %v, %s)", strings.Join(args, " "), strings.Join(args2, " "), err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// scriptStq is `stq args...` with the script's home and environment, run
// quietly: waitfor polls, and a log of every poll would hide the story.
func scriptStq(ts *testscript.TestScript, args ...string) *exec.Cmd {
	c := exec.Command("stq", args...)
	c.Env = os.Environ()
	for _, k := range []string{"PATH", "HOME", "STQ_HOME", "NO_COLOR", "GORACE"} {
		c.Env = append(c.Env, k+"="+ts.Getenv(k))
	}
	return c
}
