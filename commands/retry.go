package commands

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) retryCommand() *cli.Command {
	return &cli.Command{
		Name:      "retry",
		Usage:     "re-queue a FAILED, CANCELLED or EXPIRED job as a new attempt series",
		ArgsUsage: "ID",
		Flags:     []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the job as JSON"}},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.NArg() != 1 {
				return usageErrorf("retry needs exactly one job id")
			}
			j, err := ask(ctx, a, c, func(cl *ipc.Client) (*engine.Job, error) { return cl.Retry(ctx, c.Args().First()) })
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(a.stdout, j)
			}
			fmt.Fprintln(a.stdout, j.ID)
			return nil
		},
	}
}
