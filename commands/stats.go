package commands

import (
	"fmt"
	"sort"
	"time"

	"github.com/urfave/cli/v2"

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

func (a *app) stats(c *cli.Context) error {
	cl, p, err := a.client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	var st engine.Stats
	if err := cl.Call(c.Context, "admin.stats.v1", struct{}{}, &st); err != nil {
		return rpcFailure(err)
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, statsOutput{Stats: st, Paths: p})
	}
	s := a.styles()
	w := a.stdout
	field := func(k, v string) { fmt.Fprintf(w, "%-10s %s\n", s.key(k+":"), v) }
	field("home", p.Home)
	field("socket", p.Socket)
	field("db", fmt.Sprintf("%s (%s)", p.DB, fmtBytes(st.DBBytes)))
	field("daemon", fmt.Sprintf("%s, up %s", st.Owner, time.Since(st.Started).Truncate(time.Second)))
	field("workers", fmt.Sprintf("%d (%d running)", st.Workers, st.Running))
	field("recovered", fmt.Sprint(st.Recovered))
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

func (a *app) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "find jobs marked RUNNING whose process is gone, kill leftovers, retry or fail them",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON object"}},
		Action: func(c *cli.Context) error {
			var rep engine.RecoverReport
			if err := a.call(c, "admin.recover.v1", struct{}{}, &rep); err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(a.stdout, rep)
			}
			fmt.Fprintf(a.stdout, "scanned %d running jobs, recovered %d\n", rep.Scanned, len(rep.Recovered))
			for _, r := range rep.Recovered {
				killed := "no process left"
				if r.Killed {
					killed = fmt.Sprintf("killed process group %d", r.PID)
				}
				fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", r.ID, r.NewState, killed)
			}
			return nil
		},
	}
}
