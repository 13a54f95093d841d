package exec

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"stq/engine"
)

// escapeScript starts a grandchild in a new session, so outside the job's
// process group, holding stdin, stdout and stderr; it writes the
// grandchild's PID to the file named by $1. It returns only once the
// grandchild has left the group, so the group kill cannot reach it.
const escapeScript = `exec 3<&0
setsid sh -c 'echo $$ > "$1"; exec sleep 30' sh "$1" <&3 &
while [ ! -s "$1" ]; do sleep 0.01; done
echo hi`

func TestSubprocessExitStatus(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		argv     []string
		wantCode int // -1: no exit code
		wantSig  string
	}{
		{name: "a command that succeeds exits 0", argv: []string{"true"}, wantCode: 0},
		{name: "a command that fails exits 1", argv: []string{"false"}, wantCode: 1},
		{name: "exit 3 is reported as 3", argv: []string{"sh", "-c", "exit 3"}, wantCode: 3},
		{name: "exit 100 is reported as 100", argv: []string{"sh", "-c", "exit 100"}, wantCode: engine.ExitPermanent},
		{name: "a process killed by SIGKILL reports the signal", argv: []string{"sh", "-c", "kill -9 $$"}, wantCode: -1, wantSig: "SIGKILL"},
		{name: "a process killed by SIGTERM reports the signal", argv: []string{"sh", "-c", "kill -TERM $$"}, wantCode: -1, wantSig: "SIGTERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run, _ := newRun(tt.argv...)
			res := Subprocess{}.Execute(context.Background(), run)
			if res.Err != nil {
				t.Fatalf("Err = %v, want nil", res.Err)
			}
			switch {
			case tt.wantCode < 0 && res.ExitCode != nil:
				t.Errorf("ExitCode = %d, want none", *res.ExitCode)
			case tt.wantCode >= 0 && (res.ExitCode == nil || *res.ExitCode != tt.wantCode):
				t.Errorf("ExitCode = %v, want %d", res.ExitCode, tt.wantCode)
			}
			if res.Signal != tt.wantSig {
				t.Errorf("Signal = %q, want %q", res.Signal, tt.wantSig)
			}
		})
	}
}

func TestSubprocessStartFailures(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name    string
		ctx     context.Context
		argv    []string
		cwd     string
		wantErr string
		wantIs  error
	}{
		{
			name:    "a command that is not in PATH cannot start",
			argv:    []string{"nosuchcmd-stq"},
			wantErr: `start "nosuchcmd-stq": executable file not found in $PATH`,
			wantIs:  osexec.ErrNotFound,
		},
		{
			name:    "a missing working directory stops the start",
			argv:    []string{"true"},
			cwd:     "/nonexistent-stq-dir",
			wantErr: `start "true": working directory: stat /nonexistent-stq-dir: no such file or directory`,
			wantIs:  fs.ErrNotExist,
		},
		{
			name:    "an empty command is a permanent failure",
			wantErr: "start job: empty command: permanent failure",
			wantIs:  engine.ErrPermanent,
		},
		{
			name:    "a context that is already done starts nothing",
			ctx:     cancelled,
			argv:    []string{"true"},
			wantErr: `start "true": context canceled`,
			wantIs:  context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := tt.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			run, _ := newRun(tt.argv...)
			run.Job.Cwd = tt.cwd
			run.Started = func(pid int, _ int64) { t.Errorf("Started(%d) called for a process that never started", pid) }
			res := Subprocess{}.Execute(ctx, run)
			if res.Err == nil || res.Err.Error() != tt.wantErr {
				t.Fatalf("Err = %v, want %q", res.Err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(res.Err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", res.Err, tt.wantIs)
			}
			if res.ExitCode != nil || res.Signal != "" {
				t.Errorf("ExitCode = %v, Signal = %q, want neither", res.ExitCode, res.Signal)
			}
		})
	}
}

// Not parallel: t.Setenv changes the test process's environment.
func TestSubprocessEnvironment(t *testing.T) {
	t.Setenv("STQ_TEST_INHERITED", "from-daemon")
	t.Setenv("STQ_TEST_OVERRIDDEN", "from-daemon")
	tests := []struct {
		name string
		env  []string
		expr string
		want string
	}{
		{name: "an addition is visible to the process", env: []string{"STQ_TEST_ADDED=hello"}, expr: "$STQ_TEST_ADDED", want: "hello"},
		{name: "an addition overrides the daemon's value", env: []string{"STQ_TEST_OVERRIDDEN=from-job"}, expr: "$STQ_TEST_OVERRIDDEN", want: "from-job"},
		{name: "the daemon's environment is inherited", expr: "$STQ_TEST_INHERITED", want: "from-daemon"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, out := newRun("sh", "-c", `printf '%s\n' "`+tt.expr+`"`)
			run.Env = tt.env
			res := Subprocess{}.Execute(context.Background(), run)
			if res.Err != nil || res.ExitCode == nil || *res.ExitCode != 0 {
				t.Fatalf("Execute = %+v, want exit 0", res)
			}
			if got := out.stream("stdout"); !slices.Equal(got, []string{tt.want}) {
				t.Errorf("stdout = %q, want [%q]", got, tt.want)
			}
		})
	}
}

