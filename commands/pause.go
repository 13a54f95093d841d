package commands

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"stq/ipc"
)

// queueArg is the one queue name pause and resume take.
func queueArg(c *cli.Command) (string, error) {
	if c.NArg() != 1 || c.Args().First() == "" {
		return "", usageErrorf("give exactly one queue name")
	}
	return c.Args().First(), nil
}

func (a *app) pauseCommand() *cli.Command {
	return a.queueCommand("pause", "stop a queue from starting jobs; running ones finish; survives restarts",
		func(ctx context.Context, cl *ipc.Client, p Paths, queue string) error {
			if err := cl.Pause(ctx, queue); err != nil {
				return err
			}
			a.warnUnknownQueue(ctx, cl, p, queue)
			return nil
		})
}

func (a *app) resumeCommand() *cli.Command {
	return a.queueCommand("resume", "let a paused queue start jobs again",
		func(ctx context.Context, cl *ipc.Client, _ Paths, queue string) error { return cl.Resume(ctx, queue) })
}

// queueCommand is pause or resume: a command that takes one QUEUE and
// makes its call with a client of the selected home.
func (a *app) queueCommand(name, usage string, call func(ctx context.Context, cl *ipc.Client, p Paths, queue string) error) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
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
			if err := call(ctx, cl, p, q); err != nil {
				return rpcFailure(err)
			}
			return nil
		},
	}
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
