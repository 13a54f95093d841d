package commands

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
)

func (a *app) serviceCommand() *cli.Command {
	c := &cli.Command{
		Name:  "service",
		Usage: "run the daemon as a systemd (Linux) or launchd (macOS) service: install, uninstall, status",
		Description: "install writes a unit for this binary and home and enables it; uninstall\n" +
			"stops and removes it; status says whether it is installed, enabled and running.\n" +
			"A user unit (--user, the default) runs while you are logged in (on Linux, always\n" +
			"with `loginctl enable-linger`); --system needs root and --run-as. See docs/SERVICE.md.",
		Commands: []*cli.Command{
			{
				Name:  "install",
				Usage: "write and enable a unit that runs `stq daemon` on this home",
				Flags: append(serviceScopeFlags(),
					&cli.BoolFlag{Name: "socket-activation", Usage: "start the daemon on the first connection to its socket (a stq.socket unit, or launchd Sockets)"},
					&cli.BoolFlag{Name: "print", Usage: "write the unit to stdout instead of installing it"},
					&cli.StringFlag{Name: "run-as", Usage: "with --system: the user the daemon and its jobs run as (default: $SUDO_USER)"},
				),
				Action: a.serviceInstall,
			},
			{
				Name:   "uninstall",
				Usage:  "stop, disable and remove the unit",
				Flags:  serviceScopeFlags(),
				Action: a.serviceUninstall,
			},
			{
				Name:   "status",
				Usage:  "say whether the unit is installed, enabled and running",
				Flags:  append(serviceScopeFlags(), &cli.BoolFlag{Name: "json", Usage: "print a JSON object"}),
				Action: a.serviceStatus,
			},
		},
	}
	for _, sub := range c.Commands {
		sub.OnUsageError = a.onUsageError
	}
	return c
}

func serviceScopeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "user", Usage: "a unit of your own service manager (the default)"},
		&cli.BoolFlag{Name: "system", Usage: "a unit of the system's service manager (needs root)"},
		&cli.StringFlag{Name: "manager", Usage: `"systemd" or "launchd" (default: systemd on Linux, launchd on macOS)`},
	}
}

// serviceTarget is where a unit goes: which manager, which of its scopes,
// and the directory it reads units from.
type serviceTarget struct {
	Manager string
	System  bool
	Dir     string
}

func (t serviceTarget) scope() string {
	if t.System {
		return "system"
	}
	return "user"
}

func resolveTarget(c *cli.Command) (serviceTarget, error) {
	if c.Bool("user") && c.Bool("system") {
		return serviceTarget{}, usageErrorf("--user and --system exclude each other")
	}
	t := serviceTarget{Manager: c.String("manager"), System: c.Bool("system")}
	if t.Manager == "" {
		switch runtime.GOOS {
		case "linux":
			t.Manager = managerSystemd
		case "darwin":
			t.Manager = managerLaunchd
		default:
			return t, failf("stq service knows systemd (Linux) and launchd (macOS), not %s", runtime.GOOS)
		}
	}
	var err error
	switch {
	case t.Manager == managerSystemd && t.System:
		t.Dir = systemdSysDir
	case t.Manager == managerSystemd:
		t.Dir, err = os.UserConfigDir() // $XDG_CONFIG_HOME or ~/.config, as systemd reads it
		t.Dir = filepath.Join(t.Dir, systemdUserDir)
	case t.Manager == managerLaunchd && t.System:
		t.Dir = launchdSysDir
	case t.Manager == managerLaunchd:
		t.Dir, err = os.UserHomeDir()
		t.Dir = filepath.Join(t.Dir, launchdUserDir)
	default:
		return t, usageErrorf(`invalid value %q for --manager: want "systemd" or "launchd"`, t.Manager)
	}
	if err != nil {
		return t, fmt.Errorf("find the %s unit directory: %w", t.Manager, err)
	}
	return t, nil
}

// unitFiles are the files stq may have installed for t, whether or not
// they exist.
func (t serviceTarget) unitFiles() []string {
	if t.Manager == managerLaunchd {
		return []string{filepath.Join(t.Dir, launchdLabel+".plist")}
	}
	return []string{filepath.Join(t.Dir, serviceName+".service"), filepath.Join(t.Dir, serviceName+".socket")}
}

func (t serviceTarget) installed() []string {
	var have []string
	for _, f := range t.unitFiles() {
		if _, err := os.Stat(f); err == nil {
			have = append(have, f)
		}
	}
	return have
}

// needRoot refuses a system unit to anyone but root, before anything is
// written.
func needRoot(t serviceTarget, euid int, args string) error {
	if !t.System || euid == 0 {
		return nil
	}
	return &exitError{code: ExitFailure, err: fmt.Errorf("a system unit is written to %s, which needs root", t.Dir),
		hint: "run it as root (sudo stq " + args + "), or leave out --system for a unit of your own"}
}

