// Command mangen writes stq(1), the man page, from stq's command
// definitions. It is a program of its own so that the stq binary never
// links the markdown and roff libraries it uses; goreleaser runs it before
// a release (see goreleaser.yaml): go run ./internal/mangen -o man/stq.1
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	docs "github.com/urfave/cli-docs/v3"

	"stq/commands"
)

func main() {
	out := flag.String("o", "", "write the page to `FILE` instead of stdout")
	version := flag.String("version", "", "the version the page names (default: none)")
	flag.Parse()
	w := io.Writer(os.Stdout)
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "mangen:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	if err := write(w, *version); err != nil {
		fmt.Fprintln(os.Stderr, "mangen:", err)
		os.Exit(1)
	}
}

// write renders the page: the library's sections from the command tree,
// then the sections it has no source for (environment, files, exit
// status), which an administrator looks for in a daemon's page.
func write(w io.Writer, version string) error {
	root := commands.CommandTree(version)
	// The library adds its own commands (completion) when a command line
	// first runs; --help runs one that does nothing else, and its output
	// goes nowhere (CommandTree's writers discard it).
	if err := root.Run(context.Background(), []string{"stq", "--help"}); err != nil {
		return fmt.Errorf("set up the command tree: %w", err)
	}
	page, err := docs.ToManWithSection(root, 1)
	if err != nil {
		return fmt.Errorf("render the man page: %w", err)
	}
	_, err = io.WriteString(w, strings.TrimRight(page, "\n")+"\n"+appendix())
	if err != nil {
		return fmt.Errorf("write the man page: %w", err)
	}
	return nil
}

func appendix() string {
	var b strings.Builder
	section := func(name string) { fmt.Fprintf(&b, ".SH %s\n", name) }
	item := func(tag, text string) { fmt.Fprintf(&b, ".TP\n.B %s\n%s\n", tag, text) }
	section("ENVIRONMENT")
	item("STQ_HOME", "The home, as --home: the directory holding stq.db, stq.sock, token, config.toml and stq.lock.")
	item("XDG_STATE_HOME", "Without STQ_HOME, the home is $XDG_STATE_HOME/stq (default ~/.local/state/stq; on macOS ~/Library/Application Support/stq).")
	item("XDG_RUNTIME_DIR", "Without STQ_HOME, the socket is $XDG_RUNTIME_DIR/stq/stq.sock when it is set.")
	item("NO_COLOR", "When set, output is never styled.")
	section("FILES")
	item("config.toml", "The daemon's settings, in the home; see README.md.")
	item("~/.config/systemd/user/stq.service, stq.socket", "Written by stq service install on Linux (/etc/systemd/system with --system).")
	item("~/Library/LaunchAgents/local.stq.plist", "Written by stq service install on macOS (/Library/LaunchDaemons with --system).")
	section("EXIT STATUS")
	for _, c := range []struct {
		code int
		text string
	}{
		{commands.ExitOK, "Success; for wait, every job ended DONE."},
		{commands.ExitFailure, "An error, or a job that did not end DONE."},
		{commands.ExitUsage, "A bad command line: an unknown command or flag, a bad flag value."},
		{commands.ExitNoDaemon, "The daemon is not reachable."},
		{commands.ExitTimeout, "wait --timeout ran out before the jobs ended."},
		{commands.ExitAuth, "The daemon's token is missing, unreadable or refused."},
	} {
		item(fmt.Sprint(c.code), c.text)
	}
	section("SEE ALSO")
	b.WriteString("systemd.service(5), launchd.plist(5), and README.md and docs/ in the stq sources.\n")
	return b.String()
}
