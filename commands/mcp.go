package commands

import (
	"context"
	"io"

	"github.com/urfave/cli/v3"

	"stq/ipc"
	"stq/mcpserver"
)

func (a *app) mcpCommand() *cli.Command {
	return &cli.Command{
		Name:  "mcp",
		Usage: "serve the Model Context Protocol on stdio, for AI agents, as a client of the daemon",
		Description: "Register it with an agent as {\"command\": \"stq\", \"args\": [\"mcp\"]}.\n" +
			"The tools enqueue, list, show, wait, logs, cancel, retry and stats talk to the\n" +
			"daemon of the selected home; start one with `stq daemon`.",
		Action: func(ctx context.Context, c *cli.Command) error {
			home := c.String("home")
			return mcpserver.Run(ctx, io.NopCloser(a.stdin), nopWriteCloser{a.stdout}, mcpserver.Config{
				Version: a.version,
				Connect: func(ctx context.Context) (*ipc.Client, error) { return ipc.ConnectHome(ctx, home) },
			})
		},
	}
}

// nopWriteCloser keeps the MCP transport from closing the process's stdout.
type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
