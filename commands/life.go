package commands

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"stq/engine"
	"stq/ipc"
)

// The daemon's life: starting it in the background (stq daemon --detach),
// and its side of stopping (stq shutdown, shutdown.go) and of reloading
// its configuration (stq reload, reload.go, and SIGHUP).

const (
	// daemonLogName is the file in the home a detached daemon writes its
	// log to.
	daemonLogName = "daemon.log"
	// daemonLogKeep bounds daemon.log: at start, a larger one is renamed
	// daemon.log.old (replacing the one before).
	daemonLogKeep = 10 << 20
	// detachReadyTimeout bounds how long --detach waits for the daemon to
	// answer.
	detachReadyTimeout = 30 * time.Second
	// shutdownMargin is added to the daemon's grace periods for how long
	// `stq shutdown` waits for it to exit.
	shutdownMargin = 10 * time.Second
	// lifePoll is how often --detach and shutdown look again.
	lifePoll = 20 * time.Millisecond
)

// detach starts the daemon in the background: the same command line
// without --detach, in a new session, stdin from /dev/null, stdout and
// stderr appended to daemon.log in the home (mode 0600). It returns once
// that daemon answers on its socket, printing its PID, or with the
// daemon's own error and exit code when it stops first.
func (a *app) detach(ctx context.Context, p Paths) error {
	if err := ensureDirs(p); err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the stq executable: %w", err)
	}
	logPath := filepath.Join(p.Home, daemonLogName)
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > daemonLogKeep {
		_ = os.Rename(logPath, logPath+".old")
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	defer logf.Close()
	if err := logf.Chmod(0o600); err != nil {
		return fmt.Errorf("restrict daemon log: %w", err)
	}
	from, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("open daemon log: %w", err)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("open %s: %w", os.DevNull, err)
	}
	defer devNull.Close()

	cmd := exec.Command(exe, withoutDetach(a.args[1:])...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devNull, logf, logf
	// A session of its own: no controlling terminal, so closing the
	// terminal or Ctrl-C there never reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start daemon: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	deadline := time.Now().Add(detachReadyTimeout)
	for {
		select {
		case <-exited:
			return detachFailure(logPath, from, cmd.ProcessState.ExitCode())
		default:
		}
		if daemonAnswers(ctx, p, pid) {
			fmt.Fprintln(a.stdout, pid)
			return nil
		}
		if time.Now().After(deadline) {
			return &exitError{code: ExitFailure,
				err:  fmt.Errorf("the daemon (pid %d) did not answer within %s", pid, detachReadyTimeout),
				hint: "it keeps starting in the background; see " + logPath}
		}
		select {
		case <-exited:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lifePoll):
		}
	}
}

// withoutDetach is the command line minus --detach, for the daemon itself.
func withoutDetach(args []string) []string {
	out := make([]string, 0, len(args))
	for i, arg := range args {
		if arg == "--" {
			return append(out, args[i:]...)
		}
		name, _, _ := strings.Cut(strings.TrimLeft(arg, "-"), "=")
		if strings.HasPrefix(arg, "-") && name == "detach" {
			continue
		}
		out = append(out, arg)
	}
	return out
}

// daemonAnswers reports whether the daemon of p answers and is the process
// pid: an older daemon answering on the home is not the one just started.
func daemonAnswers(ctx context.Context, p Paths, pid int) bool {
	tok, err := p.ReadToken()
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	cl, err := ipc.Connect(ctx, p.Socket, tok)
	if err != nil {
		return false
	}
	defer cl.Close()
	st, err := cl.Stats(ctx)
	return err == nil && st.PID == pid
}

// detachFailure turns a daemon that stopped before it answered into the
// error it printed (its "stq: " and "hint: " lines in the log) with its
// exit code.
func detachFailure(logPath string, from int64, code int) error {
	if code == 0 {
		code = ExitFailure
	}
	ee := &exitError{code: code, hint: "see " + logPath}
	f, err := os.Open(logPath)
	if err == nil {
		defer f.Close()
		if _, err := f.Seek(from, io.SeekStart); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				line := sc.Text()
				switch {
				case strings.HasPrefix(line, "stq: "):
					ee.err = errors.New(strings.TrimPrefix(line, "stq: "))
				case strings.HasPrefix(line, "hint: ") && ee.err != nil:
					ee.hint = strings.TrimPrefix(line, "hint: ")
				}
			}
		}
	}
	if ee.err == nil {
		ee.err = fmt.Errorf("the daemon exited with status %d before it answered", code)
	}
	return ee
}

