package bench

import (
	"context"
	"errors"
	"fmt"
	osexec "os/exec"
	"strings"
	"sync"
	"time"

	"stq/engine"
	"stq/ipc"

	"golang.org/x/sync/errgroup"
)

// savePayload is what each job of the enqueue rows carries: about what an
// editor's save hook sends.
func savePayload() []byte { return []byte(`{"path":"src/main.rs","reason":"save"}`) }

// historyPayload is the 100-byte payload of the rows that report database
// bytes per job and of the history the flat rows load.
func historyPayload() []byte { return []byte(`{"pad":"` + strings.Repeat("x", 90) + `"}`) }

// shellEnv is the environment the jobs of the bytes-per-job row carry,
// as `stq enqueue` sends its shell's: 3 KB in 38 variables, about a
// developer's login shell with a virtualenv active (LS_COLORS alone is
// often 1.5 KB). All the jobs share it, as the jobs of one hook do.
func shellEnv() map[string]string {
	env := map[string]string{
		"HOME": "/home/dev", "USER": "dev", "LOGNAME": "dev", "SHELL": "/bin/bash", "SHLVL": "2",
		"LANG": "en_US.UTF-8", "LC_CTYPE": "en_US.UTF-8", "TERM": "xterm-256color", "COLORTERM": "truecolor",
		"PWD": "/home/dev/src/project", "OLDPWD": "/home/dev/src", "EDITOR": "nvim", "VISUAL": "nvim",
		"PAGER": "less", "LESS": "-FRX", "TZ": "Europe/Berlin", "HISTSIZE": "100000", "_": "/usr/local/bin/stq",
		"PATH": "/home/dev/src/project/.venv/bin:/home/dev/.local/bin:/home/dev/go/bin:/home/dev/.cargo/bin:" +
			"/home/dev/.nvm/versions/node/v20.11.0/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"VIRTUAL_ENV": "/home/dev/src/project/.venv", "VIRTUAL_ENV_PROMPT": "(project) ",
		"GOPATH": "/home/dev/go", "GOFLAGS": "-mod=mod", "CARGO_HOME": "/home/dev/.cargo",
		"NVM_DIR": "/home/dev/.nvm", "NVM_BIN": "/home/dev/.nvm/versions/node/v20.11.0/bin",
		"XDG_RUNTIME_DIR": "/run/user/1000", "XDG_SESSION_TYPE": "wayland", "XDG_CURRENT_DESKTOP": "GNOME",
		"XDG_DATA_DIRS": "/usr/share/gnome:/usr/local/share/:/usr/share/", "DISPLAY": ":0",
		"DBUS_SESSION_BUS_ADDRESS": "unix:path=/run/user/1000/bus", "WAYLAND_DISPLAY": "wayland-0",
		"SSH_AUTH_SOCK": "/run/user/1000/keyring/ssh", "GPG_TTY": "/dev/pts/3",
		"TMUX": "/tmp/tmux-1000/default,2417,0", "TMUX_PANE": "%3",
	}
	var ls strings.Builder
	for i := 0; ls.Len() < 1800; i++ {
		fmt.Fprintf(&ls, "*.ext%02d=01;%d:", i, 31+i%7)
	}
	env["LS_COLORS"] = "rs=0:di=01;34:ln=01;36:mh=00:pi=40;33:so=01;35:" + ls.String()
	return env
}

// enqueueRate enqueues n jobs from `clients` connections, each request one
// durable job, and returns jobs per second.
func (d *daemon) enqueueRate(ctx context.Context, clients, n int) (float64, error) {
	later := engine.Duration(time.Hour)
	req := engine.EnqueueRequest{Type: "noop", Delay: &later, Payload: savePayload()}
	return d.floodWith(ctx, clients, n, func(int) engine.EnqueueRequest { return req })
}

