package commands

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) cancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel jobs by id, or every queued and running job of a subject",
		ArgsUsage: "[ID...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "subject", Aliases: []string{"s"}, Usage: "cancel the QUEUED and RUNNING jobs of this subject"},
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Value: engine.DefaultQueue, Usage: "queue of --subject"},
			&cli.StringFlag{Name: "type", Aliases: []string{"t"}, Value: engine.DefaultType, Usage: "type of --subject"},
			&cli.BoolFlag{Name: "json", Usage: "print the cancelled jobs as a JSON array"},
		},
		Action: a.cancel,
	}
}

// cancel prints the id of each job it cancelled. A running job is killed
// first; the command returns once it is recorded CANCELLED. A --subject
// that matches no queued or running job says so and exits 1.
func (a *app) cancel(ctx context.Context, c *cli.Command) error {
	ids := c.Args().Slice()
	var reqs []engine.CancelRequest
	switch {
	case c.IsSet("subject") && len(ids) > 0:
		return usageErrorf("give job ids or --subject, not both")
	case c.IsSet("subject"):
		if c.String("subject") == "" {
			return usageErrorf("--subject must not be empty")
		}
		reqs = append(reqs, engine.CancelRequest{Queue: c.String("queue"), Type: c.String("type"), Subject: c.String("subject")})
	case len(ids) == 0:
		return usageErrorf("cancel needs a job id or --subject")
	default:
		for _, id := range ids {
			reqs = append(reqs, engine.CancelRequest{ID: id})
		}
	}
	cl, _, err := a.client(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	var cancelled []*engine.Job
	var firstErr error
	for _, r := range reqs {
		jobs, err := cl.Cancel(ctx, r)
		if err != nil {
			if firstErr == nil {
				firstErr = rpcFailure(err)
			}
			if len(reqs) > 1 {
				fmt.Fprintf(a.stderr, "stq: %s: %s\n", r.ID, firstLine(rpcFailure(err).Error()))
			}
			continue
		}
		cancelled = append(cancelled, jobs...)
	}
	if c.Bool("json") {
		if cancelled == nil {
			cancelled = []*engine.Job{}
		}
		if err := writeJSON(a.stdout, cancelled); err != nil {
			return err
		}
	} else {
		for _, j := range cancelled {
			fmt.Fprintln(a.stdout, j.ID)
		}
	}
	if firstErr != nil && len(reqs) > 1 {
		return errSilentFailure
	}
	if firstErr == nil && len(cancelled) == 0 && len(ids) == 0 {
		// A subject nothing matched: a typo must not look like success.
		return failf("0 queued or running jobs matched subject %s in queue %s, type %s", c.String("subject"), c.String("queue"), c.String("type"))
	}
	return firstErr
}

func (a *app) listCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list jobs, newest first",
		Description: "Shows one page of at most --limit jobs; on a terminal the last line says when\n" +
			"more match. A terminal shows short ids and cuts long cells to fit its width;\n" +
			"on a pipe rows are tab-separated, never cut, with the full id first (cut -f1).\n" +
			"--wide shows every column. --all streams every match a page at a time (with\n" +
			"--json, one JSON object per line; otherwise tab-separated rows under one header\n" +
			"line).",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "state", Usage: "only jobs in these states (repeatable or comma-separated)"},
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Usage: "only this queue"},
			&cli.StringFlag{Name: "type", Aliases: []string{"t"}, Usage: "only this type"},
			&cli.StringFlag{Name: "subject", Aliases: []string{"s"}, Usage: "only this subject"},
			&cli.IntFlag{Name: "limit", Aliases: []string{"n"}, Value: 50, Usage: "at most N jobs (max 10000); with --all, the page size"},
			&cli.BoolFlag{Name: "all", Usage: "every matching job, streamed a page at a time"},
			&cli.BoolFlag{Name: "wide", Aliases: []string{"w"}, Usage: "every column (full id, type, generation, attempt, priority, created), uncut"},
			&cli.BoolFlag{Name: "json", Usage: "print a JSON array (with --all: one JSON object per line)"},
		},
		Action: a.list,
	}
}

