// Package commands is the stq command line and its composition root: one
// file per urfave/cli subcommand, the daemon's wiring of engine, store,
// executors and socket, and the CLI's exit codes and hints (exit.go, hints.go).
package commands

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"strings"

	"github.com/urfave/cli/v3"

	"stq/ipc"
)

// app holds what every command needs; commands are methods on it so tests
// can run them with their own writers and no global state.
type app struct {
	args    []string // as typed, for naming flags the way the user wrote them
	version string
	stdin   io.Reader
	stdout  io.Writer
	stderr  io.Writer
}

// Main runs the stq command line and returns the process exit code.
func Main(ctx context.Context, args []string, version string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{args: args, version: version, stdin: stdin, stdout: stdout, stderr: stderr}
	err := a.cli().Run(ctx, args)
	if err != nil && err != errSilentFailure {
		fmt.Fprintf(stderr, "stq: %s\n", errorLine(err))
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

func (a *app) cli() *cli.Command {
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
		a.shutdownCommand(),
		a.reloadCommand(),
		a.benchCommand(),
		a.mcpCommand(),
		a.serviceCommand(),
	}
	cmds = append(cmds, a.pauseCommand(), a.resumeCommand(), a.retryCommand())
	for _, c := range cmds {
		c.OnUsageError = a.onUsageError
		oneDefault(c.Flags)
		a.completeArgs(c)
	}
	return &cli.Command{
		Name:            "stq",
		Usage:           "a fast local job queue with supersede, retries and crash recovery",
		Version:         a.version,
		Reader:          a.stdin,
		Writer:          a.stdout,
		ErrWriter:       a.stderr,
		HideHelpCommand: true,
		// Completion scripts come from `stq completion bash|zsh|fish`.
		EnableShellCompletion:           true,
		ConfigureShellCompletionCommand: showCompletionCommand,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "home", Sources: cli.EnvVars("STQ_HOME"), Usage: "directory holding stq.db, stq.sock, token, config.toml and the lock file"},
		},
		Commands:     cmds,
		OnUsageError: a.onUsageError,
		// stq decides exit codes itself; never let the library call os.Exit.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Present() {
				return unknownCommand(c.Args().First(), cmds)
			}
			return cli.ShowRootCommandHelp(c)
		},
	}
}

// onUsageError turns the library's usage errors into stq's contract: exit
// 2, one line naming the flag as it was typed, a hint naming the help of the
// command that was typed.
func (a *app) onUsageError(_ context.Context, c *cli.Command, err error, _ bool) error {
	return &exitError{code: ExitUsage, err: errors.New(a.describeUsage(err.Error())), hint: fmt.Sprintf("see '%s --help'", c.FullName())}
}

// describeUsage rewords the flag package's messages, which print every
// flag with one dash and Go's parse errors. The patterns are compiled here,
// on the error path, not at init, which every `stq enqueue` pays for.
func (a *app) describeUsage(msg string) string {
	undefinedFlag := regexp.MustCompile(`^flag provided but not defined: -+(.+)$`)
	badFlagValue := regexp.MustCompile(`^invalid value "(.*)" for flag -+([^:]+): (.*)$`)
	missingValue := regexp.MustCompile(`^flag needs an argument: -+(.+)$`)
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		return "unknown flag " + a.typed(m[1])
	}
	if m := missingValue.FindStringSubmatch(msg); m != nil {
		return a.typed(m[1]) + " needs a value"
	}
	if m := badFlagValue.FindStringSubmatch(msg); m != nil {
		want := m[3]
		switch {
		case strings.Contains(want, "ParseInt"), strings.Contains(want, "ParseUint"):
			want = "want a whole number"
		case strings.Contains(want, "ParseFloat"):
			want = "want a number"
		case strings.Contains(want, "ParseBool"):
			want = "want true or false"
		}
		return fmt.Sprintf("invalid value %q for %s: %s", m[1], a.typed(m[2]), want)
	}
	return msg
}

// typed is how the user wrote flag name: -x or --name, as on the command
// line (a long name typed with one dash keeps its one dash).
func (a *app) typed(name string) string {
	for _, arg := range a.args {
		if arg == "--" {
			break
		}
		flag, _, _ := strings.Cut(arg, "=")
		if strings.TrimLeft(flag, "-") == name && strings.HasPrefix(flag, "-") {
			return flag
		}
	}
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}

