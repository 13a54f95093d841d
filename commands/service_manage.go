package commands

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"
)

// managerTimeout bounds one systemctl or launchctl call; `enable --now`
// waits for the daemon's READY=1, which a recovery can delay.
const managerTimeout = 2 * time.Minute

func systemctl(t serviceTarget, args ...string) []string {
	argv := []string{"systemctl"}
	if !t.System {
		argv = append(argv, "--user")
	}
	return append(argv, args...)
}

func launchdDomain(t serviceTarget) string {
	if t.System {
		return "system"
	}
	return "gui/" + strconv.Itoa(os.Getuid())
}

func launchdTarget(t serviceTarget) string { return launchdDomain(t) + "/" + launchdLabel }

// runManager runs one manager command; its error carries the command and
// the first line the manager printed.
func runManager(ctx context.Context, argv ...string) error {
	_, err := managerOutput(ctx, argv...)
	return err
}

func managerOutput(ctx context.Context, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, managerTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := strings.TrimSpace(stdout.String())
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = out
		}
		if msg != "" {
			return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, firstLine(msg))
		}
		return out, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}

// activate loads the written unit and starts it. On a reinstall the old
// unit's enablement is dropped first, so switching to or from socket
// activation leaves no stale link behind.
func activate(ctx context.Context, t serviceTarget, socketActivation, reinstall bool, unitPath string) error {
	var steps [][]string
	if t.Manager == managerLaunchd {
		if reinstall {
			// bootstrap refuses a label that is loaded; its failure when
			// nothing was loaded is expected.
			_ = runManager(ctx, "launchctl", "bootout", launchdTarget(t))
		}
		steps = [][]string{{"launchctl", "bootstrap", launchdDomain(t), unitPath}}
	} else {
		unit := serviceName + ".service"
		if socketActivation {
			unit = serviceName + ".socket"
		}
		if reinstall {
			_ = runManager(ctx, systemctl(t, "disable", serviceName+".service", serviceName+".socket")...)
		}
		steps = [][]string{systemctl(t, "daemon-reload"), systemctl(t, "enable", "--now", unit)}
	}
	for _, s := range steps {
		if err := runManager(ctx, s...); err != nil {
			return &exitError{code: ExitFailure, err: fmt.Errorf("the unit is written, but %w", err), hint: activateHint(t, steps)}
		}
	}
	return nil
}

func activateHint(t serviceTarget, steps [][]string) string {
	cmds := make([]string, len(steps))
	for i, s := range steps {
		cmds[i] = strings.Join(s, " ")
	}
	hint := "once the service manager answers, run: " + strings.Join(cmds, " && ")
	if t.Manager == managerSystemd && !t.System {
		hint += " (a user manager runs while you are logged in, or always after: loginctl enable-linger $USER)"
	}
	return hint
}

// deactivate stops and disables what is installed, the socket before the
// service so a connection cannot start the daemon again.
func deactivate(ctx context.Context, t serviceTarget, have []string) error {
	var err error
	if t.Manager == managerLaunchd {
		if runManager(ctx, "launchctl", "print", launchdTarget(t)) != nil {
			return nil // not loaded: nothing to stop
		}
		err = runManager(ctx, "launchctl", "bootout", launchdTarget(t))
	} else {
		args := []string{"disable", "--now"}
		for i := len(have) - 1; i >= 0; i-- {
			args = append(args, filepath.Base(have[i]))
		}
		err = runManager(ctx, systemctl(t, args...)...)
	}
	if err != nil {
		return &exitError{code: ExitFailure, err: fmt.Errorf("the unit files are removed, but stopping the unit failed: %w", err),
			hint: "if the daemon still runs, stop it with: stq shutdown"}
	}
	return nil
}

// serviceState is what `stq service status --json` prints.
type serviceState struct {
	Manager   string   `json:"manager"`
	Scope     string   `json:"scope"`
	Installed bool     `json:"installed"`
	Files     []string `json:"files"`
	Enabled   string   `json:"enabled"`
	Running   bool     `json:"running"`
	PID       int      `json:"pid,omitempty"`
	Answers   bool     `json:"answers"`
	Home      string   `json:"home"`
	Socket    string   `json:"socket"`
}

func (a *app) serviceStatus(ctx context.Context, c *cli.Command) error {
	t, err := resolveTarget(c)
	if err != nil {
		return err
	}
	p, err := a.paths(c)
	if err != nil {
		return err
	}
	st := serviceState{Manager: t.Manager, Scope: t.scope(), Files: t.installed(), Home: p.Home, Socket: p.Socket}
	if st.Files == nil {
		st.Files = []string{}
	}
	st.Installed = len(st.Files) > 0
	st.Enabled = enabledState(ctx, t, st.Files)
	// The lock says whether a daemon runs without connecting, since a
	// connection to an activated socket would start one.
	if pid, held := p.LockHolder(); held {
		st.Running = true
		st.PID, _ = strconv.Atoi(pid)
		st.Answers = daemonAnswers(ctx, p, st.PID)
	}
	if c.Bool("json") {
		return writeJSON(a.stdout, st)
	}
	a.printServiceState(st, t)
	return nil
}

func (a *app) printServiceState(st serviceState, t serviceTarget) {
	w := a.stdout
	fmt.Fprintf(w, "manager:  %s, %s units in %s\n", st.Manager, st.Scope, t.Dir)
	if st.Installed {
		fmt.Fprintf(w, "unit:     installed: %s\n", strings.Join(st.Files, ", "))
	} else {
		fmt.Fprintln(w, "unit:     not installed (stq service install)")
	}
	fmt.Fprintf(w, "enabled:  %s\n", st.Enabled)
	switch {
	case !st.Running:
		fmt.Fprintf(w, "running:  no daemon on %s\n", st.Home)
	case st.Answers:
		fmt.Fprintf(w, "running:  yes, pid %d, answering on %s\n", st.PID, st.Socket)
	default:
		fmt.Fprintf(w, "running:  pid %d holds %s but does not answer on %s\n", st.PID, st.Home, st.Socket)
	}
}

// enabledState asks the manager; "no" when nothing is installed, "unknown
// (why)" when the manager cannot be asked.
func enabledState(ctx context.Context, t serviceTarget, files []string) string {
	if len(files) == 0 {
		return "no"
	}
	if t.Manager == managerLaunchd {
		if runManager(ctx, "launchctl", "print", launchdTarget(t)) == nil {
			return "loaded"
		}
		return "not loaded"
	}
	// is-enabled exits non-zero for "disabled" and prints it all the same.
	out, err := managerOutput(ctx, systemctl(t, "is-enabled", filepath.Base(files[len(files)-1]))...)
	if out != "" {
		return firstLine(out)
	}
	return fmt.Sprintf("unknown (%v)", err)
}
