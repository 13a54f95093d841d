package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
)

func (a *app) statsCommand() *cli.Command {
	return &cli.Command{
		Name:   "stats",
		Usage:  "show the daemon, its paths and job counts per queue",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON object"}},
		Action: a.stats,
	}
}

type statsOutput struct {
	engine.Stats
	Paths Paths `json:"paths"`
}

func (a *app) stats(ctx context.Context, c *cli.Command) error {
	cl, p, err := a.client(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	stp, err := cl.Stats(ctx)
	if err != nil {
		return rpcFailure(err)
	}
	st := *stp
	if c.Bool("json") {
		return writeJSON(a.stdout, statsOutput{Stats: st, Paths: p})
	}
	s := a.styles()
	w := a.stdout
	field := func(k, v string) { s.field(w, 10, k, v) }
	field("home", p.Home)
	field("socket", p.Socket)
	db := p.DB
	if st.Store != "" {
		db = st.Store
	}
	field("db", fmt.Sprintf("%s (%s)", db, fmtBytes(st.DBBytes)))
	field("daemon", fmt.Sprintf("pid %d, version %s, %s, up %s", st.PID, st.Version, st.Owner, time.Since(st.Started).Truncate(time.Second)))
	field("workers", fmt.Sprintf("%d (%d running)", st.Workers, st.Running))
	field("recovered", fmt.Sprint(st.Recovered))
	field("paused", orDash(strings.Join(st.Paused, ", ")))
	field("machine", machineText(st))
	field("retention", retentionText(st.Retention))
	if len(st.Daemons) > 0 {
		fmt.Fprintln(w)
		s.writeTable(w, []string{"DAEMON", "HOST", "PID", "VERSION", "UP", "HEARTBEAT"}, daemonRows(st, time.Now()), -1)
	}
	fmt.Fprintln(w)
	queues := make([]string, 0, len(st.Queues))
	for q := range st.Queues {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	headers := []string{"QUEUE"}
	for _, state := range engine.States {
		headers = append(headers, string(state))
	}
	rows := make([][]string, 0, len(queues))
	for _, q := range queues {
		row := []string{q}
		for _, state := range engine.States {
			row = append(row, fmt.Sprint(st.Queues[q][state]))
		}
		rows = append(rows, row)
	}
	s.writeTable(w, headers, rows, -1)
	return nil
}

// machineText says what --wait-idle and --require-charging jobs see.
func machineText(st engine.Stats) string {
	idle := "busy"
	if st.Idle {
		idle = "idle"
	}
	power := "on battery"
	if st.Power.OnAC {
		power = "on AC"
	}
	if !st.Power.Known {
		power = "power state unknown (treated as on AC)"
	}
	if st.Power.Note != "" {
		power += " (" + st.Power.Note + ")"
	}
	return idle + ", " + power
}

func retentionText(r engine.RetentionStats) string {
	age := "any age"
	if r.MaxAge > 0 {
		age = "up to " + r.MaxAge.String()
	}
	keep := "no count limit"
	if r.Keep > 0 {
		keep = fmt.Sprintf("at most %d", r.Keep)
	}
	return fmt.Sprintf("finished jobs kept %s, %s", age, keep)
}

// daemonRows are the cluster's live daemons, one row each, the one that
// answered marked. Heartbeats are the database's clock and now is this
// host's, so an age is clamped at zero rather than shown negative.
func daemonRows(st engine.Stats, now time.Time) [][]string {
	rows := make([][]string, 0, len(st.Daemons))
	for _, d := range st.Daemons {
		owner := d.Owner
		if owner == st.Owner {
			owner += " (this daemon)"
		}
		age := max(now.Sub(d.Heartbeat), 0).Round(100 * time.Millisecond)
		up := max(now.Sub(d.Started), 0).Truncate(time.Second)
		rows = append(rows, []string{owner, d.Host, fmt.Sprint(d.PID), d.Version, up.String(), age.String() + " ago"})
	}
	return rows
}