// unitSpecFor gathers what the unit says: this binary, this home, the
// daemon's grace from config.toml, and for a system unit its user.
func (a *app) unitSpecFor(c *cli.Command, t serviceTarget) (unitSpec, Paths, error) {
	p, err := a.paths(c)
	if err != nil {
		return unitSpec{}, p, err
	}
	exe, err := os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return unitSpec{}, p, fmt.Errorf("find this stq binary: %w", err)
	}
	cfg, err := loadConfig(p.Config)
	if err != nil {
		return unitSpec{}, p, &exitError{code: ExitFailure, err: err, hint: "the unit's stop timeout comes from daemon.grace: fix config.toml first"}
	}
	u := unitSpec{
		System:           t.System,
		Exe:              exe,
		Home:             p.Home,
		ExplicitHome:     c.String("home") != "",
		Socket:           p.Socket,
		SocketActivation: c.Bool("socket-activation"),
		Grace:            orDefault(cfg.Grace, engine.DefaultGrace) + orDefault(cfg.KillGrace, engine.DefaultKillGrace),
	}
	if x := os.Getenv("XDG_STATE_HOME"); !u.ExplicitHome && x != "" && t.Manager == managerSystemd {
		// The user manager does not see what a shell profile exports.
		u.Env = append(u.Env, [2]string{"XDG_STATE_HOME", x})
	}
	runAs := c.String("run-as")
	switch {
	case !t.System && runAs != "":
		return u, p, usageErrorf("--run-as is for --system; a user unit runs as you")
	case t.System && !u.ExplicitHome:
		return u, p, usageErrorf("a system unit needs the daemon's home: give --home (or STQ_HOME)")
	case t.System && runAs == "":
		runAs = os.Getenv("SUDO_USER")
		if runAs == "" {
			return u, p, usageErrorf("a system unit needs the user the daemon runs as: give --run-as USER")
		}
	}
	u.RunAs = runAs
	return u, p, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (a *app) serviceInstall(ctx context.Context, c *cli.Command) error {
	t, err := resolveTarget(c)
	if err != nil {
		return err
	}
	u, p, err := a.unitSpecFor(c, t)
	if err != nil {
		return err
	}
	files := renderUnits(t.Manager, u, t.Dir)
	if c.Bool("print") {
		for _, f := range files {
			if len(files) > 1 {
				fmt.Fprintf(a.stdout, "### %s\n", f.Path)
			}
			fmt.Fprint(a.stdout, f.Content)
		}
		return nil
	}
	if err := needRoot(t, os.Geteuid(), "service install --system"); err != nil {
		return err
	}
	reinstall := len(t.installed()) > 0
	if pid, held := p.LockHolder(); held && !reinstall {
		return &exitError{code: ExitFailure, err: fmt.Errorf("a daemon already runs on %s (pid %s), outside a service", p.Home, pid),
			hint: "stop it first (stq shutdown), then install: the service would start a second one"}
	}
	if err := prepareHome(p, u); err != nil {
		return err
	}
	if err := os.MkdirAll(t.Dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", t.Dir, err)
	}
	for _, f := range files {
		if err := writeFileAtomic(f.Path, []byte(f.Content), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "wrote %s\n", f.Path)
	}
	if err := activate(ctx, t, u.SocketActivation, reinstall, files[0].Path); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "enabled and started; see: %s\n", statusHint(t))
	if reinstall && t.Manager == managerSystemd {
		fmt.Fprintf(a.stdout, "a daemon already running keeps the old unit until: %s\n", strings.Join(systemctl(t, "restart", serviceName), " "))
	}
	return nil
}

// prepareHome creates the home and its token before the manager starts the
// daemon: launchd opens the log there first, a client of a socket-activated
// daemon reads the token before it connects (and so before any daemon ran
// to make one), and a system unit's home must belong to the user it runs
// as.
func prepareHome(p Paths, u unitSpec) error {
	if err := ensureDirs(p); err != nil {
		return err
	}
	if _, err := ensureToken(p.Token); err != nil {
		return err
	}
	if !u.System {
		return nil
	}
	usr, err := user.Lookup(u.RunAs)
	if err != nil {
		return fmt.Errorf("--run-as %s: %w", u.RunAs, err)
	}
	uid, _ := strconv.Atoi(usr.Uid)
	gid, _ := strconv.Atoi(usr.Gid)
	for _, d := range []string{p.Home, filepath.Dir(p.Socket), p.Token} {
		if err := os.Chown(d, uid, gid); err != nil {
			return fmt.Errorf("give %s to %s: %w", d, u.RunAs, err)
		}
	}
	return nil
}

// writeFileAtomic replaces path whole, so a manager never reads half a unit.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func (a *app) serviceUninstall(ctx context.Context, c *cli.Command) error {
	t, err := resolveTarget(c)
	if err != nil {
		return err
	}
	have := t.installed()
	if len(have) == 0 {
		return failf("no stq %s unit is installed in %s", t.scope(), t.Dir)
	}
	if err := needRoot(t, os.Geteuid(), "service uninstall --system"); err != nil {
		return err
	}
	// The unit is stopped first, while the manager still knows it; the
	// files go even if that fails, since removing them is what was asked.
	stopErr := deactivate(ctx, t, have)
	for _, f := range have {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", f, err)
		}
		fmt.Fprintf(a.stdout, "removed %s\n", f)
	}
	if stopErr != nil {
		return stopErr
	}
	if t.Manager == managerSystemd {
		if err := runManager(ctx, systemctl(t, "daemon-reload")...); err != nil {
			return &exitError{code: ExitFailure, err: err}
		}
	}
	return nil
}

func statusHint(t serviceTarget) string {
	if t.Manager == managerLaunchd {
		return "launchctl print " + launchdTarget(t)
	}
	return strings.Join(systemctl(t, "status", serviceName), " ")
}