func (a *app) list(ctx context.Context, c *cli.Command) error {
	p := ipc.ListParams{Queue: c.String("queue"), Type: c.String("type"), Subject: c.String("subject"), Limit: c.Int("limit")}
	for _, s := range c.StringSlice("state") {
		for _, part := range strings.Split(s, ",") {
			st, err := engine.ParseState(strings.TrimSpace(part))
			if err != nil {
				return usageErrorf("--state: unknown state %q (want QUEUED, RUNNING, DONE, FAILED, CANCELLED, SUPERSEDED or EXPIRED)", part)
			}
			p.States = append(p.States, string(st))
		}
	}
	if p.Limit < 1 || p.Limit > ipc.MaxListLimit {
		return usageErrorf("--limit must be between 1 and %d", ipc.MaxListLimit)
	}
	if c.Bool("all") {
		return a.withClient(ctx, c, func(cl *ipc.Client) error { return a.listAll(ctx, c, cl, p) })
	}
	var res *ipc.ListResult
	if err := a.withClient(ctx, c, func(cl *ipc.Client) (err error) {
		res, err = cl.List(ctx, p)
		return err
	}); err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, nonNilJobs(res.Jobs))
	}
	terminal, wide, now := a.stdoutIsTerminal(), c.Bool("wide"), time.Now()
	headers := listHeaders
	if wide {
		headers = wideHeaders
	}
	rows := make([][]string, 0, len(res.Jobs))
	for _, j := range res.Jobs {
		rows = append(rows, listRow(j, now, wide, terminal && !wide))
	}
	if terminal && !wide {
		rows = fitTable(headers, rows, listCuts, a.stdoutWidth())
	}
	a.styles().writeList(a.stdout, headers, rows, listStateCol)
	if res.NextCursor != "" && terminal {
		fmt.Fprintf(a.stdout, "… more jobs match than the %d shown: raise --limit or use --all\n", len(res.Jobs))
	}
	return nil
}

// listAll streams every match: memory holds one page, whatever matches.
func (a *app) listAll(ctx context.Context, c *cli.Command, cl *ipc.Client, p ipc.ListParams) error {
	asJSON, wide := c.Bool("json"), c.Bool("wide")
	enc := json.NewEncoder(a.stdout)
	if !asJSON {
		headers := listHeaders
		if wide {
			headers = wideHeaders
		}
		fmt.Fprintln(a.stdout, tsvRow(headers))
	}
	for j, err := range cl.ListAll(ctx, p) {
		if err != nil {
			return err
		}
		if asJSON {
			if err := enc.Encode(j); err != nil {
				return err
			}
			continue
		}
		if _, err := fmt.Fprintln(a.stdout, tsvRow(listRow(j, time.Now(), wide, false))); err != nil {
			return err
		}
	}
	return nil
}

func nonNilJobs(jobs []*engine.Job) []*engine.Job {
	if jobs == nil {
		return []*engine.Job{}
	}
	return jobs
}

func (a *app) showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show one job with its attempt history",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON object"}},
		Action:    a.show,
	}
}

func (a *app) show(ctx context.Context, c *cli.Command) error {
	if c.NArg() != 1 {
		return usageErrorf("show needs exactly one job id")
	}
	var j *engine.Job
	if err := a.withClient(ctx, c, func(cl *ipc.Client) (err error) {
		j, err = cl.Get(ctx, c.Args().First())
		return err
	}); err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, j)
	}
	s := a.styles()
	w := a.stdout
	field := func(k, v string) { s.field(w, 13, k, v) }
	field("id", j.ID)
	field("state", s.stateText(j.State))
	field("queue", j.Queue)
	field("type", j.Type)
	if j.Subject != "" {
		field("subject", j.Subject)
		field("generation", fmt.Sprint(j.Generation))
	}
	field("priority", fmt.Sprint(j.Priority))
	field("attempt", fmt.Sprintf("%d of %d", j.Attempt, j.MaxAttempts))
	if len(j.Command) > 0 {
		field("command", commandText(j))
	}
	if j.Cwd != "" {
		field("cwd", j.Cwd)
	}
	if j.BaseEnv != nil || len(j.Command) > 0 {
		field("environment", envSummary(j.BaseEnv))
	}
	for k, v := range j.Env {
		field("env", k+"="+v)
	}
	if len(j.Payload) > 0 && string(j.Payload) != "null" {
		field("payload", clip(string(j.Payload), 200))
	}
	field("created", fmtTime(j.CreatedAt))
	field("run at", fmtTime(j.RunAt))
	field("started", fmtTimePtr(j.StartedAt))
	field("finished", fmtTimePtr(j.FinishedAt))
	field("deadline", j.Deadline.String())
	if j.TTL > 0 {
		field("ttl", j.TTL.String())
	}
	field("backoff", j.Backoff.String())
	if j.Waiting != "" {
		field("waiting", waitingText(j, time.Now()))
	}
	var conds []string
	if j.WaitIdle {
		conds = append(conds, "idle")
	}
	if j.RequireCharging {
		conds = append(conds, "on AC")
	}
	if len(conds) > 0 {
		field("only when", strings.Join(conds, ", "))
	}
	if j.Debounce > 0 {
		field("debounce", j.Debounce.String())
	}
	if j.Replace {
		field("replace", "stops a running older generation")
	}
	if len(j.After) > 0 {
		field("after", strings.Join(j.After, ", "))
	}
	field("exit code", fmtIntPtr(j.ExitCode))
	if j.Error != "" {
		field("error", j.Error)
	}
	if len(j.Attempts) > 0 {
		fmt.Fprintln(w)
		rows := make([][]string, 0, len(j.Attempts))
		for _, at := range j.Attempts {
			pid := "-"
			if at.PID > 0 {
				pid = fmt.Sprint(at.PID)
			}
			reason := orDash(at.Reason)
			if s.styled {
				reason = clip(reason, 60) // a pipe gets it whole
			}
			rows = append(rows, []string{fmt.Sprint(at.N), fmtTime(at.StartedAt), fmtTimePtr(at.FinishedAt), string(at.Outcome), fmtIntPtr(at.ExitCode), pid, reason})
		}
		s.writeTable(w, []string{"#", "STARTED", "FINISHED", "OUTCOME", "EXIT", "PID", "REASON"}, rows, -1)
	}
	return nil
}

