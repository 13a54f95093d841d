package mcpserver

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestEndToEnd drives `stq mcp` the way an agent does: the real binary,
// a real daemon, and the SDK's client over the command's stdio.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the stq binary and runs a daemon")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	bin := buildStq(t)
	home := shortHome(t)
	startDaemon(t, bin, home)
	cs := connect(t, ctx, bin, home)

	t.Run("tools", func(t *testing.T) {
		want := []string{"cancel", "enqueue", "list", "logs", "retry", "show", "stats", "wait"}
		var got []string
		for tool, err := range cs.Tools(ctx, nil) {
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, tool.Name)
			schema, ok := tool.InputSchema.(map[string]any)
			if !ok || schema["type"] != "object" {
				t.Errorf("%s: input schema %v, want an object schema", tool.Name, tool.InputSchema)
			}
			if tool.Description == "" {
				t.Errorf("%s: no description", tool.Name)
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("tools = %v, want %v", got, want)
		}
	})

	script := `for i in $(seq 1 50); do echo line $i; done`
	echo := callOK[enqueueOut](t, ctx, cs, "enqueue", map[string]any{"command": []string{"sh", "-c", script}})
	if echo.ID == "" || echo.State != "QUEUED" {
		t.Fatalf("enqueue = %+v", echo)
	}

	t.Run("wait", func(t *testing.T) {
		d := callOK[waitOut](t, ctx, cs, "wait", map[string]any{"id": echo.ID, "timeout": "20s", "lines": 10})
		if d.State != "DONE" || d.TimedOut || d.ExitCode == nil || *d.ExitCode != 0 || d.Duration == "" {
			t.Fatalf("digest = %+v", d)
		}
		if len(d.Lines) != 10 || d.Lines[9].Text != "line 50" || d.Lines[0].Text != "line 41" || !d.LogTruncated {
			t.Errorf("digest lines %+v, log_truncated %v; want lines 41..50 and log_truncated", d.Lines, d.LogTruncated)
		}
		whole := callOK[waitOut](t, ctx, cs, "wait", map[string]any{"id": echo.ID, "lines": 200})
		if len(whole.Lines) != 50 || whole.LogTruncated {
			t.Errorf("digest of 200 lines: %d lines, log_truncated %v; want 50, false", len(whole.Lines), whole.LogTruncated)
		}
	})

	t.Run("logs", func(t *testing.T) {
		w := callOK[logsOut](t, ctx, cs, "logs", map[string]any{"id": echo.ID, "offset": 10, "limit": 5})
		var texts []string
		for _, l := range w.Lines {
			texts = append(texts, l.Text)
		}
		want := []string{"line 11", "line 12", "line 13", "line 14", "line 15"}
		if !slices.Equal(texts, want) || w.NextOffset != 15 || !w.More {
			t.Errorf("logs = %+v; want %v, next_offset 15, more", w, want)
		}
		end := callOK[logsOut](t, ctx, cs, "logs", map[string]any{"id": echo.ID, "offset": 45})
		if len(end.Lines) != 5 || end.NextOffset != 50 || end.More {
			t.Errorf("logs after 45 = %+v; want 5 lines, next_offset 50, no more", end)
		}
	})

	t.Run("cancel and retry", func(t *testing.T) {
		sleeper := callOK[enqueueOut](t, ctx, cs, "enqueue", map[string]any{"command": []string{"sleep", "30"}, "subject": "sleeper"})
		waitForState(t, ctx, cs, sleeper.ID, "RUNNING")
		c := callOK[cancelOut](t, ctx, cs, "cancel", map[string]any{"id": sleeper.ID})
		if !slices.Equal(c.Cancelled, []string{sleeper.ID}) {
			t.Fatalf("cancel = %+v, want [%s]", c, sleeper.ID)
		}
		job := callOK[jobOut](t, ctx, cs, "show", map[string]any{"id": sleeper.ID})
		if job.State != "CANCELLED" || len(job.Attempts) == 0 || !slices.Equal(job.Command, []string{"sleep", "30"}) {
			t.Errorf("show after cancel = %+v", job)
		}
		d := callOK[waitOut](t, ctx, cs, "wait", map[string]any{"id": sleeper.ID, "timeout": "5s"})
		if d.State != "CANCELLED" || d.TimedOut {
			t.Errorf("wait after cancel = %+v", d)
		}
		// Cancelling it again is refused by the daemon, as a tool error.
		if text := callErr(t, ctx, cs, "cancel", map[string]any{"id": sleeper.ID}); !strings.Contains(text, "finished") {
			t.Errorf("second cancel: %q", text)
		}

		r := callOK[jobSummary](t, ctx, cs, "retry", map[string]any{"id": sleeper.ID})
		if r.ID != sleeper.ID || (r.State != "QUEUED" && r.State != "RUNNING") {
			t.Errorf("retry = %+v", r)
		}
		c = callOK[cancelOut](t, ctx, cs, "cancel", map[string]any{"subject": "sleeper"})
		if !slices.Equal(c.Cancelled, []string{sleeper.ID}) {
			t.Errorf("cancel by subject = %+v, want [%s]", c, sleeper.ID)
		}
	})

	t.Run("list", func(t *testing.T) {
		done := callOK[listOut](t, ctx, cs, "list", map[string]any{"state": []string{"done"}})
		if len(done.Jobs) != 1 || done.Jobs[0].ID != echo.ID || done.NextCursor != "" {
			t.Errorf("list done = %+v, want just %s", done, echo.ID)
		}
		first := callOK[listOut](t, ctx, cs, "list", map[string]any{"limit": 1})
		if len(first.Jobs) != 1 || first.NextCursor == "" {
			t.Fatalf("list limit 1 = %+v, want one job and a cursor", first)
		}
		second := callOK[listOut](t, ctx, cs, "list", map[string]any{"limit": 1, "cursor": first.NextCursor})
		if len(second.Jobs) != 1 || second.Jobs[0].ID == first.Jobs[0].ID {
			t.Errorf("second page = %+v after %+v", second, first)
		}
	})

	t.Run("stats", func(t *testing.T) {
		st := callOK[statsOut](t, ctx, cs, "stats", nil)
		q := st.Queues["default"]
		if q["DONE"] != 1 || q["CANCELLED"] != 1 || st.Workers < 1 || st.Paused == nil {
			t.Errorf("stats = %+v", st)
		}
	})

	t.Run("daemon errors", func(t *testing.T) {
		if text := callErr(t, ctx, cs, "show", map[string]any{"id": "nope"}); !strings.Contains(text, "not found") {
			t.Errorf("show of an unknown id: %q", text)
		}
		if text := callErr(t, ctx, cs, "enqueue", map[string]any{"type": "exec"}); text == "" {
			t.Error("enqueue of an exec job without a command: empty error")
		}
	})

	t.Run("no daemon", func(t *testing.T) {
		empty := connect(t, ctx, bin, shortHome(t))
		if text := callErr(t, ctx, empty, "stats", nil); !strings.Contains(text, "stq daemon") {
			t.Errorf("stats without a daemon: %q, want it to name `stq daemon`", text)
		}
	})
}