// oneDefault makes help show one default per flag: a usage text that says
// its own default keeps it, and a zero the library would print ("default:
// 0") means "not set", which the usage text explains.
func oneDefault(flags []cli.Flag) {
	for _, f := range flags {
		switch f := f.(type) {
		case *cli.IntFlag:
			f.HideDefault = f.HideDefault || f.Value == 0 || strings.Contains(f.Usage, "default")
		case *cli.Int64Flag:
			f.HideDefault = f.HideDefault || f.Value == 0 || strings.Contains(f.Usage, "default")
		case *cli.StringFlag:
			f.HideDefault = f.HideDefault || strings.Contains(f.Usage, "default")
		}
	}
}

func (a *app) paths(c *cli.Command) (Paths, error) {
	return resolvePaths(c.String("home"))
}

// client connects to the daemon of the selected home. Authentication goes
// out with the first call (ipc.Connect), so a one-shot command pays one
// round trip.
func (a *app) client(ctx context.Context, c *cli.Command) (*ipc.Client, Paths, error) {
	p, err := a.paths(c)
	if err != nil {
		return nil, p, err
	}
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	// A daemon that is starting is waited for (ipc.StartWait).
	cl, err := ipc.ConnectPaths(ctx, p)
	var te *ipc.TokenError
	switch {
	case errors.As(err, &te):
		pid, _ := p.LockHolder()
		if pid == "" {
			pid = "PID"
		}
		fix := "make it a file you can read, or remove it and restart the daemon"
		if errors.Is(te, fs.ErrNotExist) {
			fix = "restart the daemon to write it again"
		}
		return nil, p, &exitError{code: ExitAuth, err: err,
			hint: fmt.Sprintf("the daemon writes %s when it starts: %s (kill -TERM %s; stq daemon --detach)", te.Path, fix, pid)}
	case err != nil:
		return nil, p, rpcFailure(err)
	}
	return cl, p, nil
}

// withClient runs fn with a client of the selected home and maps its error
// to an exit code.
func (a *app) withClient(ctx context.Context, c *cli.Command, fn func(*ipc.Client) error) error {
	cl, _, err := a.client(ctx, c)
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := fn(cl); err != nil {
		return rpcFailure(err)
	}
	return nil
}

// ask makes one call with a client of the selected home and returns its
// answer, with the error mapped to an exit code as withClient does.
func ask[T any](ctx context.Context, a *app, c *cli.Command, call func(*ipc.Client) (T, error)) (T, error) {
	var res T
	err := a.withClient(ctx, c, func(cl *ipc.Client) (err error) {
		res, err = call(cl)
		return err
	})
	return res, err
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
	case errors.Is(err, ipc.ErrUnauthorized):
		msg := err.Error()
		if errors.As(err, &re) {
			msg = strings.Replace(msg, re.Error(), "the daemon refused this client's token", 1)
		}
		return &exitError{code: ExitAuth, err: errors.New(msg),
			hint: "the token file must be the one the running daemon wrote when it started; if it was replaced, restart the daemon (kill -TERM with the PID in the home's stq.lock)"}
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

// typedFor is the stq command for what people coming from other queues
// (pueue, task spoolers) type; "" when there is none.
func typedFor(name string) string {
	switch name {
	case "status":
		return "stats"
	case "add", "push":
		return "enqueue"
	case "ls":
		return "list"
	case "log", "logs", "follow":
		return "tail"
	case "kill", "remove", "rm":
		return "cancel"
	}
	return ""
}

// unknownCommand says a command does not exist and suggests the closest
// one: the alias table first, then the name within two edits.
func unknownCommand(name string, cmds []*cli.Command) error {
	best, dist := "", 3
	if alias := typedFor(name); alias != "" {
		best, dist = alias, 0
	}
	for _, c := range cmds {
		if d := editDistance(name, c.Name); d < dist {
			best, dist = c.Name, d
		}
	}
	hint := "see 'stq --help'"
	if best != "" {
		hint = fmt.Sprintf("did you mean 'stq %s'? (see 'stq --help')", best)
	}
	return &exitError{code: ExitUsage, err: fmt.Errorf("unknown command %q", name), hint: hint}
}

// editDistance is the Damerau-Levenshtein distance (adjacent swaps count
// one: "enqeue" is one from "enqueue").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
