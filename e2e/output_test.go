package e2e

// End-to-end tests of what the CLI prints (issue 10): job ids by unique
// prefix, tables on pipes and terminals, error lines that say each thing
// once, one wording per note, attempt numbers across retries, and commands
// that do nothing saying so.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// shortIDs maps each listed job's id to its short_id.
func (e *testEnv) shortIDs() map[string]string {
	e.t.Helper()
	var js []struct {
		ID      string `json:"id"`
		ShortID string `json:"short_id"`
	}
	if err := json.Unmarshal([]byte(e.ok("list", "--json", "--limit", "10000")), &js); err != nil {
		e.t.Fatal(err)
	}
	m := make(map[string]string, len(js))
	for _, j := range js {
		if len(j.ShortID) < 4 || len(j.ShortID) >= len(j.ID) || !strings.HasPrefix(j.ID, j.ShortID) {
			e.t.Fatalf("job %s has short_id %q: want a proper prefix of 4 or more characters", j.ID, j.ShortID)
		}
		m[j.ID] = j.ShortID
	}
	return m
}

// commonPrefix is the longest prefix all of ids share.
func commonPrefix(ids []string) string {
	p := ids[0]
	for _, id := range ids[1:] {
		for !strings.HasPrefix(id, p) {
			p = p[:len(p)-1]
		}
	}
	return p
}

func TestJobIDsAreTakenByTheirShortFormAndAnAmbiguousPrefixIsOneLine(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	held := e.ok("enqueue", "--in", "1h", "--", "true")
	quick := e.ok("enqueue", "--", "true")
	short := e.shortIDs()

	out := e.ok("show", short[held])
	if first, _, _ := strings.Cut(out, "\n"); first != "id:           "+held {
		t.Fatalf("show by short id starts %q, want the full id", first)
	}
	if out := e.ok("wait", short[quick]); out != quick+"\tDONE" {
		t.Fatalf("wait by short id printed %q", out)
	}
	if out := e.ok("cancel", short[held]); out != held {
		t.Fatalf("cancel by short id printed %q, want the full id", out)
	}
	if j := e.show(held); j.State != "CANCELLED" {
		t.Fatalf("cancelled by prefix, the job is %s", j.State)
	}

	// Jobs of one batch share a millisecond, so their ids share about nine
	// characters: a prefix of them is ambiguous.
	ids := strings.Fields(e.runStdin(strings.Repeat(`{"type":"noop","run_at":"2099-01-01T00:00:00Z"}`+"\n", 5), "enqueue", "--batch", "-").stdout)
	prefix := commonPrefix(ids)
	if len(ids) != 5 || len(prefix) < 4 {
		t.Fatalf("batch ids %v share only %q", ids, prefix)
	}
	for _, args := range [][]string{{"show", prefix}, {"cancel", prefix}, {"wait", prefix}, {"retry", prefix}, {"tail", prefix}} {
		r := e.run(args...)
		want := "stq: invalid request: id prefix " + prefix + " is ambiguous: it starts "
		if r.code != 1 || r.stdout != "" || strings.Count(r.stderr, "\n") != 1 || !strings.HasPrefix(r.stderr, want) || !strings.Contains(r.stderr, ids[0]) {
			t.Errorf("stq %s: exit %d, stdout %q, stderr %q; want exit 1 and one line %q…", strings.Join(args, " "), r.code, r.stdout, r.stderr, want)
		}
	}
}

// runAtText is how a list or show renders a job held until at.
func runAtText(at time.Time) string {
	at, now := at.Local(), time.Now()
	if at.YearDay() == now.YearDay() && at.Year() == now.Year() {
		return "run_at " + at.Format("15:04:05")
	}
	return "run_at " + at.Format("2006-01-02 15:04:05")
}

