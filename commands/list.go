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
	res, err := ask(ctx, a, c, func(cl *ipc.Client) (*ipc.ListResult, error) { return cl.List(ctx, p) })
	if err != nil {
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
