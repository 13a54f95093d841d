package commands

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/ipc"
)

// CommandTree is stq's command line as urfave/cli defines it, for tools
// that document it (the man page generator, internal/mangen). It writes
// nowhere and runs nothing until Run.
func CommandTree(version string) *cli.Command {
	a := &app{version: version, stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	return a.cli()
}

// showCompletionCommand makes the library's `completion` command visible:
// `stq completion bash|zsh|fish` is how completion is switched on.
func showCompletionCommand(c *cli.Command) {
	c.Hidden = false
	c.Usage = "print a shell completion script: stq completion bash|zsh|fish"
}

// completionWait bounds how long a completion asks the daemon: a shell
// waits for it on every Tab.
const completionWait = time.Second

// completeArgs gives a command completion of its arguments and of the
// values of its --queue and --job flags, from the daemon when it runs.
// Flags and subcommands complete as the library does.
func (a *app) completeArgs(c *cli.Command) {
	var arg func(context.Context, *cli.Command)
	switch c.Name {
	case "cancel", "wait":
		arg = a.jobCompleter(engine.StateQueued, engine.StateRunning)
	case "show", "tail":
		arg = a.jobCompleter()
	case "retry":
		arg = a.jobCompleter(engine.StateFailed, engine.StateCancelled, engine.StateExpired)
	case "pause", "resume":
		arg = a.printQueues
	}
	c.ShellComplete = func(ctx context.Context, c *cli.Command) {
		args := c.Args().Slice()
		last := ""
		if len(args) > 0 {
			last = args[len(args)-1]
		}
		switch {
		case last == "--queue" || last == "-q":
			a.printQueues(ctx, c)
		case last == "--job" || last == "-j":
			a.jobCompleter()(ctx, c)
		case strings.HasPrefix(last, "-") || arg == nil:
			cli.DefaultCompleteWithFlags(ctx, c)
		default:
			arg(ctx, c)
		}
	}
}

// completionClient connects only to a daemon that holds the home's lock:
// a connection to an activated socket would start one, and a Tab should
// not.
func (a *app) completionClient(ctx context.Context, c *cli.Command) *ipc.Client {
	p, err := a.paths(c)
	if err != nil {
		return nil
	}
	if _, held := p.LockHolder(); !held {
		return nil
	}
	tok, err := p.ReadToken()
	if err != nil {
		return nil
	}
	cl, err := ipc.Connect(ctx, p.Socket, tok)
	if err != nil {
		return nil
	}
	return cl
}

// withDaemon runs fn with a client of the home's running daemon, all within
// completionWait; with no daemon to ask, a completion offers nothing.
func (a *app) withDaemon(ctx context.Context, c *cli.Command, fn func(context.Context, *ipc.Client)) {
	ctx, cancel := context.WithTimeout(ctx, completionWait)
	defer cancel()
	cl := a.completionClient(ctx, c)
	if cl == nil {
		return
	}
	defer cl.Close()
	fn(ctx, cl)
}

// jobCompleter prints the newest jobs in the given states (any state when
// none) as "short-id:STATE queue type subject".
func (a *app) jobCompleter(states ...engine.State) func(context.Context, *cli.Command) {
	return func(ctx context.Context, c *cli.Command) {
		a.withDaemon(ctx, c, func(ctx context.Context, cl *ipc.Client) {
			params := ipc.ListParams{Limit: 100}
			for _, s := range states {
				params.States = append(params.States, string(s))
			}
			res, err := cl.List(ctx, params)
			if err != nil {
				return
			}
			w := c.Root().Writer
			for _, j := range res.Jobs {
				id := j.ID
				if j.ShortID != "" {
					id = j.ShortID
				}
				fmt.Fprintf(w, "%s:%s %s %s %s\n", id, j.State, j.Queue, j.Type, oneLine(j.Subject))
			}
		})
	}
}

// printQueues prints the queues the daemon knows: those with jobs and the
// paused ones.
func (a *app) printQueues(ctx context.Context, c *cli.Command) {
	a.withDaemon(ctx, c, func(ctx context.Context, cl *ipc.Client) {
		st, err := cl.Stats(ctx)
		if err != nil {
			return
		}
		names := slices.Collect(maps.Keys(st.Queues))
		names = append(names, st.Paused...)
		slices.Sort(names)
		for _, q := range slices.Compact(names) {
			fmt.Fprintln(c.Root().Writer, q)
		}
	})
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
