package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"stq/ipc"
)

// daemon is one `stq daemon` under test, on a temporary home, and what a
// row needs to reach it.
type daemon struct {
	paths  ipc.Paths
	cmd    *osexec.Cmd
	token  string
	binary string
	// postgres: the daemon's store is PostgreSQL, where an enqueue is a
	// round trip and a commit on the server: slower than SQLite's.
	postgres bool
}

// startTimeout bounds how long a daemon under test may take to answer.
const startTimeout = 20 * time.Second

// poolWorkers is the worker count of the daemons the rows start, unless a
// row says otherwise: the pool River's noop number was measured with.
const poolWorkers = 4

// withDaemon runs fn against a fresh daemon with poolWorkers workers on a
// temporary home and stops the daemon afterwards. profile is the row's
// name for --profile-dir, "" for none.
func (r *runner) withDaemon(ctx context.Context, profile string, fn func(*daemon) (float64, error)) (float64, error) {
	return r.withConfiguredDaemon(ctx, "", poolWorkers, profile, fn)
}

// withConfiguredDaemon is withDaemon on a home whose config.toml holds
// config ("" for none), with workers workers.
func (r *runner) withConfiguredDaemon(ctx context.Context, config string, workers int, profile string, fn func(*daemon) (float64, error)) (v float64, err error) {
	if r.opts.Store != "" {
		schema, drop, err := r.newSchema()
		if err != nil {
			return 0, err
		}
		defer func() { err = errors.Join(err, drop()) }()
		config = storeSection(r.opts.Store, schema) + config
	}
	p, remove, err := tempHome(config)
	if err != nil {
		return 0, err
	}
	defer remove()
	return r.withHome(ctx, p, workers, profile, fn)
}

// tempHome makes a home in a new temporary directory, with a config.toml
// holding config unless it is "". remove deletes the directory and all in it.
func tempHome(config string) (p ipc.Paths, remove func(), err error) {
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return p, nil, fmt.Errorf("make bench home: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	home := filepath.Join(dir, "h")
	if p, err = ipc.Locate(home); err != nil {
		remove()
		return p, nil, err
	}
	if config == "" {
		return p, remove, nil
	}
	if err := os.Mkdir(home, 0o700); err != nil {
		remove()
		return p, nil, fmt.Errorf("make bench home: %w", err)
	}
	if err := os.WriteFile(p.Config, []byte(config), 0o600); err != nil {
		remove()
		return p, nil, fmt.Errorf("write bench config: %w", err)
	}
	return p, remove, nil
}

// withHome runs fn against a daemon with workers workers started on home
// p, which may already hold a database and a config, and stops the daemon
// afterwards.
func (r *runner) withHome(ctx context.Context, p ipc.Paths, workers int, profile string, fn func(*daemon) (float64, error)) (float64, error) {
	args := []string{"--home", p.Home, "daemon", "--workers", strconv.Itoa(workers), "--durability", r.opts.Durability, "--log-level", "error"}
	if path := r.profile(profile); path != "" {
		args = append(args, "--cpu-profile", path)
	}
	cmd := osexec.Command(r.opts.Binary, args...)
	cmd.Stderr = r.opts.DaemonStderr
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start bench daemon: %w", err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	d := &daemon{paths: p, cmd: cmd, binary: r.opts.Binary, postgres: r.opts.Store != ""}
	if err := d.waitReady(ctx); err != nil {
		return 0, err
	}
	return fn(d)
}

// waitReady polls until the daemon has written its token and answers on
// its socket.
func (d *daemon) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(startTimeout)
	for {
		if tok, err := os.ReadFile(d.paths.Token); err == nil && len(tok) >= 64 {
			d.token = string(tok[:64])
			if cl, err := ipc.Dial(ctx, d.paths.Socket, d.token); err == nil {
				cl.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("bench daemon did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *daemon) dial(ctx context.Context) (*ipc.Client, error) {
	return ipc.Dial(ctx, d.paths.Socket, d.token)
}

// dialN opens n connections to the daemon. The caller closes them with
// closeAll, also when dialN fails part way.
func (d *daemon) dialN(ctx context.Context, n int) ([]*ipc.Client, error) {
	clients := make([]*ipc.Client, 0, n)
	for range n {
		cl, err := d.dial(ctx)
		if err != nil {
			return clients, err
		}
		clients = append(clients, cl)
	}
	return clients, nil
}

func closeAll(clients []*ipc.Client) {
	for _, cl := range clients {
		_ = cl.Close()
	}
}

// rssMB is the daemon's resident memory, from /proc (Linux only).
func (d *daemon) rssMB() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("read daemon memory: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// peakRSS samples the daemon's memory every 20ms until stop is closed,
// then sends the highest sample on the returned channel.
func (d *daemon) peakRSS(stop <-chan struct{}) <-chan float64 {
	peak := make(chan float64, 1)
	go func() {
		p := 0.0
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if r, err := d.rssMB(); err == nil {
				p = max(p, r)
			}
			select {
			case <-stop:
				peak <- p
				return
			case <-t.C:
			}
		}
	}()
	return peak
}
