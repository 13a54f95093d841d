package commands

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
	"golang.org/x/sys/unix"

	"stq/engine"
	"stq/exec"
	"stq/ipc"
	"stq/store/sqlite"
)

func (a *app) daemonCommand() *cli.Command {
	return &cli.Command{
		Name:  "daemon",
		Usage: "run the job-queue daemon in the foreground",
		Description: "Runs the daemon on the home directory (--home, $STQ_HOME, or the default below).\n" +
			"Jobs live in stq.db there; clients reach the daemon through stq.sock.\n\n" +
			a.pathsHelp(),
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "workers", Usage: "how many jobs run at once (default: number of CPUs, or daemon.workers in config.toml)"},
			&cli.StringFlag{Name: "grace", Usage: "on SIGTERM/SIGINT, how long running jobs get to finish before they are killed and requeued (default 10s)"},
			&cli.StringFlag{Name: "durability", Usage: `"full": fsync every commit, an acknowledged job survives power loss (default); "normal": survives a daemon crash, not power loss`},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a Go CPU profile of the daemon's whole run to FILE (for docs/PERFORMANCE.md)"},
			&cli.BoolFlag{Name: "detach", Usage: "run in the background: return once the daemon answers and print its PID; its log goes to daemon.log in the home"},
		},
		Action: a.runDaemon,
	}
}

// pathsHelp tells where the files are, for `stq daemon --help`.
func (a *app) pathsHelp() string {
	p, err := resolvePaths(os.Getenv("STQ_HOME"))
	if err != nil {
		return "Paths: " + err.Error()
	}
	return fmt.Sprintf("Paths in use now:\n   home:   %s\n   db:     %s\n   socket: %s\n   token:  %s\n   config: %s", p.Home, p.DB, p.Socket, p.Token, p.Config)
}

func (a *app) runDaemon(ctx context.Context, c *cli.Command) error {
	p, err := a.paths(c)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
		return usageErrorf("--log-level: %v", err)
	}
	if c.Bool("detach") {
		return a.detach(ctx, p)
	}
	log := slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: level}))

	if err := ensureDirs(p); err != nil {
		return err
	}
	stopProfile, err := startCPUProfile(c.String("cpu-profile"))
	if err != nil {
		return err
	}
	defer stopProfile()
	unlock, err := lockHome(p)
	if err != nil {
		return err
	}
	defer unlock()
	// SIGHUP reloads config.toml (see daemonControl); caught from here on,
	// so one that comes while the daemon starts does not kill it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	flags := daemonFlags(c)
	cfg, err := loadConfig(p.Config)
	if err != nil {
		return failf("%v", err)
	}
	if err := flags(&cfg); err != nil {
		return err
	}
	token, err := ensureToken(p.Token)
	if err != nil {
		return err
	}
	st, where, err := openStore(ctx, cfg, p, os.Getenv)
	if err != nil {
		return err
	}
	defer st.Close()
	obs, err := newObservability(ctx, cfg, p, a.version, log, a.stderr)
	if err != nil {
		return failf("%v", err)
	}
	defer obs.close()

	host, err := daemonHost(os.Getenv)
	if err != nil {
		return err
	}
	d := &daemonParts{log: log, hup: hup, obs: obs, probe: exec.NewSystemProbe(cfg.IdleThreshold), host: host, storeName: where}
	d.ctl = &daemonControl{config: p.Config, flags: flags, started: withEnvStore(cfg, os.Getenv), log: log}
	if d.eng, err = a.newEngine(cfg, st, d); err != nil {
		return failf("%v", err)
	}
	if d.ln, err = daemonListener(p.Socket, log); err != nil {
		return failf("%v", err)
	}
	d.srv = ipc.NewServer(d.eng, ipc.ServerOptions{
		Token:        token,
		Version:      a.version,
		MaxConns:     cfg.MaxConnections,
		MaxLineBytes: cfg.MaxRequestBytes,
		Limits:       cfg.Limits,
		Logger:       log,
		Observer:     obs.serverObserver(),
	})
	d.ready = []any{"socket", p.Socket, "db", where, "workers", d.eng.Workers(), "owner", d.eng.Owner(), "pid", os.Getpid(), "version", a.version}
	return d.serve(ctx)
}

// daemonFlags applies the command line's settings to a Config. They win
// over the file's, at start and at every reload.
func daemonFlags(c *cli.Command) func(cfg *Config) error {
	return func(cfg *Config) error {
		if c.IsSet("workers") {
			if c.Int("workers") < 1 {
				return usageErrorf("--workers must be at least 1")
			}
			cfg.Workers = c.Int("workers")
		}
		if c.IsSet("grace") {
			d, err := engine.ParseDuration(c.String("grace"))
			if err != nil {
				return usageErrorf("--grace: %v", err)
			}
			cfg.Grace = d
		}
		if c.IsSet("durability") {
			cfg.Durability = c.String("durability")
			if !slices.Contains(sqlite.DurabilityModes(), cfg.Durability) {
				return usageErrorf("--durability must be \"full\" or \"normal\"")
			}
		}
		return nil
	}
}

