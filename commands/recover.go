package commands

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) recoverCommand() *cli.Command {
	return &cli.Command{
		Name:  "recover",
		Usage: "find jobs marked RUNNING whose process is gone, kill leftovers, retry or fail them",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print a JSON object"}},
		Action: func(ctx context.Context, c *cli.Command) error {
			rep, err := ask(ctx, a, c, func(cl *ipc.Client) (*engine.RecoverReport, error) { return cl.Recover(ctx) })
			if err != nil {
				return err
			}
			if c.Bool("json") {
				return writeJSON(a.stdout, rep)
			}
			fmt.Fprintf(a.stdout, "scanned %d running jobs, recovered %d\n", rep.Scanned, len(rep.Recovered))
			for _, r := range rep.Recovered {
				killed := "no process left"
				if r.Killed {
					killed = fmt.Sprintf("killed process group %d", r.PID)
				}
				fmt.Fprintf(a.stdout, "%s\t%s\t%s\n", r.ID, r.NewState, killed)
			}
			return nil
		},
	}
}