func (a *app) waitCommand() *cli.Command {
	return &cli.Command{
		Name:      "wait",
		Usage:     "wait for jobs to end; exit 0 only if all are DONE",
		ArgsUsage: "ID... | --queue QUEUE | --all",
		Description: "Prints ID<TAB>STATE for each job once they have ended. --queue and --all wait\n" +
			"for the jobs QUEUED or RUNNING (in that queue, or anywhere) when the command\n" +
			"starts; jobs enqueued after that are not waited for.\n" +
			"Exit 0 if every job ended DONE, 1 if one did not, 4 if --timeout ran out first.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "timeout", Usage: "give up after DURATION (exit 4)"},
			&cli.StringFlag{Name: "queue", Aliases: []string{"q"}, Usage: "wait for the jobs QUEUED or RUNNING in this queue now"},
			&cli.BoolFlag{Name: "all", Usage: "wait for every job QUEUED or RUNNING now"},
			&cli.BoolFlag{Name: "json", Usage: "print the jobs as a JSON array"},
		},
		Action: a.wait,
	}
}

func (a *app) wait(ctx context.Context, c *cli.Command) error {
	ids := c.Args().Slice()
	byQueue, all := c.IsSet("queue"), c.Bool("all")
	switch {
	case byQueue && all:
		return usageErrorf("give --queue or --all, not both")
	case (byQueue || all) && len(ids) > 0:
		return usageErrorf("give job ids, --queue or --all, not several")
	case byQueue && c.String("queue") == "":
		return usageErrorf("--queue must not be empty")
	case !byQueue && !all && len(ids) == 0:
		return usageErrorf("wait needs job ids, --queue QUEUE or --all")
	}
	var timeout *time.Duration
	if c.IsSet("timeout") {
		d, err := engine.ParseDuration(c.String("timeout"))
		if err != nil {
			return usageErrorf("--timeout: %v", err)
		}
		timeout = &d
	}
	asJSON := c.Bool("json")
	var jobs []*engine.Job // for --json, printed at the end
	timedOut, allDone := false, true
	if err := a.withClient(ctx, c, func(cl *ipc.Client) (err error) {
		if byQueue || all {
			if ids, err = liveJobIDs(ctx, cl, c.String("queue")); err != nil {
				return err
			}
		}
		timedOut, err = waitInChunks(ctx, cl, ids, timeout, func(chunk []*engine.Job) {
			for _, j := range chunk {
				allDone = allDone && j.State == engine.StateDone
			}
			if asJSON {
				jobs = append(jobs, chunk...)
				return
			}
			for _, j := range chunk {
				line := j.ID + "\t" + string(j.State)
				if j.State != engine.StateDone && j.Error != "" {
					line += "\t" + j.Error
				}
				fmt.Fprintln(a.stdout, line)
			}
		})
		return err
	}); err != nil {
		return err
	}
	if asJSON {
		if err := writeJSON(a.stdout, nonNilJobs(jobs)); err != nil {
			return err
		}
	}
	if timedOut {
		return &exitError{code: ExitTimeout, err: fmt.Errorf("timed out after %s waiting for jobs", c.String("timeout"))}
	}
	if !allDone {
		return errSilentFailure
	}
	return nil
}
