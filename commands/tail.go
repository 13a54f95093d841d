package commands

import (
	"encoding/json"
	"fmt"

	"github.com/urfave/cli/v2"

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

func (a *app) tail(c *cli.Context) error {
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
	cl, _, err := a.client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	multi := p.JobID == ""
	asJSON := c.Bool("json")

	if !p.Follow {
		if !asJSON {
			var j engine.Job
			if err := cl.Call(c.Context, "dev.get.v1", map[string]string{"id": p.JobID}, &j); err != nil {
				return rpcFailure(err)
			}
			if j.LogTruncated {
				fmt.Fprintln(a.stdout, "[stq] earlier output was dropped: the log keeps the newest lines up to its size limit")
			}
		}
		// Page through the stored log; the daemon caps each reply.
		for {
			var res ipc.LinesResult
			if err := cl.Call(c.Context, "logs.tail.v1", p, &res); err != nil {
				return rpcFailure(err)
			}
			for i := range res.Lines {
				if asJSON {
					if err := json.NewEncoder(a.stdout).Encode(engine.Event{Kind: engine.EventLog, JobID: p.JobID, Line: &res.Lines[i]}); err != nil {
						return err
					}
					continue
				}
				a.printLine(p.JobID, &res.Lines[i], false)
			}
			if !res.More || len(res.Lines) == 0 {
				return nil
			}
			p.AfterSeq = res.Lines[len(res.Lines)-1].Seq
		}
	}

	// The final reply carries the finished job; say how it ended unless an
	// event already did (a job that ended before tail started sends none).
	printedEnd := false
	onEvent := func(method string, params json.RawMessage) error {
		if asJSON {
			_, err := fmt.Fprintf(a.stdout, "%s\n", params)
			return err
		}
		var ev engine.Event
		if err := json.Unmarshal(params, &ev); err != nil {
			return fmt.Errorf("decode event: %w", err)
		}
		switch {
		case ev.Kind == engine.EventLog && ev.Line != nil:
			a.printLine(ev.JobID, ev.Line, multi)
		case ev.Kind == engine.EventJob && ev.Job != nil:
			a.printJobEvent(ev.Job)
			printedEnd = printedEnd || (ev.JobID == p.JobID && ev.Job.State.Terminal())
		}
		return nil
	}
	var final ipc.TailResult
	if err := cl.Stream(c.Context, "logs.tail.v1", p, onEvent, &final); err != nil {
		if c.Context.Err() != nil {
			return nil // interrupted by the user
		}
		return rpcFailure(err)
	}
	if final.Job != nil && !printedEnd && !asJSON {
		a.printJobEvent(final.Job)
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