// daemonControl is the daemon's side of admin.shutdown.v1, admin.reload.v1
// and SIGHUP (engine.Control).
type daemonControl struct {
	shutdown context.CancelFunc
	config   string              // config.toml
	flags    func(*Config) error // the command line's settings, which win over the file's
	started  Config              // as the daemon started (withEnvStore): what needs a restart is compared to it
	log      *slog.Logger

	// eng and srv are set once both exist, before the daemon serves.
	eng *engine.Engine
	srv *ipc.Server

	mu sync.Mutex // one reload at a time
}

var _ engine.Control = (*daemonControl)(nil)

func (d *daemonControl) Shutdown() { d.shutdown() }

// Reload reads config.toml and puts what can change at run time in force:
// the engine's handlers, queues, retention, deadlines and limits, and the
// server's rate limits. An invalid file changes nothing.
func (d *daemonControl) Reload(ctx context.Context) (engine.ReloadResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	res := engine.ReloadResult{Config: d.config, RestartNeeded: []string{}}
	cfg, err := loadConfig(d.config)
	if err == nil {
		err = d.flags(&cfg)
	}
	if err == nil {
		err = d.eng.Reconfigure(engineConfig(cfg, ""))
	}
	if err != nil {
		d.log.Error("config not reloaded; the configuration in force is unchanged", "config", d.config, "err", err)
		return res, reloadError{err}
	}
	d.srv.SetLimits(cfg.Limits)
	res.RestartNeeded = restartNeeded(d.started, withEnvStore(cfg, os.Getenv))
	if len(res.RestartNeeded) > 0 {
		d.log.Warn("config reloaded; some changes take effect only at the next restart", "config", d.config, "restart_needed", strings.Join(res.RestartNeeded, ","))
	} else {
		d.log.Info("config reloaded", "config", d.config)
	}
	return res, nil
}

// reloadError is a config file the daemon refused; it answers as an
// invalid request (nothing changed) with the file's error as the message.
type reloadError struct{ err error }

func (e reloadError) Error() string {
	return e.err.Error() + " (not reloaded: the configuration in force is unchanged)"
}

func (e reloadError) Is(target error) bool { return target == engine.ErrInvalid }

// restartNeeded names the settings of now that differ from those the
// daemon started with and cannot change while it runs.
func restartNeeded(started, now Config) []string {
	out := []string{}
	for _, s := range []struct {
		name string
		same bool
	}{
		{"daemon.workers", started.Workers == now.Workers},
		{"daemon.durability", started.Durability == now.Durability},
		{"daemon.max_connections", started.MaxConnections == now.MaxConnections},
		{"daemon.max_request_bytes", started.MaxRequestBytes == now.MaxRequestBytes},
		{"daemon.idle_threshold", started.IdleThreshold == now.IdleThreshold},
		{"metrics.listen", started.MetricsListen == now.MetricsListen},
		{"store.url", started.Store.URL == now.Store.URL},
		{"store.schema", started.Store.Schema == now.Store.Schema},
		{"store.lease", started.Store.Lease == now.Store.Lease},
	} {
		if !s.same {
			out = append(out, s.name)
		}
	}
	return slices.Clip(out)
}

// engineConfig is the engine's part of the configuration.
func engineConfig(cfg Config, host string) engine.Config {
	return engine.Config{
		Workers:         cfg.Workers,
		Host:            host,
		Grace:           cfg.Grace,
		KillGrace:       cfg.KillGrace,
		DefaultDeadline: cfg.DefaultDeadline,
		MaxPayload:      cfg.MaxPayload,
		LogLimit:        cfg.LogLimit,
		Types:           cfg.Types,
		Queues:          cfg.Queues,
		Retention:       cfg.Retention,
		Lease:           cfg.Store.Lease,
	}
}

// watchHangup reloads the configuration on every SIGHUP until ctx ends;
// the result goes to the log. It returns once the signal is no longer
// watched.
func watchHangup(ctx context.Context, hup <-chan os.Signal, d *daemonControl) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.log.Info("SIGHUP: reloading config", "config", d.config)
			_, _ = d.Reload(ctx)
		}
	}
}