// startCPUProfile profiles the daemon into path until the returned stop is
// called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// daemonParts are what a running daemon is made of, once wired.
type daemonParts struct {
	log   *slog.Logger
	hup   chan os.Signal
	obs   *observability
	probe *exec.SystemProbe
	ctl   *daemonControl
	eng   *engine.Engine
	srv   *ipc.Server
	ln    net.Listener
	ready []any // what the "ready" log line says
	// host names this machine in job owners; storeName is where the jobs
	// are, as stats shows it (a database URL without its password).
	host, storeName string
}

// newEngine wires the engine to the store, the executors and d's probe,
// control and observers.
func (a *app) newEngine(cfg Config, st engine.Store, d *daemonParts) (*engine.Engine, error) {
	reg := engine.NewRegistry()
	if err := reg.Register("noop", exec.Noop); err != nil {
		return nil, err
	}
	ecfg := engineConfig(cfg, d.host)
	ecfg.Version = a.version
	ecfg.StoreName = d.storeName
	ecfg.Pulse = d.obs.pulse()
	return engine.New(ecfg, engine.Deps{
		Store:      st,
		Subprocess: exec.Subprocess{Gate: !exec.MarkerRecovery},
		InProcess:  exec.InProcess{Registry: reg},
		Registry:   reg,
		Processes:  exec.Processes{},
		Probe:      d.probe,
		Logger:     d.log,
		Control:    d.ctl,
		Observer:   d.obs.observer(),
	})
}

// serve runs the daemon's parts until SIGTERM, SIGINT, `stq shutdown` or a
// part's failure, then stops them all.
func (d *daemonParts) serve(ctx context.Context) error {
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// stq shutdown takes the same path as SIGTERM; SIGTERM stays caught.
	ctx, shutdown := context.WithCancel(ctx)
	defer shutdown()
	d.ctl.eng, d.ctl.srv, d.ctl.shutdown = d.eng, d.srv, shutdown
	hupDone := make(chan struct{})
	go func() { watchHangup(ctx, d.hup, d.ctl); close(hupDone) }()
	defer func() { shutdown(); <-hupDone }()

	probeDone := make(chan struct{})
	go func() { d.probe.Run(ctx); close(probeDone) }()
	defer func() { <-probeDone }()
	engDone := make(chan error, 1)
	go func() { engDone <- d.eng.Run(ctx) }()
	srvDone := make(chan error, 1)
	go func() { srvDone <- d.srv.Serve(ctx, d.ln) }()
	obsDone := d.obs.run(ctx, d.eng)
	defer func() { shutdown(); obsDone() }()
	d.log.Info("stq daemon ready", d.ready...)

	var runErr error
	select {
	case runErr = <-engDone:
		stop() // the engine failed on its own: take the server down too
		<-srvDone
	case err := <-srvDone:
		stop()
		runErr = errors.Join(err, <-engDone)
	}
	// The listener removes its socket file when it closes.
	if runErr != nil {
		return fmt.Errorf("daemon: %w", runErr)
	}
	d.log.Info("stq daemon stopped")
	return nil
}

// lockHome takes the home's exclusive lock so that one daemon at most runs
// on it. The lock file holds the owner's PID, which a refused second daemon
// names in its message. The kernel drops the lock when the process dies, so
// a crashed daemon never leaves a stale lock behind.
func lockHome(p Paths) (func(), error) {
	f, err := os.OpenFile(p.Lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	// A client probing whether a daemon is starting (ipc.Paths.LockHolder)
	// holds a shared lock for an instant: try again for a moment before
	// calling the home taken.
	err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	for i := 0; i < 10 && errors.Is(err, unix.EWOULDBLOCK); i++ {
		time.Sleep(10 * time.Millisecond)
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	}
	if err != nil {
		defer f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			b := make([]byte, 32)
			n, _ := f.ReadAt(b, 0)
			pid := strings.TrimSpace(string(b[:n]))
			if pid == "" {
				pid = "unknown"
			}
			return nil, &exitError{code: ExitFailure,
				err:  fmt.Errorf("another stq daemon (pid %s) is already running on %s", pid, p.Home),
				hint: "its socket is " + p.Socket + "; stop it first, or use another --home"}
		}
		return nil, fmt.Errorf("lock %s: %w", p.Lock, err)
	}
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return func() { _ = f.Close() }, nil
}

// ensureToken returns the daemon's auth token, creating it on first start:
// 256 random bits, hex, in a file only the owner can read. The file is
// written under a temporary name and renamed, so a reader never sees half a
// token.
func ensureToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		tok := strings.TrimSpace(string(b))
		if len(tok) != 64 {
			return "", fmt.Errorf("token file %s is damaged: remove it and restart the daemon", path)
		}
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != 0o600 {
			if err := os.Chmod(path, 0o600); err != nil {
				return "", fmt.Errorf("restrict token file: %w", err)
			}
		}
		return tok, nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("read token: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("generate token: %w", err)
	}
	tok := hex.EncodeToString(raw)
	tmp, err := os.CreateTemp(filepath.Dir(path), ".token-*")
	if err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write token: %w", err)
	}
	if _, err := tmp.WriteString(tok + "\n"); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write token: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write token: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("write token: %w", err)
	}
	return tok, nil
}

// dialTimeout bounds connect plus auth; a live daemon answers in
// microseconds, so this only matters for a wedged one.
const dialTimeout = 10 * time.Second
