package exec

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

func TestGateHoldsTheCommandUntilThePIDIsRecorded(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	var sawPID int
	var ranEarly bool
	run := &engine.Run{
		Job:     &engine.Job{ID: "j"},
		Command: []string{"touch", marker},
		Output:  func(string, string) {},
		Started: func(pid int, pidStart int64) {
			sawPID = pid
			// The daemon is "recording" the PID: the command must not run
			// meanwhile.
			time.Sleep(150 * time.Millisecond)
			_, err := os.Stat(marker)
			ranEarly = err == nil
		},
	}
	res := Subprocess{Gate: true}.Execute(context.Background(), run)
	if res.Err != nil || res.ExitCode == nil || *res.ExitCode != 0 {
		t.Fatalf("gated run: %+v", res)
	}
	if ranEarly {
		t.Fatal("the command ran before Started returned")
	}
	if _, err := os.Stat(marker); err != nil || sawPID <= 0 {
		t.Fatalf("the command did not run after the gate opened (pid %d): %v", sawPID, err)
	}
}

func TestAClosedGateNeverRunsTheCommand(t *testing.T) {
	t.Parallel()
	marker := filepath.Join(t.TempDir(), "ran")
	s := Subprocess{Gate: true}
	p, err := s.start(&engine.Run{Job: &engine.Job{ID: "j"}, Command: []string{"touch", marker}, Output: func(string, string) {}})
	if err != nil {
		t.Fatal(err)
	}
	// What a daemon dying before it recorded the PID looks like to the
	// child: the gate's write end closes without the go-ahead.
	p.gateOnce.Do(func() { _ = p.gate.Close() })
	res := p.finish(context.Background(), time.Second)
	if res.ExitCode == nil || *res.ExitCode != ExitGateClosed {
		t.Fatalf("closed gate: %+v, want exit %d", res, ExitGateClosed)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("the command ran although the gate never opened")
	}
}

func TestAGatedMissingCommandFailsToStart(t *testing.T) {
	t.Parallel()
	res := Subprocess{Gate: true}.Execute(context.Background(), &engine.Run{Job: &engine.Job{ID: "j"}, Command: []string{"nosuchcmd-stq-gate"}, Output: func(string, string) {}})
	if res.Err == nil || !strings.Contains(res.Err.Error(), "executable file not found") {
		t.Fatalf("missing command: %+v", res)
	}
}

func TestAGatedCommandKeepsItsArgumentsEnvironmentAndStdin(t *testing.T) {
	t.Parallel()
	var lines []string
	run := &engine.Run{
		Job:     &engine.Job{ID: "j", Payload: []byte(`{"a":1}`)},
		Command: []string{"sh", "-c", `printf '%s|%s|' "$1" "$X"; cat`, "zero", "a b"},
		Env:     []string{"X=y"},
		Output:  func(_, text string) { lines = append(lines, text) },
		Started: func(int, int64) {},
	}
	res := Subprocess{Gate: true}.Execute(context.Background(), run)
	if res.ExitCode == nil || *res.ExitCode != 0 || strings.Join(lines, "\n") != `a b|y|{"a":1}` {
		t.Fatalf("result %+v, output %q", res, lines)
	}
}
