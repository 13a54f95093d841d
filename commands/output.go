package commands

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/muesli/termenv"

	"stq/engine"
)

// Output rules: data goes to stdout, messages and errors to stderr. On a
// terminal, tables are drawn with lipgloss (colour unless NO_COLOR is set)
// and may be cut to fit the width; on a pipe they are plain text, one line
// per row, cells separated by one tab, never padded nor cut, so `cut -f`
// and `awk -F'\t'` read them.

// styles gathers every style in one place so plain mode is one switch.
type styles struct {
	styled bool
	header lipgloss.Style
	state  map[engine.State]lipgloss.Style
	border lipgloss.Style
	label  lipgloss.Style
}

func (a *app) styles() styles {
	_, noColor := os.LookupEnv("NO_COLOR")
	return newStyles(a.stdout, a.stdoutIsTerminal(), noColor)
}

// newStyles decides the output style: plain text unless w is a terminal,
// and on a terminal tables without colour when noColor is set.
func newStyles(w io.Writer, terminal, noColor bool) styles {
	s := styles{styled: terminal}
	if !s.styled {
		return s
	}
	r := lipgloss.NewRenderer(w)
	if noColor {
		r.SetColorProfile(termenv.Ascii)
	}
	s.header = r.NewStyle().Bold(true).Padding(0, 1)
	s.border = r.NewStyle().Foreground(lipgloss.Color("8"))
	s.label = r.NewStyle().Bold(true)
	s.state = map[engine.State]lipgloss.Style{
		engine.StateQueued:     r.NewStyle().Foreground(lipgloss.Color("4")),
		engine.StateRunning:    r.NewStyle().Foreground(lipgloss.Color("3")),
		engine.StateDone:       r.NewStyle().Foreground(lipgloss.Color("2")),
		engine.StateFailed:     r.NewStyle().Foreground(lipgloss.Color("1")),
		engine.StateCancelled:  r.NewStyle().Foreground(lipgloss.Color("5")),
		engine.StateSuperseded: r.NewStyle().Foreground(lipgloss.Color("8")),
		engine.StateExpired:    r.NewStyle().Foreground(lipgloss.Color("8")),
	}
	return s
}

// writeTable prints rows under headers. stateCol, if >= 0, is coloured by
// job state.
func (s styles) writeTable(w io.Writer, headers []string, rows [][]string, stateCol int) {
	if !s.styled {
		fmt.Fprintln(w, tsvRow(headers))
		for _, r := range rows {
			fmt.Fprintln(w, tsvRow(r))
		}
		return
	}
	t := table.New().
		Border(lipgloss.RoundedBorder()).
		BorderStyle(s.border).
		Headers(headers...).
		Rows(rows...).
		StyleFunc(func(row, col int) lipgloss.Style {
			if row == table.HeaderRow {
				return s.header
			}
			st := lipgloss.NewStyle().Padding(0, 1)
			if col == stateCol && row >= 0 && row < len(rows) {
				if c, ok := s.state[engine.State(rows[row][col])]; ok {
					return c.Padding(0, 1)
				}
			}
			return st
		})
	fmt.Fprintln(w, t.Render())
}

// writeList prints rows under headers like writeTable, but on a terminal
// without column borders: a rule under the headers and two spaces between
// columns (listOverhead), which leaves room for the cells of a wide list.
func (s styles) writeList(w io.Writer, headers []string, rows [][]string, stateCol int) {
	if !s.styled {
		s.writeTable(w, headers, rows, stateCol)
		return
	}
	last := len(headers) - 1
	t := table.New().
		Border(lipgloss.NormalBorder()).
		BorderTop(false).BorderBottom(false).BorderLeft(false).BorderRight(false).
		BorderColumn(false).BorderRow(false).BorderHeader(true).
		BorderStyle(s.border).
		Headers(headers...).
		Rows(rows...).
		StyleFunc(func(row, col int) lipgloss.Style {
			gap := 2
			if col == last {
				gap = 0
			}
			if row == table.HeaderRow {
				return s.header.Padding(0, gap, 0, 0)
			}
			if col == stateCol && row >= 0 && row < len(rows) {
				if c, ok := s.state[engine.State(rows[row][col])]; ok {
					return c.Padding(0, gap, 0, 0)
				}
			}
			return lipgloss.NewStyle().Padding(0, gap, 0, 0)
		})
	lines := strings.Split(t.Render(), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ") // the last column's padding
	}
	fmt.Fprintln(w, strings.Join(lines, "\n"))
}

// listOverhead is the width writeList adds to n columns' cells.
func listOverhead(n int) int { return 2 * (n - 1) }

// tsvRow joins cells with tabs. A tab, newline or carriage return inside a
// cell is written as \t, \n or \r, so a row stays one line of its columns.
func tsvRow(cells []string) string {
	esc := make([]string, len(cells))
	for i, c := range cells {
		esc[i] = tsvEscaper.Replace(c)
	}
	return strings.Join(esc, "\t")
}

var tsvEscaper = strings.NewReplacer("\t", `\t`, "\n", `\n`, "\r", `\r`)

// field prints a label and its value, the value starting at column width+1
// whatever the label's styling: the padding is measured on the label as
// shown, not on its escape codes.
func (s styles) field(w io.Writer, width int, k, v string) {
	label := s.key(k + ":")
	fmt.Fprintf(w, "%s%s %s\n", label, strings.Repeat(" ", max(0, width-lipgloss.Width(label))), v)
}

func (s styles) key(k string) string {
	if !s.styled {
		return k
	}
	return s.label.Render(k)
}

func (s styles) stateText(st engine.State) string {
	if !s.styled {
		return string(st)
	}
	if c, ok := s.state[st]; ok {
		return c.Render(string(st))
	}
	return string(st)
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05.000")
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return fmtTime(*t)
}

func fmtIntPtr(p *int) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clip shortens s for a table cell.
func clip(s string, n int) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n-1]) + "…"
}

func fmtBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
