package commands

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/muesli/termenv"

	"stq/engine"
)

var escapes = regexp.MustCompile("\x1b\\[[0-9;]*m")

func TestLabelsLineUpWhenColoured(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	r := lipgloss.NewRenderer(&buf)
	r.SetColorProfile(termenv.ANSI256)
	s := styles{styled: true, label: r.NewStyle().Bold(true)}
	s.field(&buf, 13, "id", "A")
	s.field(&buf, 13, "generation", "B")
	s.field(&buf, 13, "a-very-long-label", "C")
	out := buf.String()
	if !strings.Contains(out, "\x1b[") {
		t.Fatalf("labels are not styled, so the test proves nothing:\n%q", out)
	}
	lines := strings.Split(strings.TrimSuffix(escapes.ReplaceAllString(out, ""), "\n"), "\n")
	want := []string{"id:           A", "generation:   B", "a-very-long-label: C"}
	for i, l := range lines {
		if l != want[i] {
			t.Errorf("line %d shows as %q, want %q", i, l, want[i])
		}
	}
}

func TestPipeTablesEscapeTabsAndNewlinesAndNeverCut(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("x", 300)
	var buf bytes.Buffer
	newStyles(&buf, false, false).writeTable(&buf, []string{"ID", "NOTE"}, [][]string{{"j1", "a\tb\nc"}, {"j2", long}}, -1)
	want := "ID\tNOTE\nj1\ta\\tb\\nc\nj2\t" + long + "\n"
	if got := buf.String(); got != want {
		t.Fatalf("pipe table:\n%q\nwant\n%q", got, want)
	}
}

func TestClipLeftKeepsTheFileName(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		w    int
		want string
	}{
		{"src/main.rs", 20, "src/main.rs"},
		{"src/deeply/nested/dir/file.rs", 20, "…/nested/dir/file.rs"},
		{"src/deeply/nested/dir/file.rs", 12, "…/file.rs"},
		{"a/averyveryverylongfilename.rs", 12, "…filename.rs"},
		{"no-slashes-at-all-here", 10, "…-all-here"},
	} {
		if got := clipLeft(tc.in, tc.w); got != tc.want || lipgloss.Width(got) > tc.w {
			t.Errorf("clipLeft(%q, %d) = %q, want %q", tc.in, tc.w, got, tc.want)
		}
	}
	if got := clipRight("cargo build --release", 10); got != "cargo bui…" {
		t.Errorf("clipRight = %q", got)
	}
}

func TestListFitsAHundredColumnsWithShortIDs(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 14, 0, 0, 0, time.Local)
	started := now.Add(-12 * time.Second)
	render := func(jobs ...*engine.Job) (string, [][]string) {
		rows := make([][]string, 0, len(jobs))
		for _, j := range jobs {
			rows = append(rows, listRow(j, now, false, true))
		}
		var buf bytes.Buffer
		newStyles(&buf, true, true).writeList(&buf, listHeaders, fitTable(listHeaders, rows, listCuts, 100), listStateCol)
		out := buf.String()
		for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
			if w := lipgloss.Width(l); w > 100 {
				t.Errorf("line is %d wide:\n%s", w, l)
			}
		}
		return out, rows
	}

	// A typical job: its subject is cut from the left, keeping the file name.
	typical := &engine.Job{ID: "06h4phceajed8v39gvjd38ffdc", ShortID: "06h4ph", Queue: "default", Type: "exec",
		Subject: "src/some/deeply/nested/dir/file.rs", Command: []string{"cargo", "check"}, State: engine.StateQueued,
		CreatedAt: now.Add(-3 * time.Minute), Waiting: engine.WaitRunAt, RunAt: now.Add(5*time.Minute + 3*time.Second)}
	out, rows := render(typical)
	if want := []string{"06h4ph", "QUEUED", "default", "src/some/deeply/nested/dir/file.rs", "cargo check", "3m ago", "waiting: run_at 14:05:03"}; !slices.Equal(rows[0], want) {
		t.Errorf("row = %q, want %q", rows[0], want)
	}
	for _, want := range []string{"06h4ph ", "…/deeply/nested/dir/file.rs", "cargo check", "3m ago", "waiting: run_at 14:05:03"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, typical.ID) {
		t.Errorf("the default view shows full ids:\n%s", out)
	}

	// More jobs, a long command and error among them: cut, never wider.
	running := &engine.Job{ID: "06h4phce8v5bwj7eapp7vjjmvw", ShortID: "06h4phce8", Queue: "default", Type: "exec",
		Subject: "build", Command: []string{"cargo", "build", "--release"},
		State: engine.StateRunning, CreatedAt: now.Add(-time.Minute), StartedAt: &started}
	handler := &engine.Job{ID: "06h4phcd00000000000000000z", ShortID: "06h4phcd", Queue: "indexing", Type: "INDEX_FILE",
		State: engine.StateFailed, CreatedAt: now.Add(-2 * time.Hour), Error: "exit status 3"}
	long := &engine.Job{ID: "06h4phcc00000000000000000z", ShortID: "06h4phcc", Queue: "default",
		Command: strings.Fields(strings.Repeat("make all ", 20)), State: engine.StateFailed, CreatedAt: now,
		Error: strings.Repeat("a long and winding explanation ", 10)}
	out, rows = render(typical, running, handler, long)
	if rows[1][5] != "running 12s" || rows[2][5] != "2h ago" || rows[2][4] != "INDEX_FILE" {
		t.Errorf("age or command columns: %q, %q", rows[1], rows[2])
	}
	for _, want := range []string{"running 12s", "make all make", "a long and", "…"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestCommandsAreQuotedAsAShellTakesThem(t *testing.T) {
	t.Parallel()
	j := &engine.Job{Command: []string{"sh", "-c", "exit 3", "it's", ""}}
	if got, want := commandText(j), `sh -c 'exit 3' 'it'\''s' ''`; got != want {
		t.Fatalf("commandText = %s, want %s", got, want)
	}
}

func TestWaitingRunAtTomorrowHasTheDate(t *testing.T) {
	t.Parallel()
	now := time.Date(2030, 1, 2, 23, 59, 0, 0, time.Local)
	j := &engine.Job{Waiting: engine.WaitRunAt, RunAt: now.Add(2 * time.Minute)}
	if got := waitingText(j, now); got != "run_at 2030-01-03 00:01:00" {
		t.Fatalf("waitingText = %q", got)
	}
	if got := waitingText(&engine.Job{Waiting: engine.WaitPaused}, now); got != "queue paused" {
		t.Fatalf("waitingText = %q", got)
	}
}
