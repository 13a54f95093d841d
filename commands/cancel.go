package commands

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"stq/engine"
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
				fmt.Fprintf(a.stderr, "stq: %s: %s\n", r.ID, errorLine(rpcFailure(err)))
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
			if j.State == engine.StateCancelled {
				fmt.Fprintln(a.stdout, j.ID)
			}
			a.noteStopElsewhere(j)
		}
	}
	if stillRunning(cancelled) && firstErr == nil {
		return errSilentFailure
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

// noteStopElsewhere says on stderr what became of a job that was running
// under another daemon sharing the store, which the cancel asked to stop.
func (a *app) noteStopElsewhere(j *engine.Job) {
	switch {
	case j.StopAsked == "":
	case j.State == engine.StateCancelled:
		fmt.Fprintf(a.stderr, "stq: %s was running under daemon %s, which stopped it\n", j.ID, j.StopAsked)
	default:
		fmt.Fprintf(a.stderr, "stq: %s is running under daemon %s, which was asked to stop it and has not yet; it is still %s\n", j.ID, j.StopAsked, j.State)
	}
}

// stillRunning says whether a cancel's reply holds a job whose owner did
// not stop it in time.
func stillRunning(jobs []*engine.Job) bool {
	for _, j := range jobs {
		if j.StopAsked != "" && j.State != engine.StateCancelled {
			return true
		}
	}
	return false
}
