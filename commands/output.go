package commands

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/charmbracelet/lipgloss"
	"github.com/charmbracelet/lipgloss/table"
	"github.com/muesli/termenv"

	"stq/engine"
)

// Output rules: data goes to stdout, messages and errors to stderr. On a
// terminal, tables are drawn with lipgloss (colour unless NO_COLOR is set);
// on a pipe they are plain tab-aligned text that scripts can cut.

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
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(headers, "\t"))
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		tw.Flush()
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
