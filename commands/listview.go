package commands

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"golang.org/x/sys/unix"

	"stq/engine"
)

// The job list as people read it and as scripts cut it. The default view
// is what fits a terminal: the short id, state, queue, subject, command,
// age and note. --wide adds every other column, uncut. On a pipe the first
// column is always the full id, so `cut -f1` gives ids usable anywhere.

var (
	listHeaders = []string{"ID", "STATE", "QUEUE", "SUBJECT", "COMMAND", "AGE", "NOTE"}
	// listCuts says how each default column shrinks when a terminal is too
	// narrow; the others keep their width.
	listCuts    = []cellCut{cutNone, cutNone, cutNone, cutLeft, cutRight, cutNone, cutRight}
	wideHeaders = []string{"ID", "STATE", "QUEUE", "TYPE", "SUBJECT", "GEN", "ATTEMPT", "PRIO", "COMMAND", "CREATED", "AGE", "NOTE"}
)

// listStateCol is the STATE column in both views, coloured by state.
const listStateCol = 1

// defaultWidth is the width a terminal table fits when the terminal does
// not say its own.
const defaultWidth = 100

// listRow is a job's row: the default view, or with wide every column.
// shortID shows the job's short id (a terminal's default view); otherwise
// the full id.
func listRow(j *engine.Job, now time.Time, wide, shortID bool) []string {
	id := j.ID
	if shortID && j.ShortID != "" {
		id = j.ShortID
	}
	if !wide {
		return []string{id, string(j.State), j.Queue, orDash(j.Subject), commandText(j), ageText(j, now), jobNote(j, now)}
	}
	gen := "-"
	if j.Subject != "" {
		gen = fmt.Sprint(j.Generation)
	}
	return []string{id, string(j.State), j.Queue, j.Type, orDash(j.Subject), gen,
		fmt.Sprintf("%d/%d", j.Attempt, j.MaxAttempts), fmt.Sprint(j.Priority), commandText(j),
		fmtTime(j.CreatedAt), ageText(j, now), jobNote(j, now)}
}

// commandText is the job's argv as a shell would take it back, or its type
// when it runs a handler rather than a command.
func commandText(j *engine.Job) string {
	if len(j.Command) == 0 {
		return j.Type
	}
	words := make([]string, len(j.Command))
	for i, w := range j.Command {
		words[i] = shellQuote(w)
	}
	return strings.Join(words, " ")
}

// shellQuote quotes a word only when a POSIX shell would split or expand it.
func shellQuote(w string) string {
	if w != "" && strings.Trim(w, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%_+=:,./-") == "" {
		return w
	}
	return "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
}

// ageText is how long a RUNNING job has run ("running 12s"), or how long
// ago any other job was enqueued ("3m ago").
func ageText(j *engine.Job, now time.Time) string {
	if j.State == engine.StateRunning && j.StartedAt != nil {
		return "running " + fmtSpan(now.Sub(*j.StartedAt))
	}
	return fmtSpan(now.Sub(j.CreatedAt)) + " ago"
}

// fmtSpan is a duration in its largest whole unit: 12s, 3m, 5h, 2d.
func fmtSpan(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// jobNote is what a list row says about a job: why a QUEUED job waits, or
// the last error.
func jobNote(j *engine.Job, now time.Time) string {
	if j.Waiting != "" {
		return "waiting: " + waitingText(j, now)
	}
	return orDash(j.Error)
}

// waitingText renders Job.Waiting for people: a job held by its run_at
// says until when. (--json keeps the bare reason, an API promise.)
func waitingText(j *engine.Job, now time.Time) string {
	if j.Waiting == engine.WaitRunAt && !j.RunAt.IsZero() {
		return "run_at " + fmtClock(j.RunAt, now)
	}
	return j.Waiting
}

// fmtClock is a local time of day, with the date when it is not today.
func fmtClock(t, now time.Time) string {
	t, now = t.Local(), now.Local()
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04:05")
	}
	return t.Format("2006-01-02 15:04:05")
}

// cellCut is how a cell shrinks to fit a terminal.
type cellCut int

const (
	cutNone  cellCut = iota // never cut
	cutRight                // keep the start: "cargo build --rel…"
	cutLeft                 // keep the end, a path's last elements first: "…/nested/dir/file.rs"
)

// minCutWidth is the narrowest a cut column gets.
const minCutWidth = 8

// fitTable cuts the cells of a table drawn by writeList so that it fits
// width. Only the columns whose cut is not cutNone
// shrink: each gets an equal share of what the others leave, and a column
// that needs less than its share gives the rest to the wider ones. Control
// characters are escaped first, so every row stays one line.
func fitTable(headers []string, rows [][]string, cuts []cellCut, width int) [][]string {
	out := make([][]string, len(rows))
	natural := make([]int, len(headers))
	for c, h := range headers {
		natural[c] = lipgloss.Width(h)
	}
	for r, row := range rows {
		out[r] = make([]string, len(row))
		for c, cell := range row {
			out[r][c] = tsvEscaper.Replace(cell)
			natural[c] = max(natural[c], lipgloss.Width(out[r][c]))
		}
	}
	avail := width - listOverhead(len(headers))
	var flex []int
	for c, n := range natural {
		if cuts[c] == cutNone {
			avail -= n
		} else {
			flex = append(flex, c)
		}
	}
	total := 0
	for _, c := range flex {
		total += natural[c]
	}
	if total <= avail {
		return out
	}
	slices.SortStableFunc(flex, func(a, b int) int { return natural[a] - natural[b] })
	limit := make([]int, len(headers))
	for i, c := range flex {
		share := avail / (len(flex) - i)
		limit[c] = min(natural[c], max(share, minCutWidth, lipgloss.Width(headers[c])))
		avail -= limit[c]
	}
	for _, row := range out {
		for _, c := range flex {
			if cuts[c] == cutLeft {
				row[c] = clipLeft(row[c], limit[c])
			} else {
				row[c] = clipRight(row[c], limit[c])
			}
		}
	}
	return out
}

// clipRight keeps the start of s within width w, marking the cut with "…".
func clipRight(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	rs := []rune(s)
	for n := len(rs) - 1; n > 0; n-- {
		if lipgloss.Width(string(rs[:n])) <= w-1 {
			return string(rs[:n]) + "…"
		}
	}
	return "…"
}

// clipLeft keeps the end of s within width w, marking the cut with "…". A
// path keeps whole trailing elements when the last one fits:
// "src/deeply/nested/dir/file.rs" becomes "…/nested/dir/file.rs".
func clipLeft(s string, w int) string {
	if lipgloss.Width(s) <= w {
		return s
	}
	for i := 0; i < len(s); i++ {
		if s[i] == '/' && lipgloss.Width(s[i:])+1 <= w {
			return "…" + s[i:]
		}
	}
	rs := []rune(s)
	for n := 1; n < len(rs); n++ {
		if lipgloss.Width(string(rs[n:])) <= w-1 {
			return "…" + string(rs[n:])
		}
	}
	return "…"
}

// stdoutWidth is the width of the terminal stdout is, or defaultWidth when
// it does not say.
func (a *app) stdoutWidth() int {
	if f, ok := a.stdout.(*os.File); ok {
		if ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ); err == nil && ws.Col > 0 {
			return int(ws.Col)
		}
	}
	return defaultWidth
}
