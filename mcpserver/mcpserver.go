// Package mcpserver is stq's Model Context Protocol server: the tools an AI
// agent calls to enqueue, watch and manage jobs, served on stdio as a
// client of the running daemon.
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"stq/ipc"
)

// Config is what Run needs from the command line.
type Config struct {
	// Version is reported to the MCP client.
	Version string
	// Connect opens a client of the daemon; it is called per tool call, so
	// a daemon started after the server still gets used.
	Connect func(ctx context.Context) (*ipc.Client, error)
}

// connectTimeout bounds opening the socket, not the call: a daemon whose
// accept backlog is full should fail the tool call rather than hang it.
const connectTimeout = 5 * time.Second

// instructions is sent to the client at initialization; agents read it to
// decide how the tools fit together.
const instructions = "stq is a local job queue: a daemon runs jobs (subprocess commands or configured job types) " +
	"in the background, with retries, deadlines and supersede by subject. Typical use: `enqueue` a command, " +
	"then `wait` for its digest (state, exit code, last lines of output); read more output with `logs`. " +
	"Every tool needs the daemon; if a tool says it is not running, start it with `stq daemon`."

// Run serves MCP on in/out until ctx ends or the client goes away.
func Run(ctx context.Context, in io.ReadCloser, out io.WriteCloser, cfg Config) error {
	if cfg.Connect == nil {
		return errors.New("mcp: no way to connect to the daemon")
	}
	s := newServer(cfg, os.Getwd)
	err := s.Run(ctx, &mcp.IOTransport{Reader: in, Writer: out})
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		// Interrupted by a signal: that is how a stdio server is stopped.
		return nil
	}
	if err != nil {
		return fmt.Errorf("mcp: %w", err)
	}
	return nil
}

// newServer builds the server with every tool. getwd gives the default cwd
// of command jobs, the server's own directory as with `stq enqueue`.
func newServer(cfg Config, getwd func() (string, error)) *mcp.Server {
	version := cfg.Version
	if version == "" {
		version = "dev"
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "stq", Title: "stq job queue", Version: version}, &mcp.ServerOptions{
		Instructions: instructions,
		// The server sends no log messages, so it does not offer them.
		Capabilities: &mcp.ServerCapabilities{},
	})
	t := &tools{connect: cfg.Connect, getwd: getwd}
	t.register(s)
	return s
}

// tools holds the handlers' dependencies; each call opens its own client.
type tools struct {
	connect func(ctx context.Context) (*ipc.Client, error)
	getwd   func() (string, error)
}

// withClient runs fn with a client used for this one call, and turns its
// error into the text a tool error shows the agent.
func (t *tools) withClient(ctx context.Context, fn func(*ipc.Client) error) error {
	dctx, cancel := context.WithTimeout(ctx, connectTimeout)
	c, err := t.connect(dctx)
	cancel()
	if err != nil {
		return toolError(err)
	}
	defer c.Close()
	if err := fn(c); err != nil {
		return toolError(err)
	}
	return nil
}

// noDaemonText is what an agent sees when the daemon is down; it names the
// command so the agent can start it (or ask its user to).
const noDaemonText = "the stq daemon is not running, so nothing was done: start it with `stq daemon` " +
	"(it stays in the foreground, so run it in the background or in another terminal), then call this tool again"

// toolError turns an API error into a tool error's text. The daemon's own
// message is kept, without the JSON-RPC code, since it is written for
// people and says what was wrong.
func toolError(err error) error {
	var re *ipc.RPCError
	switch {
	case errors.Is(err, ipc.ErrNoDaemon):
		return errors.New(noDaemonText)
	case errors.Is(err, ipc.ErrUnauthorized):
		return fmt.Errorf("the stq daemon refused this server's token (was the daemon restarted with a new home?): %w", err)
	case errors.As(err, &re):
		return errors.New(re.Message)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("talk to the stq daemon: %w", err)
}
