package commands

import (
	"context"
	"fmt"
	"time"

	"stq/engine"
	"stq/ipc"

	"github.com/urfave/cli/v3"
)

// liveJobIDs lists the jobs QUEUED or RUNNING now, in queue (every queue
// when it is empty): what `wait --queue` and `wait --all` wait for.
func liveJobIDs(ctx context.Context, cl *ipc.Client, queue string) ([]string, error) {
	p := ipc.ListParams{Queue: queue, States: []string{string(engine.StateQueued), string(engine.StateRunning)}, Limit: ipc.MaxListLimit}
	var ids []string
	for j, err := range cl.ListAll(ctx, p) {
		if err != nil {
			return nil, err
		}
		ids = append(ids, j.ID)
	}
	return ids, nil
}

// waitInChunks waits for the jobs ids names, ipc.MaxWaitIDs at a time (the
// most one dev.wait.v1 takes), within timeout when it is set, and hands
// each chunk's jobs to done as they are once the chunk has ended. When the
// timeout has run out, the chunks left are polled (a zero timeout) so that
// every job is still reported; timedOut then says that one had not ended.
func waitInChunks(ctx context.Context, cl *ipc.Client, ids []string, timeout *time.Duration, done func([]*engine.Job)) (timedOut bool, err error) {
	var deadline time.Time
	if timeout != nil {
		deadline = time.Now().Add(*timeout)
	}
	for len(ids) > 0 {
		n := min(len(ids), ipc.MaxWaitIDs)
		p := ipc.WaitParams{IDs: ids[:n]}
		if timeout != nil {
			left := engine.Duration(max(time.Until(deadline), 0))
			p.Timeout = &left
		}
		res, err := cl.Wait(ctx, p)
		if err != nil {
			return timedOut, err
		}
		timedOut = timedOut || res.TimedOut
		done(res.Jobs)
		ids = ids[n:]
	}
	return timedOut, nil
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