// floodWith sends n enqueues, request i built by reqFor(i), from `clients`
// connections at once (client c sends i = c, c+clients, ...) and returns
// enqueues per second.
func (d *daemon) floodWith(ctx context.Context, clients, n int, reqFor func(i int) engine.EnqueueRequest) (float64, error) {
	conns, err := d.dialN(ctx, clients)
	defer closeAll(conns)
	if err != nil {
		return 0, err
	}
	g, gctx := errgroup.WithContext(ctx) // one failed enqueue stops the others
	start := time.Now()
	for c, cl := range conns {
		g.Go(func() error {
			for i := c; i < n; i += clients {
				if _, err := cl.Enqueue(gctx, reqFor(i)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// drainRate measures how fast the daemon's workers drain n queued jobs
// like req. The jobs are all due at one instant T, set far enough ahead
// that the flood of enqueues has finished by then, so the rate is n /
// (last finish - T) and the enqueue path is not part of it. It also
// reports the database's size per finished job.
func (d *daemon) drainRate(ctx context.Context, n int, req engine.EnqueueRequest) (rate, bytesPerJob float64, err error) {
	// The head start: time for the flood of enqueues, each with its 3 KB
	// base environment when it has one (decoded twice by the daemon, and
	// encoded by a client on the same cores).
	perJob := 200 * time.Microsecond
	if req.BaseEnv != nil {
		perJob = 600 * time.Microsecond
	}
	if d.postgres {
		// About five times what the flood took on the 2-core machine on
		// 2026-12-06: 10,000 jobs with the 3 KB environment in 3.9 and
		// 4.0 s (group commit shares one envs update among the jobs of a
		// group; it was 8 ms per job when each took its turn on the row).
		perJob = time.Millisecond
		if req.BaseEnv != nil {
			perJob = 2 * time.Millisecond
		}
	}
	due := time.Now().Add(2*time.Second + time.Duration(n)*perJob).UTC()
	req.RunAt = &due
	if _, err := d.floodWith(ctx, 16, n, func(int) engine.EnqueueRequest { return req }); err != nil {
		return 0, 0, err
	}
	if time.Now().After(due) {
		return 0, 0, errors.New("the enqueue flood outlasted the head start; rerun with fewer --jobs")
	}
	cl, err := d.dial(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	st, err := waitCount(ctx, cl, n, drainPoll, engine.StateDone)
	if err != nil {
		return 0, 0, err
	}
	// Claims follow enqueue order, so the last job to finish is among the
	// newest ones listed.
	res, err := cl.List(ctx, ipc.ListParams{Limit: 1000})
	if err != nil {
		return 0, 0, err
	}
	var last time.Time
	for _, j := range res.Jobs {
		if j.FinishedAt != nil && j.FinishedAt.After(last) {
			last = *j.FinishedAt
		}
	}
	return float64(n) / last.Sub(due).Seconds(), float64(st.DBBytes) / float64(n), nil
}

// forkRate runs `true` n times from 4 goroutines: the baseline for
// subprocess jobs.
func forkRate(ctx context.Context, n int) (float64, error) {
	path, err := osexec.LookPath("true")
	if err != nil {
		return 0, fmt.Errorf("find true: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	start := time.Now()
	for w := 0; w < 4; w++ {
		wg.Go(func() {
			for i := w; i < n; i += 4 {
				if err := osexec.CommandContext(ctx, path).Run(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("run true: %w", err)
	}
	return float64(n) / time.Since(start).Seconds(), nil
}

// storm sends n enqueues over `subjects` subjects from 16 clients, each
// with the given debounce window (0: none), then waits until every job has
// ended. It returns the seconds from the first enqueue to the last job's
// end, and how many jobs ran.
func (d *daemon) storm(ctx context.Context, n, subjects int, debounce time.Duration) (secs float64, ran int64, err error) {
	var window *engine.Duration
	if debounce > 0 {
		w := engine.Duration(debounce)
		window = &w
	}
	start := time.Now()
	if _, err := d.floodWith(ctx, 16, n, func(i int) engine.EnqueueRequest {
		return engine.EnqueueRequest{Type: "noop", Subject: fmt.Sprintf("src/file%04d.rs", i%subjects), Debounce: window}
	}); err != nil {
		return 0, 0, err
	}
	cl, err := d.dial(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	st, err := waitCount(ctx, cl, n, stormPoll, engine.StateDone, engine.StateSuperseded)
	if err != nil {
		return 0, 0, err
	}
	return time.Since(start).Seconds(), st.Queues[engine.DefaultQueue][engine.StateDone], nil
}

// How often waitCount asks. A drain's rate is read from the jobs' finish
// times, not from when the poll noticed, so its poll can be slow; each
// poll is a store read (on PostgreSQL, a transaction) that competes with
// the jobs being measured, and at one every 10 ms it took a few percent of
// the cores. A storm is timed to the poll that sees it end.
const (
	drainPoll = 250 * time.Millisecond
	stormPoll = 10 * time.Millisecond
)

// waitCount polls the daemon's counters every `every` until at least n
// jobs of the default queue are in the given states, and returns the
// stats then.
func waitCount(ctx context.Context, cl *ipc.Client, n int, every time.Duration, states ...engine.State) (engine.Stats, error) {
	for {
		stp, err := cl.Stats(ctx)
		if err != nil {
			return engine.Stats{}, err
		}
		st := *stp
		var got int64
		for _, s := range states {
			got += st.Queues[engine.DefaultQueue][s]
		}
		if got >= int64(n) {
			return st, nil
		}
		time.Sleep(every)
	}
}

// startLatency enqueues one noop job at a time on an idle daemon and
// measures created_at -> started_at as the daemon recorded them, in ms.
func (d *daemon) startLatency(ctx context.Context, samples int) ([]float64, error) {
	cl, err := d.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	out := make([]float64, 0, samples)
	for i := 0; i < samples; i++ {
		res, err := cl.Enqueue(ctx, engine.EnqueueRequest{Type: "noop"})
		if err != nil {
			return nil, err
		}
		w, err := cl.Wait(ctx, ipc.WaitParams{IDs: []string{res.Job.ID}})
		if err != nil {
			return nil, err
		}
		j := w.Jobs[0]
		if j.StartedAt == nil {
			return nil, fmt.Errorf("job %s never started", j.ID)
		}
		out = append(out, float64(j.StartedAt.Sub(j.CreatedAt).Microseconds())/1000)
	}
	return out, nil
}

// processWallTime times whole `stq enqueue` processes and, as a baseline in
// the same run, fork/exec of `true`.
func (d *daemon) processWallTime(ctx context.Context, samples int) (procs, forks []float64, err error) {
	truePath, err := osexec.LookPath("true")
	if err != nil {
		return nil, nil, fmt.Errorf("find true: %w", err)
	}
	for i := 0; i < samples; i++ {
		t0 := time.Now()
		cmd := osexec.CommandContext(ctx, d.binary, "--home", d.paths.Home, "enqueue", "--type", "noop", "--in", "1h")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("stq enqueue: %w: %s", err, out)
		}
		procs = append(procs, float64(time.Since(t0).Microseconds())/1000)
		t0 = time.Now()
		if err := osexec.CommandContext(ctx, truePath).Run(); err != nil {
			return nil, nil, fmt.Errorf("run true: %w", err)
		}
		forks = append(forks, float64(time.Since(t0).Microseconds())/1000)
	}
	return procs, forks, nil
}
