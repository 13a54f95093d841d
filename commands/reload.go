package commands

import (
	"context"
	"fmt"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

func (a *app) reloadCommand() *cli.Command {
	return &cli.Command{
		Name:  "reload",
		Usage: "make the daemon read config.toml again, without a restart (as SIGHUP does)",
		Description: "Handlers, queues, retention, [limits], daemon.grace, daemon.kill_grace,\n" +
			"daemon.default_deadline, daemon.log_limit and daemon.max_payload take effect at\n" +
			"once; running jobs are left alone. daemon.workers, daemon.durability,\n" +
			"daemon.max_connections, daemon.max_request_bytes and daemon.idle_threshold take\n" +
			"effect at the next restart (a note on stderr names those that changed).\n" +
			"An invalid file changes nothing: exit 1 with the error.",
		Flags:  []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print the reply as JSON"}},
		Action: a.reload,
	}
}

func (a *app) reload(ctx context.Context, c *cli.Command) error {
	res, err := ask(ctx, a, c, func(cl *ipc.Client) (*engine.ReloadResult, error) { return cl.Reload(ctx) })
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, res)
	}
	for _, s := range res.RestartNeeded {
		fmt.Fprintf(a.stderr, "note: %s changed; it takes effect when the daemon restarts\n", s)
	}
	return nil
}
