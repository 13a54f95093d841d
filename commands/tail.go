package commands

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) tailCommand() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "print a job's output; with -f, follow output and job events",
		ArgsUsage: "[ID]",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing as things happen; with --job, stop when the job ends"},
			&cli.StringFlag{Name: "job", Aliases: []string{"j"}, Usage: "only this job"},
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Usage: "only jobs of this queue (with -f)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON event per line"},
		},
		Action: a.tail,
	}
}

func (a *app) tail(ctx context.Context, c *cli.Command) error {
	p := ipc.TailParams{JobID: c.String("job"), Queue: c.String("queue"), Follow: c.Bool("follow")}
	if c.NArg() > 1 || (c.NArg() == 1 && p.JobID != "") {
		return usageErrorf("give one job id, as an argument or with --job")
	}
	if c.NArg() == 1 {
		p.JobID = c.Args().First()
	}
	if !p.Follow && p.JobID == "" {
		return usageErrorf("tail without -f needs a job id")
	}
	cl, _, err := a.client(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	multi := p.JobID == ""
	asJSON := c.Bool("json")
	enc := json.NewEncoder(a.stdout)
	enc.SetEscapeHTML(false)
	if !p.Follow && !asJSON {
		j, err := cl.Get(ctx, p.JobID)
		if err != nil {
			return rpcFailure(err)
		}
		if j.LogTruncated {
			fmt.Fprintln(a.stdout, "[stq] earlier output was dropped: the log keeps the newest lines up to its size limit")
		}
	}
	for ev, err := range cl.Tail(ctx, p) {
		if err != nil {
			return rpcFailure(err)
		}
		if asJSON {
			if err := enc.Encode(&ev); err != nil {
				return err
			}
			continue
		}
		switch {
		case ev.Kind == engine.EventLog && ev.Line != nil:
			a.printLine(ev.JobID, ev.Line, multi)
		case ev.Kind == engine.EventJob && ev.Job != nil:
			a.printJobEvent(ev.Job)
		}
	}
	return nil
}

func (a *app) printJobEvent(j *engine.Job) {
	msg := fmt.Sprintf("-- job %s %s", j.ID, j.State)
	if j.State == engine.StateRunning {
		msg += fmt.Sprintf(" (attempt %d of %d)", j.Attempt, j.MaxAttempts)
	}
	if j.Error != "" && j.State != engine.StateRunning {
		msg += ": " + j.Error
	}
	fmt.Fprintln(a.stdout, msg)
}

func (a *app) printLine(jobID string, l *engine.LogLine, withJob bool) {
	prefix := l.Time.Local().Format("15:04:05.000")
	if withJob {
		prefix += " " + jobID
	}
	if l.Stream != "stdout" {
		prefix += " [" + l.Stream + "]"
	}
	fmt.Fprintf(a.stdout, "%s %s\n", prefix, l.Text)
}
