package e2e

// End-to-end tests of issue 10's tail and wait (section 5) and of the
// bounded log's truncation record (section 8), on the real binary.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logTexts is the text of each output line a plain `stq tail` printed, in
// order, without its time; the daemon's own lines keep their "[stq] ".
func logTexts(t *testing.T, out string) (texts []string, events []string) {
	t.Helper()
	for l := range strings.SplitSeq(strings.TrimRight(out, "\n"), "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "-- job "):
			events = append(events, l)
		case strings.HasPrefix(l, "[stq] earlier output was dropped"):
			texts = append(texts, l)
		default:
			ts, text, ok := strings.Cut(l, " ")
			if !ok || len(ts) != len("15:04:05.000") {
				t.Fatalf("tail line %q has no time", l)
			}
			texts = append(texts, text)
		}
	}
	return texts, events
}

func numbered(prefix string, from, to int) []string {
	var out []string
	for i := from; i <= to; i++ {
		out = append(out, fmt.Sprint(prefix, i))
	}
	return out
}

func TestTailLinesTakesTheLastNOrFromLineK(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--", "sh", "-c", "i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done")
	e.ok("wait", id)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"tail", id}, numbered("line", 1, 30)}, // no -n: the whole log
		{[]string{"tail", "-n", "5", id}, numbered("line", 26, 30)},
		{[]string{"tail", "--lines", "5", "--job", id}, numbered("line", 26, 30)},
		{[]string{"tail", "-n", "+1", id}, numbered("line", 1, 30)},
		{[]string{"tail", "-n", "+25", id}, numbered("line", 25, 30)},
		{[]string{"tail", "-n", "+0", id}, numbered("line", 1, 30)},
		{[]string{"tail", "-n", "0", id}, nil},
		{[]string{"tail", "-n", "100", id}, numbered("line", 1, 30)},
		{[]string{"tail", "-n", "+31", id}, nil},
	} {
		texts, _ := logTexts(t, e.ok(tc.args...))
		if strings.Join(texts, ",") != strings.Join(tc.want, ",") {
			t.Errorf("stq %s printed %v, want %v", strings.Join(tc.args, " "), texts, tc.want)
		}
	}
	// A finished job followed: the last 10 lines, then how it ended.
	r := e.run("tail", "-f", id)
	texts, events := logTexts(t, r.stdout)
	if r.code != 0 || strings.Join(texts, ",") != strings.Join(numbered("line", 21, 30), ",") || len(events) != 1 || !strings.HasSuffix(events[0], " DONE") {
		t.Errorf("tail -f of a finished job: exit %d, lines %v, events %v", r.code, texts, events)
	}
	r = e.run("tail", "-f", "-n", "+1", id)
	if texts, _ := logTexts(t, r.stdout); r.code != 0 || strings.Join(texts, ",") != strings.Join(numbered("line", 1, 30), ",") {
		t.Errorf("tail -f -n +1: exit %d, lines %v", r.code, texts)
	}
	var seqs []int64
	for l := range strings.SplitSeq(e.ok("tail", "--json", "-n", "3", id), "\n") {
		var ev struct {
			Line struct{ Seq int64 } `json:"line"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, ev.Line.Seq)
	}
	if fmt.Sprint(seqs) != "[28 29 30]" {
		t.Errorf("tail --json -n 3: seqs %v", seqs)
	}
	for _, args := range [][]string{
		{"tail", "-n", "x", id},
		{"tail", "-n", "-3", id},
		{"tail", "-n", "+x", id},
		{"tail", "-f", "-n", "3"}, // following every job replays nothing
	} {
		if r := e.run(args...); r.code != 2 || !strings.HasPrefix(r.stderr, "stq: ") {
			t.Errorf("stq %s: exit %d, stderr %q; want a usage error", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// lineReader hands over the lines a process prints as they come.
func lineReader(t *testing.T, r io.Reader) <-chan string {
	t.Helper()
	ch := make(chan string, 1000)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// readUntil collects lines until one contains want.
func readUntil(t *testing.T, ch <-chan string, want string) []string {
	t.Helper()
	var got []string
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("output ended before %q:\n%s", want, strings.Join(got, "\n"))
			}
			got = append(got, l)
			if strings.Contains(l, want) {
				return got
			}
		case <-timeout:
			t.Fatalf("no %q after 30s:\n%s", want, strings.Join(got, "\n"))
		}
	}
}

func TestTailFollowStartsWithTheLastTenLinesThenFollows(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	dir := t.TempDir()
	id := e.ok("enqueue", "--", "sh", "-c",
		"i=1; while [ $i -le 20 ]; do echo line$i; i=$((i+1)); done; "+
			"while [ ! -e "+dir+"/go ]; do sleep 0.05; done; echo line21; echo line22; echo line23")
	waitFor(t, "the first 20 lines", 30*time.Second, func() bool {
		return strings.Contains(e.ok("tail", "-n", "1", id), "line20")
	})
	c := e.cmd("tail", "-f", id)
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Process.Kill() }()
	ch := lineReader(t, stdout)
	got := readUntil(t, ch, "line20")
	// The stored part is out: now the job goes on, and tail follows.
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	got = append(got, readUntil(t, ch, " DONE")...)
	if err := c.Wait(); err != nil {
		t.Fatalf("tail -f of a job that ended DONE: %v", err)
	}
	texts, events := logTexts(t, strings.Join(got, "\n"))
	if strings.Join(texts, ",") != strings.Join(numbered("line", 11, 23), ",") || len(events) != 1 {
		t.Fatalf("tail -f printed lines %v and events %v; want line11..line23 once each, then the end", texts, events)
	}
}

func TestTailFollowJobExitsWithTheJobsOutcome(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	done := e.ok("enqueue", "--", "sh", "-c", "echo fine")
	failed := e.ok("enqueue", "--max-attempts", "1", "--", "sh", "-c", "echo broken; exit 3")
	cancelled := e.ok("enqueue", "--", "sleep", "300")
	e.waitState(cancelled, "RUNNING")
	e.ok("cancel", cancelled)
	e.run("wait", done, failed)
	for _, tc := range []struct {
		args  []string
		code  int
		state string
	}{
		{[]string{"tail", "-f", "--job", done}, 0, "DONE"},
		{[]string{"tail", "-f", done[:14]}, 0, "DONE"}, // a prefix of the id
		{[]string{"tail", "-f", "--job", failed}, 1, "FAILED"},
		{[]string{"tail", "-f", "--json", "--job", failed}, 1, "FAILED"},
		{[]string{"tail", "-f", "--job", cancelled}, 1, "CANCELLED"},
	} {
		r := e.run(tc.args...)
		if r.code != tc.code || strings.Count(r.stdout, tc.state) != 1 || r.stderr != "" {
			t.Errorf("stq %s: exit %d (want %d), %d mentions of %s (want 1), stderr %q\n%s",
				strings.Join(tc.args, " "), r.code, tc.code, strings.Count(r.stdout, tc.state), tc.state, r.stderr, r.stdout)
		}
	}
	// Live: the follow ends with the job, FAILED, with exit 1.
	dir := t.TempDir()
	live := e.ok("enqueue", "--max-attempts", "1", "--", "sh", "-c", "while [ ! -e "+dir+"/go ]; do sleep 0.05; done; exit 1")
	e.waitState(live, "RUNNING")
	res := make(chan result, 1)
	go func() { res <- e.run("tail", "-f", "--job", live) }()
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-res:
		if r.code != 1 || !strings.Contains(r.stdout, "FAILED") {
			t.Errorf("tail -f of a job that failed while followed: exit %d\n%s", r.code, r.stdout)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail -f did not end with the job")
	}
}

func TestTailFollowEverythingRunsUntilInterruptedAndExits0(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	c := e.cmd("tail", "-f")
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Process.Kill() }()
	ch := lineReader(t, stdout)
	// Jobs until one is seen: the follow is in place once it prints.
	var id string
	deadline := time.Now().Add(30 * time.Second)
	for seen := false; !seen; {
		if time.Now().After(deadline) {
			t.Fatal("tail -f printed nothing of the jobs run meanwhile")
		}
		id = e.ok("enqueue", "--", "echo", "hello")
		e.ok("wait", id)
		for drained := false; !drained && !seen; {
			select {
			case l := <-ch:
				seen = strings.Contains(l, id) && strings.HasSuffix(l, "DONE")
			case <-time.After(200 * time.Millisecond):
				drained = true
			}
		}
	}
	if err := c.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Fatalf("tail -f (every job) after SIGINT: %v, want exit 0", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("tail -f did not stop on SIGINT")
	}
}

func TestWaitTimeoutExits4(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--", "sleep", "300")
	e.waitState(id, "RUNNING")
	r := e.run("wait", "--timeout", "300ms", id)
	if r.code != 4 || r.stdout != id+"\tRUNNING\n" || !strings.HasPrefix(r.stderr, "stq: timed out") {
		t.Fatalf("wait that timed out: exit %d, stdout %q, stderr %q; want 4", r.code, r.stdout, r.stderr)
	}
	// Ended but not DONE is still 1.
	e.ok("cancel", id)
	if r := e.run("wait", "--timeout", "10s", id); r.code != 1 {
		t.Fatalf("wait for a cancelled job: exit %d, want 1", r.code)
	}
}

// waitProxy stands between `stq wait` and the daemon on a home of its own,
// and says when the client sends dev.wait.v1: by then it has listed the
// jobs it waits for.
func waitProxy(t *testing.T, e *testEnv) (home string, waiting <-chan struct{}) {
	t.Helper()
	dir, err := os.MkdirTemp("", "stqp")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "token"), []byte(e.token()), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", filepath.Join(dir, "stq.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan struct{})
	var once sync.Once
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			daemon, err := net.Dial("unix", e.path("stq.sock"))
			if err != nil {
				client.Close()
				return
			}
			go func() { _, _ = io.Copy(client, daemon); client.Close() }()
			go func() {
				defer daemon.Close()
				r := bufio.NewReader(client)
				for {
					line, err := r.ReadBytes('\n')
					if bytes.Contains(line, []byte(`"dev.wait.v1"`)) {
						once.Do(func() { close(ch) })
					}
					if _, werr := daemon.Write(line); werr != nil || err != nil {
						return
					}
				}
			}()
		}
	}()
	return dir, ch
}

func TestWaitQueueAndAllWaitForTheJobsLiveAtTheCall(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "4")
	dir := t.TempDir()
	gate := func(name string, code int) []string {
		return []string{"--", "sh", "-c", fmt.Sprintf("while [ ! -e %s/%s ]; do sleep 0.05; done; exit %d", dir, name, code)}
	}
	a := e.ok(append([]string{"enqueue", "--queue", "wq"}, gate("a", 0)...)...)
	b := e.ok(append([]string{"enqueue", "--queue", "wq", "--in", "1h"}, "--", "true")...) // QUEUED, not due
	other := e.ok(append([]string{"enqueue", "--queue", "elsewhere"}, gate("other", 1)...)...)
	e.waitState(a, "RUNNING")
	e.waitState(other, "RUNNING")

	home, waiting := waitProxy(t, e)
	c := exec.Command(stqBin, "wait", "--queue", "wq")
	c.Env = append(os.Environ(), "STQ_HOME="+home, "NO_COLOR=1", "GORACE=atexit_sleep_ms=0 halt_on_error=1")
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Process.Kill() }()
	select {
	case <-waiting:
	case <-time.After(30 * time.Second):
		t.Fatalf("wait --queue never waited: %s", errb.String())
	}
	// Enqueued after the call: not waited for, though it never ends.
	later := e.ok(append([]string{"enqueue", "--queue", "wq"}, gate("never", 0)...)...)
	e.ok("cancel", b) // ends CANCELLED: the wait must fail
	if err := os.WriteFile(filepath.Join(dir, "a"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- c.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Fatalf("wait --queue wq waited for more than the jobs of the call: %s", out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if code := c.ProcessState.ExitCode(); code != 1 || len(lines) != 2 || !strings.Contains(out.String(), a+"\tDONE") || !strings.Contains(out.String(), b+"\tCANCELLED") {
		t.Fatalf("wait --queue wq: exit %d (want 1: one job was cancelled), stdout:\n%s\nstderr: %s", code, out.String(), errb.String())
	}
	if strings.Contains(out.String(), later) || strings.Contains(out.String(), other) {
		t.Fatalf("wait --queue wq reported a job it should not wait for:\n%s", out.String())
	}

	// --all: every queue; exit 0 only if all end DONE.
	e.ok("cancel", later)
	if err := os.WriteFile(filepath.Join(dir, "other"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if r := e.run("wait", "--all"); r.code != 1 || !strings.Contains(r.stdout, other+"\tFAILED") {
		t.Fatalf("wait --all with a failing job: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	ok1 := e.ok("enqueue", "--queue", "q1", "--", "true")
	ok2 := e.ok("enqueue", "--queue", "q2", "--", "sh", "-c", "sleep 0.2")
	if r := e.run("wait", "--all", "--json"); r.code != 0 {
		t.Fatalf("wait --all with jobs that end DONE: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	} else {
		var js []job
		if err := json.Unmarshal([]byte(r.stdout), &js); err != nil {
			t.Fatal(err)
		}
		for _, j := range js {
			if j.State != "DONE" || (j.ID != ok1 && j.ID != ok2) {
				t.Fatalf("wait --all --json: %+v", js)
			}
		}
	}
	if r := e.run("wait", "--queue", "nothing-here"); r.code != 0 || r.stdout != "" {
		t.Fatalf("wait --queue with no live job: exit %d, stdout %q", r.code, r.stdout)
	}
	for _, args := range [][]string{{"wait"}, {"wait", "--all", a}, {"wait", "--all", "--queue", "wq"}, {"wait", "--queue", ""}} {
		if r := e.run(args...); r.code != 2 {
			t.Errorf("stq %s: exit %d, want 2", strings.Join(args, " "), r.code)
		}
	}
}

func TestEnqueueAtABareClockTimeSaysWhichDayItRuns(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	next := func(clock string, now time.Time) time.Time {
		c, err := time.ParseInLocation("15:04", clock, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		y, m, d := now.Date()
		at := time.Date(y, m, d, c.Hour(), c.Minute(), 0, 0, time.Local)
		if !at.Add(time.Minute).After(now) {
			at = time.Date(y, m, d+1, c.Hour(), c.Minute(), 0, 0, time.Local)
		}
		return at
	}
	now := time.Now()
	for _, clock := range []string{now.Add(-2 * time.Minute).Format("15:04"), now.Add(2 * time.Minute).Format("15:04")} {
		want := next(clock, now)
		day := "today"
		if want.Day() != now.Day() {
			day = "tomorrow"
		}
		r := e.run("enqueue", "--at", clock, "--", "true")
		if r.code != 0 {
			t.Fatalf("enqueue --at %s: exit %d: %s", clock, r.code, r.stderr)
		}
		id := strings.TrimSpace(r.stdout)
		wantNote := fmt.Sprintf("stq: runs at %s (%s)\n", want.Format("2006-01-02 15:04:05 -0700"), day)
		if r.stderr != wantNote {
			t.Errorf("enqueue --at %s at %s: stderr %q, want %q", clock, now.Format("15:04:05"), r.stderr, wantNote)
		}
		if j := e.show(id); !j.RunAt.Equal(want) {
			t.Errorf("enqueue --at %s: run_at %s, want %s", clock, j.RunAt, want)
		}
	}
	// A full date says nothing: it is what it says.
	if r := e.run("enqueue", "--at", now.Add(time.Hour).Format("2006-01-02 15:04"), "--", "true"); r.code != 0 || r.stderr != "" {
		t.Errorf("enqueue --at with a date: exit %d, stderr %q", r.code, r.stderr)
	}
}

var dropNoteRE = regexp.MustCompile(`^\[stq\] (\d+) lines dropped: output over the 1048576-byte log limit$`)

func TestABurstOfOutputRecordsItsTruncationWithAnExactCount(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	const printed = 40000
	cmd := []string{"python3", "-c", fmt.Sprintf(`for i in range(%d): print("x"*70, i)`, printed)}
	if _, err := exec.LookPath("python3"); err != nil {
		cmd = []string{"awk", fmt.Sprintf(`BEGIN { x = sprintf("%%70s", ""); gsub(/ /, "x", x); for (i = 0; i < %d; i++) print x, i }`, printed)}
	}
	// Whether the burst ends before the engine's first flush or spans a
	// few decided the outcome before the fix: run it a few times.
	for run := range 3 {
		id := e.ok(append([]string{"enqueue", "--"}, cmd...)...)
		if r := e.run("wait", id); r.code != 0 {
			t.Fatalf("run %d: the printing job did not end DONE: %s%s", run, r.stdout, r.stderr)
		}
		var raw map[string]any
		if err := json.Unmarshal([]byte(e.ok("show", "--json", id)), &raw); err != nil {
			t.Fatal(err)
		}
		if raw["log_truncated"] != true {
			t.Errorf("run %d: log_truncated is %v though the log dropped lines", run, raw["log_truncated"])
		}
		texts, _ := logTexts(t, e.ok("tail", id))
		if len(texts) < 3 || !strings.HasPrefix(texts[0], "[stq] earlier output was dropped") {
			t.Fatalf("run %d: stq tail does not start with the drop header: %q", run, texts[:min(len(texts), 2)])
		}
		m := dropNoteRE.FindStringSubmatch(texts[1])
		if m == nil {
			t.Fatalf("run %d: the line after the header is %q, want the note %q", run, texts[1], dropNoteRE)
		}
		dropped, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		kept := texts[2:]
		if dropped+len(kept) != printed {
			t.Errorf("run %d: the note says %d lines dropped, %d are kept: %d, not the %d printed", run, dropped, len(kept), dropped+len(kept), printed)
		}
		for i, l := range kept {
			if want := fmt.Sprintf("%s %d", strings.Repeat("x", 70), dropped+i); l != want {
				t.Fatalf("run %d: kept line %d is %q, want %q: the newest lines, in order", run, i, l[min(len(l), 60):], want[60:])
			}
		}
		if n := strings.Count(strings.Join(texts, "\n"), "[stq]"); n != 2 {
			t.Errorf("run %d: %d \"[stq]\" marks, want the header's and the note's", run, n)
		}
	}
}
