package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) tailCommand() *cli.Command {
	return &cli.Command{
		Name:      "tail",
		Usage:     "print a job's output; with -f, follow output and job events",
		ArgsUsage: "[ID]",
		Description: "stq tail ID prints the job's whole stored log (like docker logs); -n N prints\n" +
			"its last N lines, -n +K its lines from the K-th on (line numbers count the\n" +
			"lines a truncated log dropped; --json shows each line's seq).\n" +
			"stq tail -f ID starts with the last 10 lines, like tail -f (-n +1: all of\n" +
			"them), follows until the job ends, and exits 0 if it ended DONE, 1 if not.\n" +
			"stq tail -f without a job follows every job's new output and events (or\n" +
			"--queue's) until interrupted, and exits 0.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing as things happen; with a job, stop when it ends (exit 0 if DONE, 1 if not)"},
			&cli.StringFlag{Name: "lines", Aliases: []string{"n"}, Usage: "N: the last N lines (default: all, or 10 with -f); +K: from line K on (+1: all)"},
			&cli.StringFlag{Name: "job", Aliases: []string{"j"}, Usage: "only this job"},
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Usage: "only jobs of this queue (with -f)"},
			&cli.BoolFlag{Name: "json", Usage: "print one JSON event per line"},
		},
		Action: a.tail,
	}
}

// followLines is where `tail -f ID` starts without -n: the last 10 lines,
// as tail -f does.
const followLines = 10

// parseTailLines reads -n: "N" is the last N lines, "+K" the lines from
// seq K on (as tail(1) counts, from 1; +0 is +1).
func parseTailLines(s string) (last *int, afterSeq int64, err error) {
	if k, ok := strings.CutPrefix(s, "+"); ok {
		n, err := strconv.ParseInt(k, 10, 64)
		if err != nil || n < 0 {
			return nil, 0, usageErrorf("-n %s: want N (the last N lines) or +K (from line K on)", s)
		}
		return nil, max(n-1, 0), nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return nil, 0, usageErrorf("-n %s: want N (the last N lines) or +K (from line K on)", s)
	}
	return &n, 0, nil
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
	switch {
	case c.IsSet("lines") && p.JobID == "":
		return usageErrorf("-n needs a job id: following every job prints only what happens from now on")
	case c.IsSet("lines"):
		var err error
		if p.Last, p.AfterSeq, err = parseTailLines(c.String("lines")); err != nil {
			return err
		}
	case p.Follow && p.JobID != "":
		n := followLines
		p.Last = &n
	}
	if p.Follow && p.JobID == "" {
		// Following everything ends only when interrupted, and that is
		// its normal end: exit 0.
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
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
	if !p.Follow && !asJSON && p.Last == nil && p.AfterSeq == 0 {
		// The whole log is asked for: say if its start is missing.
		j, err := cl.Get(ctx, p.JobID)
		if err != nil {
			return rpcFailure(err)
		}
		if j.LogTruncated {
			fmt.Fprintln(a.stdout, "[stq] earlier output was dropped: the log keeps the newest lines up to its size limit")
		}
	}
	var ended *engine.Job // the followed job, once it has ended
	for ev, err := range cl.Tail(ctx, p) {
		if err != nil {
			return rpcFailure(err)
		}
		if ev.Kind == engine.EventJob && ev.Job != nil && ev.Job.State.Terminal() && !multi {
			ended = ev.Job
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
	switch {
	case !p.Follow || multi:
		return nil
	case ended == nil:
		return failf("the daemon ended the follow before job %s ended", p.JobID)
	case ended.State != engine.StateDone:
		return errSilentFailure // its last line says how it ended
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
