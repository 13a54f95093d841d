package commands

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
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
	field("db", fmt.Sprintf("%s (%s)", p.DB, fmtBytes(st.DBBytes)))
	field("daemon", fmt.Sprintf("pid %d, version %s, %s, up %s", st.PID, st.Version, st.Owner, time.Since(st.Started).Truncate(time.Second)))
	field("workers", fmt.Sprintf("%d (%d running)", st.Workers, st.Running))
	field("recovered", fmt.Sprint(st.Recovered))
	field("paused", orDash(strings.Join(st.Paused, ", ")))
	field("machine", machineText(st))
	field("retention", retentionText(st.Retention))
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
		Action: func(ctx context.Context, c *cli.Command) error {
			var rep *engine.RecoverReport
			if err := a.withClient(ctx, c, func(cl *ipc.Client) (err error) {
				rep, err = cl.Recover(ctx)
				return err
			}); err != nil {
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

// warnUnknownQueue warns on stderr when a queue just paused has no jobs
// and no [queues.NAME] section in the home's config.toml: most likely a
// typo. The pause stands (jobs may come later); the warning is a courtesy,
// so a failure to look is silent.
func (a *app) warnUnknownQueue(ctx context.Context, cl *ipc.Client, p Paths, queue string) {
	st, err := cl.Stats(ctx)
	if err != nil {
		return
	}
	for _, n := range st.Queues[queue] {
		if n > 0 {
			return
		}
	}
	cfg, err := loadConfig(p.Config)
	if err != nil {
		return
	}
	if _, ok := cfg.Queues[queue]; ok {
		return
	}
	fmt.Fprintf(a.stderr, "stq: warning: queue %q has no jobs and no [queues.%s] section in config.toml; paused anyway\n", queue, queue)
}

func (a *app) queueCommands() []*cli.Command {
	queueArg := func(c *cli.Command) (string, error) {
		if c.NArg() != 1 || c.Args().First() == "" {
			return "", usageErrorf("give exactly one queue name")
		}
		return c.Args().First(), nil
	}
	return []*cli.Command{
		{
			Name:      "pause",
			Usage:     "stop a queue from starting jobs; running ones finish; survives restarts",
			ArgsUsage: "QUEUE",
			Action: func(ctx context.Context, c *cli.Command) error {
				q, err := queueArg(c)
				if err != nil {
					return err
				}
				cl, p, err := a.client(ctx, c)
				if err != nil {
					return err
				}
				defer cl.Close()
				if err := cl.Pause(ctx, q); err != nil {
					return rpcFailure(err)
				}
				a.warnUnknownQueue(ctx, cl, p, q)
				return nil
			},
		},
		{
			Name:      "resume",
			Usage:     "let a paused queue start jobs again",
			ArgsUsage: "QUEUE",
			Action: func(ctx context.Context, c *cli.Command) error {
				q, err := queueArg(c)
				if err != nil {
					return err
				}
				return a.withClient(ctx, c, func(cl *ipc.Client) error { return cl.Resume(ctx, q) })
			},
		},
		{
			Name:      "retry",
			Usage:     "re-queue a FAILED, CANCELLED or EXPIRED job as a new attempt series",
			ArgsUsage: "ID",
			Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the job as JSON"}},
			Action: func(ctx context.Context, c *cli.Command) error {
				if c.NArg() != 1 {
					return usageErrorf("retry needs exactly one job id")
				}
				var j *engine.Job
				if err := a.withClient(ctx, c, func(cl *ipc.Client) (err error) {
					j, err = cl.Retry(ctx, c.Args().First())
					return err
				}); err != nil {
					return err
				}
				if c.Bool("json") {
					return writeJSON(a.stdout, j)
				}
				fmt.Fprintln(a.stdout, j.ID)
				return nil
			},
		},
	}
}