func TestSubprocessStdin(t *testing.T) {
	t.Parallel()
	big := []byte(`"` + strings.Repeat("x", 1<<20) + `"`)
	tests := []struct {
		name    string
		argv    []string
		payload string
		want    []string
	}{
		{name: "the payload is the process's stdin", argv: []string{"cat"}, payload: `{"n":1}`, want: []string{`{"n":1}`}},
		{name: "without a payload stdin is empty", argv: []string{"cat"}},
		{name: "a large payload the process ignores does not block", argv: []string{"true"}, payload: string(big)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run, out := newRun(tt.argv...)
			run.Job.Payload = []byte(tt.payload)
			res := Subprocess{}.Execute(context.Background(), run)
			if res.Err != nil || res.ExitCode == nil || *res.ExitCode != 0 {
				t.Fatalf("Execute = %+v, want exit 0", res)
			}
			if got := out.stream("stdout"); !slices.Equal(got, tt.want) {
				t.Errorf("stdout = %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("a large payload held by an escaped grandchild does not block", func(t *testing.T) {
		t.Parallel()
		pidFile := filepath.Join(t.TempDir(), "pid")
		run, _ := newRun("sh", "-c", escapeScript, "sh", pidFile)
		run.Job.Payload = big
		begin := time.Now()
		res := Subprocess{}.Execute(context.Background(), run)
		elapsed := time.Since(begin)
		killOnCleanup(t, readPID(t, pidFile))
		if res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("Execute = %+v, want exit 0", res)
		}
		if elapsed > 5*time.Second {
			t.Errorf("Execute took %s, want well under the grandchild's 30s", elapsed)
		}
	})
}

func TestSubprocessWorkingDirectory(t *testing.T) {
	t.Parallel()
	t.Run("the job's cwd is the process's working directory", func(t *testing.T) {
		t.Parallel()
		dir, err := filepath.EvalSymlinks(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		run, out := newRun("pwd", "-P")
		run.Job.Cwd = dir
		if res := (Subprocess{}).Execute(context.Background(), run); res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("Execute = %+v, want exit 0", res)
		}
		if got := out.stream("stdout"); !slices.Equal(got, []string{dir}) {
			t.Errorf("stdout = %q, want [%q]", got, dir)
		}
	})
}

func TestSubprocessOutput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		script     string
		maxLine    int
		wantStdout []string
		wantStderr []string
	}{
		{
			name:       "stdout and stderr lines keep their stream",
			script:     `echo out1; echo err1 >&2; echo out2; echo err2 >&2`,
			wantStdout: []string{"out1", "out2"},
			wantStderr: []string{"err1", "err2"},
		},
		{
			name:       "a final line without a newline is kept",
			script:     `printf 'a\nb'; printf 'e' >&2`,
			wantStdout: []string{"a", "b"},
			wantStderr: []string{"e"},
		},
		{
			name:       "empty lines are kept",
			script:     `printf 'a\n\nb\n'`,
			wantStdout: []string{"a", "", "b"},
		},
		{
			name:       "CRLF line endings are trimmed",
			script:     `printf 'a\r\nb\r\n'`,
			wantStdout: []string{"a", "b"},
		},
		{
			name:       "a line longer than the bound is split",
			script:     `printf '%040d\n' 0`,
			maxLine:    16,
			wantStdout: []string{strings.Repeat("0", 16), strings.Repeat("0", 16), strings.Repeat("0", 8)},
		},
		{
			name:       "a line exactly at the bound is not split",
			script:     `printf '%016d\n' 0`,
			maxLine:    16,
			wantStdout: []string{strings.Repeat("0", 16)},
		},
		{
			name:       "a split does not cut a rune in two",
			script:     `printf 'aaaaaaaaaaaaaaa\303\251b\n'`,
			maxLine:    16,
			wantStdout: []string{strings.Repeat("a", 15), "éb"},
		},
		{
			name:       "a line without any newline is split at the default bound",
			script:     `head -c 150000 /dev/zero | tr '\0' a`,
			wantStdout: []string{strings.Repeat("a", DefaultMaxLine), strings.Repeat("a", DefaultMaxLine), strings.Repeat("a", 150000-2*DefaultMaxLine)},
		},
		{
			name:       "invalid UTF-8 is made valid",
			script:     `printf 'a\377b\n'; printf 'c\303\n' >&2`,
			wantStdout: []string{"a\uFFFDb"},
			wantStderr: []string{"c\uFFFD"},
		},
		{
			name:   "a silent process writes no lines",
			script: `exit 0`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			run, out := newRun("sh", "-c", tt.script)
			res := Subprocess{MaxLine: tt.maxLine}.Execute(context.Background(), run)
			if res.Err != nil || res.ExitCode == nil || *res.ExitCode != 0 {
				t.Fatalf("Execute = %+v, want exit 0", res)
			}
			if got := out.stream("stdout"); !slices.Equal(got, tt.wantStdout) {
				t.Errorf("stdout = %.200q, want %.200q", got, tt.wantStdout)
			}
			if got := out.stream("stderr"); !slices.Equal(got, tt.wantStderr) {
				t.Errorf("stderr = %q, want %q", got, tt.wantStderr)
			}
		})
	}
}

