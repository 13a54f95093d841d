// Package commands is the composition root of the stq binary: the urfave/cli
// subcommands, which wire the engine, the SQLite store, the executors and
// the socket together for the daemon, and talk to the daemon as clients.
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"stq/ipc"
)

// app holds what every command needs; commands are methods on it so tests
// can run them with their own writers and no global state.
type app struct {
	version string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// Main runs the stq command line and returns the process exit code.
func Main(ctx context.Context, args []string, version string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{version: version, stdin: stdin, stdout: stdout, stderr: stderr}
	err := a.cli().RunContext(ctx, args)
	if err != nil && err != errSilentFailure {
		fmt.Fprintf(stderr, "stq: %s\n", firstLine(err.Error()))
		var ee *exitError
		if errors.As(err, &ee) && ee.hint != "" {
			fmt.Fprintf(stderr, "hint: %s\n", ee.hint)
		}
	}
	return exitCode(err)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

func (a *app) cli() *cli.App {
	cmds := []*cli.Command{
		a.daemonCommand(),
		a.enqueueCommand(),
		a.cancelCommand(),
		a.listCommand(),
		a.showCommand(),
		a.waitCommand(),
		a.tailCommand(),
		a.statsCommand(),
		a.recoverCommand(),
		a.benchCommand(),
		a.mcpCommand(),
	}
	cmds = append(cmds, a.queueCommands()...)
	// urfave/cli's own usage-error handling prints help and exits 1 (or 3
	// for an unknown help topic); stq's contract is exit 2 with one line.
	onUsage := func(_ *cli.Context, err error, _ bool) error {
		return &exitError{code: ExitUsage, err: err, hint: "see `stq --help`"}
	}
	for _, c := range cmds {
		c.OnUsageError = onUsage
	}
	return &cli.App{
		Name:                 "stq",
		Usage:                "a fast local job queue with supersede, retries and crash recovery",
		Version:              a.version,
		Reader:               a.stdin,
		Writer:               a.stdout,
		ErrWriter:            a.stderr,
		HideHelpCommand:      true,
		EnableBashCompletion: false,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "home", EnvVars: []string{"STQ_HOME"}, Usage: "directory holding stq.db, stq.sock, token, config.toml and the lock file"},
		},
		Commands:     cmds,
		OnUsageError: onUsage,
		// stq decides exit codes itself; never let the library call os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return &exitError{code: ExitUsage, err: fmt.Errorf("unknown command %q", c.Args().First()), hint: "see `stq --help`"}
			}
			return cli.ShowAppHelp(c)
		},
	}
}

func (a *app) paths(c *cli.Context) (Paths, error) {
	return resolvePaths(c.String("home"))
}

// client connects to the daemon of the selected home. Authentication goes
// out with the first call (ipc.Connect), so a one-shot command pays one
// round trip.
func (a *app) client(c *cli.Context) (*ipc.Client, Paths, error) {
	p, err := a.paths(c)
	if err != nil {
		return nil, p, err
	}
	tok, err := p.ReadToken()
	if err != nil {
		return nil, p, rpcFailure(err)
	}
	ctx, cancel := context.WithTimeout(c.Context, dialTimeout)
	defer cancel()
	cl, err := ipc.Connect(ctx, p.Socket, tok)
	if err != nil {
		return nil, p, rpcFailure(err)
	}
	return cl, p, nil
}

// withClient runs fn with a client of the selected home and maps its error
// to an exit code.
func (a *app) withClient(c *cli.Context, fn func(*ipc.Client) error) error {
	cl, _, err := a.client(c)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := fn(cl); err != nil {
		return rpcFailure(err)
	}
	return nil
}

// rpcFailure turns a client error into one with the right exit code. An
// error that already carries one keeps it.
func rpcFailure(err error) error {
	var (
		re *ipc.RPCError
		ee *exitError
	)
	switch {
	case errors.As(err, &ee):
		return err
	case errors.Is(err, ipc.ErrNoDaemon):
		return &exitError{code: ExitNoDaemon, err: err}
	case errors.As(err, &re):
		return &exitError{code: ExitFailure, err: errors.New(re.Message)}
	}
	return &exitError{code: ExitFailure, err: err}
}

// stdoutIsTerminal decides between styled and plain output.
func (a *app) stdoutIsTerminal() bool {
	f, ok := a.stdout.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