func TestListOnAPipeIsTabSeparatedNeverCutWithFullIDsFirst(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	subject := "src/" + strings.Repeat("deeply/", 20) + "file.rs"
	id := e.ok("enqueue", "--subject", subject, "--in", "1h", "--", "sh", "-c", "echo hi")
	noop := e.ok("enqueue", "--type", "noop")
	e.ok("wait", noop)
	j := e.show(id)
	if j.Waiting != "run_at" {
		t.Fatalf("--json waiting = %q, want the bare reason run_at", j.Waiting)
	}

	out := e.ok("list")
	if strings.Contains(out, "…") || strings.Contains(out, "  ") {
		t.Fatalf("list on a pipe is cut or padded:\n%s", out)
	}
	lines := strings.Split(out, "\n")
	if len(lines) != 3 || lines[0] != "ID\tSTATE\tQUEUE\tSUBJECT\tCOMMAND\tAGE\tNOTE" {
		t.Fatalf("list on a pipe:\n%s", out)
	}
	row := strings.Split(lines[2], "\t")
	want := []string{id, "QUEUED", "default", subject, "sh -c 'echo hi'", "", "waiting: " + runAtText(j.RunAt)}
	if len(row) != len(want) || !strings.HasSuffix(row[5], " ago") {
		t.Fatalf("row %q, want %q (age … ago)", row, want)
	}
	for i := range want {
		if i != 5 && row[i] != want[i] {
			t.Errorf("column %d is %q, want %q", i+1, row[i], want[i])
		}
	}
	if row := strings.Split(lines[1], "\t"); row[0] != noop || row[4] != "noop" || row[6] != "-" {
		t.Errorf("a job without a command: %q", row)
	}

	wide := strings.Split(e.ok("list", "--wide"), "\n")
	if wide[0] != "ID\tSTATE\tQUEUE\tTYPE\tSUBJECT\tGEN\tATTEMPT\tPRIO\tCOMMAND\tCREATED\tAGE\tNOTE" {
		t.Fatalf("list --wide header %q", wide[0])
	}
	if row := strings.Split(wide[2], "\t"); row[0] != id || row[3] != "exec" || row[4] != subject || row[5] != "1" || row[6] != "0/3" || row[7] != "0" {
		t.Errorf("list --wide row %q", row)
	}
	all := strings.Split(e.ok("list", "--all"), "\n")
	if row := strings.Split(all[2], "\t"); all[0] != lines[0] || len(row) != 7 || row[0] != id || row[3] != subject {
		t.Errorf("list --all:\n%s", strings.Join(all, "\n"))
	}

	show := e.ok("show", id)
	if !strings.Contains(show, "\nwaiting:      "+runAtText(j.RunAt)+"\n") {
		t.Errorf("show does not say until when the job waits:\n%s", show)
	}
}

var ansiEscape = regexp.MustCompile("\x1b\\[[0-9;?]*[a-zA-Z]")

func TestListOnATerminalFitsItsWidthAndLabelsLineUpInColour(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--subject", "src/some/deeply/nested/dir/file.rs", "--in", "5m", "--", "cargo", "check")
	short := e.shortIDs()[id]

	for _, cols := range []int{100, 80} {
		out := e.runOnTerminal(cols, true, "list")
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if n := utf8.RuneCountInString(l); n > cols {
				t.Errorf("on a %d-column terminal a line is %d wide:\n%s", cols, n, out)
			}
		}
		if !strings.Contains(out, "\n"+short+" ") || strings.Contains(out, id) || !strings.Contains(out, "/file.rs") || !strings.Contains(out, "…/") {
			t.Errorf("on a %d-column terminal, want the short id %s and the subject cut from the left:\n%s", cols, short, out)
		}
	}
	if out := e.runOnTerminal(100, true, "list"); !strings.Contains(out, "waiting: run_at ") || !strings.Contains(out, "cargo check") {
		t.Errorf("a typical job does not fit 100 columns whole but for its subject:\n%s", out)
	}
	if out := e.runOnTerminal(200, true, "list", "--wide"); !strings.Contains(out, id) || !strings.Contains(out, "src/some/deeply/nested/dir/file.rs") {
		t.Errorf("list --wide on a terminal:\n%s", out)
	}

	for _, args := range [][]string{{"show", id}, {"stats"}} {
		out := e.runOnTerminal(100, false, args...)
		if !strings.Contains(out, "\x1b[") {
			t.Skipf("the terminal got no colour, so alignment under colour cannot be seen:\n%q", out)
		}
		block, _, _ := strings.Cut(strings.TrimSuffix(ansiEscape.ReplaceAllString(out, ""), "\n"), "\n\n")
		col := -1
		for _, l := range strings.Split(block, "\n") {
			label, value, ok := strings.Cut(l, ":")
			if !ok {
				t.Fatalf("stq %s in colour: %q is not a label and a value:\n%q", args[0], l, out)
			}
			at := len(label) + 1 + len(value) - len(strings.TrimLeft(value, " "))
			if col < 0 {
				col = at
			}
			if at != col {
				t.Errorf("stq %s in colour: %q starts its value at column %d, the first line at %d:\n%s", args[0], l, at, col, block)
			}
		}
	}
}

func TestErrorsSayEachThingOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	done := e.ok("enqueue", "--", "true")
	e.ok("wait", done)
	e.ok("enqueue", "--subject", "x", "--gen", "5", "--", "true")
	unknown := "0000000000000000000000nope"
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"show of an unknown id", []string{"show", "nope"}, 1, "stq: get job nope: job not found\n"},
		{"show of an unknown whole id", []string{"show", unknown}, 1, "stq: get job " + unknown + ": job not found\n"},
		{"cancel of an unknown id", []string{"cancel", "nope"}, 1, "stq: get job nope: job not found\n"},
		{"wait for an unknown id", []string{"wait", "nope"}, 1, "stq: get job nope: job not found\n"},
		{"tail of an unknown id", []string{"tail", "--job", "nope"}, 1, "stq: get job nope: job not found\n"},
		{"tail -f of an unknown id", []string{"tail", "-f", "--job", "nope"}, 1, "stq: get job nope: job not found\n"},
		{"retry of an unknown id", []string{"retry", "nope"}, 1, "stq: retry job nope: job not found\n"},
		{"retry of a DONE job", []string{"retry", done}, 1, "stq: retry job " + done + ": invalid state transition: job is DONE; only FAILED, CANCELLED or EXPIRED jobs can be retried\n"},
		{"cancel of a DONE job", []string{"cancel", done}, 1, "stq: job already finished: job " + done + " is DONE\n"},
		{"enqueue after an unknown id", []string{"enqueue", "--after", "nope", "--", "true"}, 1, "stq: enqueue: invalid request: after: unknown job nope\n"},
		{"enqueue after an unknown whole id", []string{"enqueue", "--after", unknown, "--", "true"}, 1, "stq: enqueue: invalid request: after: unknown job " + unknown + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(tt.args...)
			if r.code != tt.code || r.stdout != "" || r.stderr != tt.stderr {
				t.Fatalf("stq %s: exit %d, stdout %q, stderr\n%q\nwant exit %d and\n%q", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.code, tt.stderr)
			}
		})
	}

	r := e.run("enqueue", "--subject", "x", "--gen", "3", "--", "true")
	id := strings.TrimSpace(r.stdout)
	if want := "stq: job " + id + ": superseded on arrival: generation 5 already seen\n"; r.code != 0 || r.stderr != want {
		t.Fatalf("superseded on arrival: exit %d, stderr %q, want %q", r.code, r.stderr, want)
	}
}

func TestNotesUseOneWordingForOneThing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon("--workers", "2")
	dir := t.TempDir()

	queued := e.ok("enqueue", "--in", "1h", "--", "true")
	e.ok("cancel", queued)
	running := e.ok("enqueue", "--", "sh", "-c", "echo $$ > "+dir+"/run; sleep 300 & wait")
	readPID(t, dir+"/run")
	e.ok("cancel", running)
	for _, id := range []string{queued, running} {
		if j := e.show(id); j.State != "CANCELLED" || j.Error != "cancelled by user" {
			t.Errorf("cancelled job: %s %q, want CANCELLED \"cancelled by user\"", j.State, j.Error)
		}
	}
	if j := e.show(running); !j.attemptOutcome("cancelled") || j.Attempts[0].Reason != "cancelled by user" {
		t.Errorf("attempt of a cancelled running job: %+v", j.Attempts)
	}

	older := e.ok("enqueue", "--subject", "q", "--in", "1h", "--", "true")
	newer := e.ok("enqueue", "--subject", "q", "--in", "1h", "--", "true")
	if j := e.show(older); j.State != "SUPERSEDED" || j.Error != "superseded by generation 2 (job "+newer+")" {
		t.Errorf("superseded queued job: %s %q", j.State, j.Error)
	}
	old := e.ok("enqueue", "--subject", "r", "--", "sh", "-c", "echo $$ > "+dir+"/old; sleep 300 & wait")
	readPID(t, dir+"/old")
	replacing := e.ok("enqueue", "--subject", "r", "--replace", "--", "true")
	e.ok("wait", replacing)
	want := "superseded by generation 2 (job " + replacing + ")"
	if j := e.show(old); j.State != "SUPERSEDED" || j.Error != want || !j.attemptOutcome("superseded") || j.Attempts[0].Reason != want {
		t.Errorf("replaced running job: %s %q, attempts %+v; want %q", j.State, j.Error, j.Attempts, want)
	}
}