func TestSubprocessGrandchildren(t *testing.T) {
	t.Parallel()

	t.Run("a grandchild holding stdout does not keep Execute waiting and dies with the group", func(t *testing.T) {
		t.Parallel()
		run, out := newRun("sh", "-c", `sleep 30 & echo $!; echo hi`)
		begin := time.Now()
		res := Subprocess{}.Execute(context.Background(), run)
		if elapsed := time.Since(begin); elapsed > 5*time.Second {
			t.Errorf("Execute took %s, want well under the grandchild's 30s", elapsed)
		}
		if res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("Execute = %+v, want exit 0", res)
		}
		lines := out.stream("stdout")
		grandchild := atoiLine(t, lines, 0)
		if !slices.Equal(lines[1:], []string{"hi"}) {
			t.Errorf("stdout = %q, want the pid then hi", lines)
		}
		waitGone(t, grandchild)
	})

	t.Run("a grandchild in a new session does not keep Execute waiting", func(t *testing.T) {
		t.Parallel()
		pidFile := filepath.Join(t.TempDir(), "pid")
		run, out := newRun("sh", "-c", escapeScript, "sh", pidFile)
		begin := time.Now()
		res := Subprocess{}.Execute(context.Background(), run)
		elapsed := time.Since(begin)
		grandchild := readPID(t, pidFile)
		killOnCleanup(t, grandchild)
		if elapsed > 5*time.Second {
			t.Errorf("Execute took %s, want about the drain timeout", elapsed)
		}
		if res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("Execute = %+v, want exit 0", res)
		}
		if got := out.stream("stdout"); !slices.Equal(got, []string{"hi"}) {
			t.Errorf("stdout = %q, want [hi]", got)
		}
		// It left the group, so it is out of reach; this checks that the
		// test exercised the escape rather than a group kill.
		if gone(grandchild) {
			t.Errorf("grandchild %d is gone; want it to have escaped the group", grandchild)
		}
	})
}

func TestSubprocessStop(t *testing.T) {
	t.Parallel()
	errCancelled := errors.New("cancelled by test")

	t.Run("a deadline stops the leader and its grandchild", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithTimeoutCause(context.Background(), time.Second, errors.New("deadline"))
		defer cancel()
		run, out := newRun("sh", "-c", `sleep 30 & echo $!; wait`)
		run.Grace = 20 * time.Second
		var leader int
		run.Started = func(pid int, _ int64) { leader = pid }
		begin := time.Now()
		res := Subprocess{}.Execute(ctx, run)
		if elapsed := time.Since(begin); elapsed > 10*time.Second {
			t.Errorf("Execute took %s, want about the 1s deadline", elapsed)
		}
		if res.Signal != "SIGTERM" {
			t.Errorf("Execute = %+v, want killed by SIGTERM", res)
		}
		grandchild := atoiLine(t, out.stream("stdout"), 0)
		waitGone(t, grandchild)
		if !gone(leader) {
			t.Errorf("leader %d still runs", leader)
		}
	})

	t.Run("a cancel stops the process with SIGTERM", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		run, out := newRun("sh", "-c", `echo ready; exec sleep 30`)
		run.Grace = 20 * time.Second
		out.onLine = func(_, text string) {
			if text == "ready" {
				cancel(errCancelled)
			}
		}
		begin := time.Now()
		res := Subprocess{}.Execute(ctx, run)
		if elapsed := time.Since(begin); elapsed > 10*time.Second {
			t.Errorf("Execute took %s, want it to stop at once", elapsed)
		}
		if res.Signal != "SIGTERM" || res.ExitCode != nil || res.Err != nil {
			t.Errorf("Execute = %+v, want killed by SIGTERM", res)
		}
	})

	t.Run("a group that ignores SIGTERM is killed after the grace period", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancelCause(context.Background())
		defer cancel(nil)
		run, out := newRun("sh", "-c", `trap '' TERM; sleep 30 & echo $!; wait`)
		run.Grace = 300 * time.Millisecond
		var once sync.Once
		out.onLine = func(string, string) { once.Do(func() { cancel(errCancelled) }) }
		begin := time.Now()
		res := Subprocess{}.Execute(ctx, run)
		elapsed := time.Since(begin)
		if res.Signal != "SIGKILL" {
			t.Errorf("Execute = %+v, want killed by SIGKILL", res)
		}
		if elapsed < run.Grace || elapsed > 10*time.Second {
			t.Errorf("Execute took %s, want a little over the %s grace", elapsed, run.Grace)
		}
		waitGone(t, atoiLine(t, out.stream("stdout"), 0))
	})
}

