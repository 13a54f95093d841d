package commands

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

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
	j, err := ask(ctx, a, c, func(cl *ipc.Client) (*engine.Job, error) { return cl.Get(ctx, c.Args().First()) })
	if err != nil {
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
	if conds := conditionsText(j); conds != "" {
		field("only when", conds)
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
		writeAttempts(s, w, j.Attempts)
	}
	return nil
}

// writeAttempts prints a job's attempt history; a terminal cuts long
// reasons, a pipe gets them whole.
func writeAttempts(s styles, w io.Writer, attempts []engine.Attempt) {
	rows := make([][]string, 0, len(attempts))
	for _, at := range attempts {
		pid := "-"
		if at.PID > 0 {
			pid = fmt.Sprint(at.PID)
		}
		reason := orDash(at.Reason)
		if s.styled {
			reason = clip(reason, 60)
		}
		rows = append(rows, []string{fmt.Sprint(at.N), fmtTime(at.StartedAt), fmtTimePtr(at.FinishedAt), string(at.Outcome), fmtIntPtr(at.ExitCode), pid, reason})
	}
	s.writeTable(w, []string{"#", "STARTED", "FINISHED", "OUTCOME", "EXIT", "PID", "REASON"}, rows, -1)
}

// conditionsText names the machine conditions a job waits for; "" for none.
func conditionsText(j *engine.Job) string {
	var conds []string
	if j.WaitIdle {
		conds = append(conds, "idle")
	}
	if j.RequireCharging {
		conds = append(conds, "on AC")
	}
	return strings.Join(conds, ", ")
}