func TestRetryNumbersTheAttemptHistoryOn(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--max-attempts", "1", "--", "false")
	e.run("wait", id)
	e.ok("retry", id)
	e.run("wait", id)
	j := e.show(id)
	if j.State != "FAILED" || j.Attempt != 1 || j.MaxAttempts != 1 || len(j.Attempts) != 2 || j.Attempts[0].N != 1 || j.Attempts[1].N != 2 {
		t.Fatalf("after a retry: %s attempt %d of %d, history %+v; want attempts numbered 1, 2 and the series at 1 of 1", j.State, j.Attempt, j.MaxAttempts, j.Attempts)
	}
	out := e.ok("show", id)
	_, table, _ := strings.Cut(out, "\n\n")
	lines := strings.Split(table, "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[1], "1\t") || !strings.HasPrefix(lines[2], "2\t") {
		t.Fatalf("attempt table:\n%s", table)
	}
}

func TestCancelBySubjectSaysWhenNothingMatched(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	for _, tt := range []struct {
		args   []string
		stdout string
		stderr string
	}{
		{[]string{"cancel", "--subject", "q.rs"}, "", "stq: 0 queued or running jobs matched subject q.rs in queue default, type exec\n"},
		{[]string{"cancel", "--subject", "q.rs", "--queue", "lint", "--type", "check"}, "", "stq: 0 queued or running jobs matched subject q.rs in queue lint, type check\n"},
		{[]string{"cancel", "--json", "--subject", "q.rs"}, "[]\n", "stq: 0 queued or running jobs matched subject q.rs in queue default, type exec\n"},
	} {
		if r := e.run(tt.args...); r.code != 1 || r.stdout != tt.stdout || r.stderr != tt.stderr {
			t.Errorf("stq %s: exit %d, stdout %q, stderr %q; want exit 1, %q, %q", strings.Join(tt.args, " "), r.code, r.stdout, r.stderr, tt.stdout, tt.stderr)
		}
	}
	id := e.ok("enqueue", "--subject", "q.rs", "--in", "1h", "--", "true")
	if r := e.run("cancel", "--subject", "q.rs"); r.code != 0 || r.stdout != id+"\n" || r.stderr != "" {
		t.Errorf("cancel of a matching subject: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

func TestPauseWarnsAboutAQueueWithNoJobsAndNoConfig(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.home, "config.toml"), []byte("[queues.configured]\nconcurrency = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.startDaemon()
	r := e.run("pause", "typo-queue")
	want := "stq: warning: queue \"typo-queue\" has no jobs and no [queues.typo-queue] section in config.toml; paused anyway\n"
	if r.code != 0 || r.stdout != "" || r.stderr != want {
		t.Fatalf("pause of an unknown queue: exit %d, stdout %q, stderr %q; want %q", r.code, r.stdout, r.stderr, want)
	}
	var st struct {
		Paused []string `json:"paused"`
	}
	if err := json.Unmarshal([]byte(e.ok("stats", "--json")), &st); err != nil || len(st.Paused) != 1 || st.Paused[0] != "typo-queue" {
		t.Fatalf("the unknown queue is not paused anyway: %v %v", st.Paused, err)
	}
	e.ok("enqueue", "--queue", "busy", "--in", "1h", "--", "true")
	for _, q := range []string{"busy", "configured"} {
		if r := e.run("pause", q); r.code != 0 || r.stderr != "" {
			t.Errorf("pause %s: exit %d, stderr %q; want no warning", q, r.code, r.stderr)
		}
	}
}