func TestSubprocessStarted(t *testing.T) {
	t.Parallel()
	t.Run("Started gets the process's pid and start time", func(t *testing.T) {
		t.Parallel()
		run, out := newRun("sh", "-c", `echo $$`)
		var calls, gotPID int
		var gotStart int64
		run.Started = func(pid int, pidStart int64) {
			calls++
			gotPID, gotStart = pid, pidStart
		}
		before := time.Now().UnixMilli()
		res := Subprocess{}.Execute(context.Background(), run)
		after := time.Now().UnixMilli()
		if res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("Execute = %+v, want exit 0", res)
		}
		if calls != 1 {
			t.Fatalf("Started called %d times, want once", calls)
		}
		if want := atoiLine(t, out.stream("stdout"), 0); gotPID != want {
			t.Errorf("Started pid = %d, want %d", gotPID, want)
		}
		// The reading is whole clock ticks plus a boot time in whole
		// seconds: allow StartTolerance either side.
		if gotStart < before-StartTolerance || gotStart > after+StartTolerance {
			t.Errorf("Started start time = %d, want within [%d, %d]", gotStart, before, after)
		}
	})
}

// Not parallel, so that the goroutine count is not moved by other tests.
func TestSubprocessLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	pidFile := filepath.Join(t.TempDir(), "pid")
	deadline, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	runs := []struct {
		ctx  context.Context
		argv []string
		in   string
	}{
		{context.Background(), []string{"true"}, ""},
		{context.Background(), []string{"cat"}, "payload"},
		{context.Background(), []string{"sh", "-c", `sleep 30 & echo hi`}, ""},
		{context.Background(), []string{"sh", "-c", escapeScript, "sh", pidFile}, strings.Repeat("x", 1<<20)},
		{deadline, []string{"sleep", "30"}, ""},
		{context.Background(), []string{"nosuchcmd-stq"}, ""},
	}
	for _, r := range runs {
		run, _ := newRun(r.argv...)
		run.Job.Payload = []byte(r.in)
		Subprocess{}.Execute(r.ctx, run)
	}
	killOnCleanup(t, readPID(t, pidFile))
	if after := settledGoroutines(before); after > before {
		t.Errorf("%d goroutines before the runs, %d after", before, after)
	}
}

func BenchmarkSubprocessTrue(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		run, _ := newRun("true")
		if res := (Subprocess{}).Execute(context.Background(), run); res.ExitCode == nil || *res.ExitCode != 0 {
			b.Fatalf("Execute = %+v, want exit 0", res)
		}
	}
}

// BenchmarkSubprocessTrueStarted adds the start-time lookup the daemon's
// Started callback triggers.
func BenchmarkSubprocessTrueStarted(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		run, _ := newRun("true")
		run.Started = func(int, int64) {}
		if res := (Subprocess{}).Execute(context.Background(), run); res.ExitCode == nil || *res.ExitCode != 0 {
			b.Fatalf("Execute = %+v, want exit 0", res)
		}
	}
}

// What a job wrote just before it exited is still in the pipe when its
// group is dead. A reader slower than one drain period (a loaded machine,
// a slow consumer) must still get all of it: the drain only gives up on a
// reader that stopped delivering, as one blocked on an escaped holder.
func TestOutputLeftInThePipeIsReadToTheEnd(t *testing.T) {
	t.Parallel()
	const n = 1000 // about 9 KB: fits the pipe buffer, so the job exits first
	run, out := newRun("sh", "-c", `i=0; while [ $i -lt 1000 ]; do echo line-$i; i=$((i+1)); done`)
	slow := run.Output
	run.Output = func(stream, text string) {
		time.Sleep(200 * time.Microsecond) // 1000 lines: 0.2 s at least, many drain periods
		slow(stream, text)
	}
	res := Subprocess{DrainTimeout: 20 * time.Millisecond}.Execute(context.Background(), run)
	if res.ExitCode == nil || *res.ExitCode != 0 {
		t.Fatalf("Execute = %+v, want exit 0", res)
	}
	got := out.stream("stdout")
	if len(got) != n || got[n-1] != fmt.Sprintf("line-%d", n-1) {
		t.Fatalf("got %d lines (last %q), want all %d", len(got), got[max(len(got)-1, 0):], n)
	}
}