// buildStq builds the stq binary into a temporary directory.
func buildStq(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "stq")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// shortHome makes a home directory whose socket path fits in sun_path,
// which t.TempDir's long paths may not.
func shortHome(t *testing.T) string {
	t.Helper()
	home, err := os.MkdirTemp("/tmp", "stqmcp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	return home
}

// startDaemon runs `stq daemon` on home until the test ends, and returns
// once it accepts connections.
func startDaemon(t *testing.T, bin, home string) {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--home", home, "daemon", "--workers", "2", "--grace", "1s")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	daemonLog := func() string {
		b, _ := os.ReadFile(logPath)
		return string(b)
	}
	t.Cleanup(func() {
		defer logFile.Close()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
			t.Errorf("daemon did not stop within 10s of SIGTERM:\n%s", daemonLog())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, sockErr := os.Stat(filepath.Join(home, "stq.sock"))
		_, tokErr := os.Stat(filepath.Join(home, "token"))
		if sockErr == nil && tokErr == nil {
			return
		}
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("daemon exited before listening (%v):\n%s", err, daemonLog())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not listening after 10s:\n%s", daemonLog())
		}
	}
}

// connect starts `stq mcp` on home and connects the SDK's client to it.
func connect(t *testing.T, ctx context.Context, bin, home string) *mcp.ClientSession {
	t.Helper()
	// --home is a global flag: it goes before the subcommand.
	cmd := exec.Command(bin, "--home", home, "mcp")
	client := mcp.NewClient(&mcp.Implementation{Name: "stq-test", Version: "0"}, nil)
	cs, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		t.Fatalf("connect to stq mcp: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func call(t *testing.T, ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s %v: protocol error: %v", tool, args, err)
	}
	return res
}

// callOK calls a tool that must succeed and decodes its structured result.
func callOK[Out any](t *testing.T, ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any) Out {
	t.Helper()
	var out Out
	res := call(t, ctx, cs, tool, args)
	if res.IsError {
		t.Fatalf("%s %v: tool error: %s", tool, args, resultText(res))
	}
	b, err := json.Marshal(res.StructuredContent)
	if err == nil {
		err = json.Unmarshal(b, &out)
	}
	if err != nil {
		t.Fatalf("%s: decode %s: %v", tool, b, err)
	}
	return out
}

// callErr calls a tool that must fail with a tool error and returns its text.
func callErr(t *testing.T, ctx context.Context, cs *mcp.ClientSession, tool string, args map[string]any) string {
	t.Helper()
	res := call(t, ctx, cs, tool, args)
	if !res.IsError {
		t.Fatalf("%s %v: succeeded, want a tool error; result %v", tool, args, res.StructuredContent)
	}
	return resultText(res)
}

func waitForState(t *testing.T, ctx context.Context, cs *mcp.ClientSession, id, state string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		job := callOK[jobOut](t, ctx, cs, "show", map[string]any{"id": id})
		if job.State == state {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s is %s after 10s, want %s", id, job.State, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
