package commands

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"stq/engine"
	"stq/exec"
	"stq/ipc"
)

func (a *app) benchCommand() *cli.Command {
	return &cli.Command{
		Name:  "bench",
		Usage: "measure stq on this machine against a fresh daemon in a temporary home",
		Description: "Starts `stq daemon` on a temporary home, drives it over the socket and prints\n" +
			"medians with their spread (min-max over the repetitions). Durable mode unless\n" +
			"--durability normal. See docs/PERFORMANCE.md.",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "jobs", Value: 20000, Usage: "jobs per throughput run"},
			&cli.IntFlag{Name: "reps", Value: 3, Usage: "repetitions of each row"},
			&cli.IntFlag{Name: "samples", Value: 300, Usage: "samples for latency rows"},
			&cli.StringFlag{Name: "durability", Value: "full", Usage: "daemon durability mode"},
			&cli.BoolFlag{Name: "quick", Usage: "a smoke run: few jobs, one repetition (CI uses it so the benchmark cannot rot)"},
			&cli.BoolFlag{Name: "json", Usage: "print the rows as JSON"},
			&cli.StringFlag{Name: "profile-dir", Usage: "write a CPU profile of each row's daemon to DIR (ROW.pprof)"},
			&cli.StringSliceFlag{Name: "only", Usage: "run only these row groups: " + strings.Join(benchGroups(), ", ")},
		},
		Action: a.bench,
	}
}

// benchRow is one measured quantity: the median of its repetitions and the
// spread around it.
type benchRow struct {
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
	Note   string    `json:"note,omitempty"`
}

func newRow(name, unit, note string, vals []float64) benchRow {
	s := slices.Clone(vals)
	slices.Sort(s)
	r := benchRow{Name: name, Unit: unit, Note: note, Values: vals}
	if len(s) > 0 {
		r.Median, r.Min, r.Max = percentile(s, 0.5), s[0], s[len(s)-1]
	}
	return r
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// benchPayload is the 100-byte payload of the rows that report database
// bytes per job and of the history the flat rows load.
func benchPayload() []byte { return []byte(`{"pad":"` + strings.Repeat("x", 90) + `"}`) }

// benchBaseEnv is the environment the jobs of the bytes-per-job row carry,
// as `stq enqueue` sends its shell's: 3 KB in 38 variables, about a
// developer's login shell with a virtualenv active (LS_COLORS alone is
// often 1.5 KB). All the jobs share it, as the jobs of one hook do.
func benchBaseEnv() map[string]string {
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

// stormDebounce is the window of the debounced supersede-storm row.
const stormDebounce = time.Second

// benchGroups name the groups of rows --only can pick.
func benchGroups() []string {
	return []string{"enqueue", "baseline", "bulk", "noop", "subprocess", "storm", "rss", "latency", "process", "flat"}
}

type benchEnv struct {
	home   string
	paths  Paths
	daemon *osexec.Cmd
	token  string
	self   string
}

func (a *app) bench(ctx context.Context, c *cli.Command) error {
	jobs, reps, samples := c.Int("jobs"), c.Int("reps"), c.Int("samples")
	if c.Bool("quick") {
		jobs, reps, samples = 300, 1, 30
	}
	if jobs < 1 || reps < 1 || samples < 1 {
		return usageErrorf("--jobs, --reps and --samples must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	only := c.StringSlice("only")
	for _, g := range only {
		if !slices.Contains(benchGroups(), g) {
			return usageErrorf("--only: unknown row group %q (have %s)", g, strings.Join(benchGroups(), ", "))
		}
	}
	want := func(g string) bool { return len(only) == 0 || slices.Contains(only, g) }
	var rows []benchRow
	add := func(r benchRow) {
		rows = append(rows, r)
		if !c.Bool("json") {
			fmt.Fprintf(a.stderr, "  %-44s %12.1f %s\n", r.Name, r.Median, r.Unit)
		}
	}
	durability := c.String("durability")
	profilePath := func(row string) string {
		if dir := c.String("profile-dir"); dir != "" {
			return filepath.Join(dir, row+".pprof")
		}
		return ""
	}

	// bare holds the bare-SQLite baseline of each repetition and enq1 the
	// 1-client enqueue rate of the same repetition, for their ratio.
	var bare, enq1 []float64
	if want("enqueue") {
		// Enqueue rows: jobs scheduled an hour out, so only the enqueue path runs.
		for _, clients := range []int{1, 16} {
			var vals []float64
			for rep := 0; rep < reps; rep++ {
				v, err := withBenchDaemon(ctx, self, durability, 4, profilePath(fmt.Sprintf("enqueue-%dclients-rep%d", clients, rep)), func(env *benchEnv) (float64, error) {
					return env.enqueueRate(ctx, clients, jobs)
				})
				if err != nil {
					return err
				}
				vals = append(vals, v)
				if clients == 1 {
					b, err := bareCommitRate(ctx, durability, bareCommits(jobs))
					if err != nil {
						return err
					}
					bare = append(bare, b)
				}
			}
			if clients == 1 {
				enq1 = vals
			}
			add(newRow(fmt.Sprintf("durable enqueues/s over the socket, %d client(s)", clients), "jobs/s",
				fmt.Sprintf("%d jobs, one job per request, durability=%s", jobs, durability), vals))
		}
	}
	if want("baseline") && bare == nil {
		for rep := 0; rep < reps; rep++ {
			b, err := bareCommitRate(ctx, durability, bareCommits(jobs))
			if err != nil {
				return err
			}
			bare = append(bare, b)
		}
	}
	for _, r := range baselineRows(durability, bareCommits(jobs), bare, enq1) {
		add(r)
	}

	if want("bulk") {
		if err := benchBulk(ctx, self, durability, jobs, reps, c.Bool("quick"), profilePath, add); err != nil {
			return err
		}
	}

	if want("noop") {
		var noop, perJob []float64
		for rep := 0; rep < reps; rep++ {
			v, err := withBenchDaemon(ctx, self, durability, 4, profilePath(fmt.Sprintf("noop-rep%d", rep)), func(env *benchEnv) (float64, error) {
				r, b, err := env.drainRate(ctx, jobs, engine.EnqueueRequest{Type: "noop", Payload: benchPayload(), BaseEnv: benchBaseEnv()})
				perJob = append(perJob, b)
				return r, err
			})
			if err != nil {
				return err
			}
			noop = append(noop, v)
		}
		add(newRow("in-process noop jobs processed/s, 4 workers", "jobs/s",
			fmt.Sprintf("%d jobs queued first, all due at one instant", jobs), noop))
		add(newRow("database bytes per finished job (100-byte payload)", "bytes",
			"db + WAL size / jobs, after the noop run; the jobs share one 3 KB base environment", perJob))
	}

	if want("subprocess") {
		subJobs := min(jobs, 2000)
		var subs, forks4 []float64
		for rep := 0; rep < reps; rep++ {
			f, err := forkRate(ctx, subJobs)
			if err != nil {
				return err
			}
			forks4 = append(forks4, f)
			v, err := withBenchDaemon(ctx, self, durability, 4, profilePath(fmt.Sprintf("subprocess-rep%d", rep)), func(env *benchEnv) (float64, error) {
				r, _, err := env.drainRate(ctx, subJobs, engine.EnqueueRequest{Command: []string{"true"}, Cwd: "/"})
				return r, err
			})
			if err != nil {
				return err
			}
			subs = append(subs, v)
		}
		gate := "no start gate: recovery finds processes by STQ_JOB_ID"
		if !exec.MarkerRecovery {
			gate = "start gate included"
		}
		add(newRow("subprocess `true` jobs processed/s, 4 workers", "jobs/s", fmt.Sprintf("%d jobs; %s", subJobs, gate), subs))
		add(newRow("fork/exec loop of `true`, 4 goroutines (baseline)", "runs/s", fmt.Sprintf("%d runs, same run", subJobs), forks4))
		ratio := make([]float64, len(subs))
		for i := range subs {
			ratio[i] = 100 * subs[i] / forks4[i]
		}
		add(newRow("subprocess jobs / fork loop ratio", "%", "per repetition, each subprocess run right after its fork loop; target >= 70%", ratio))
	}

	if want("storm") {
		// Twice: as enqueued by default (every generation may start at
		// once), and with --debounce, which is how a user asks for one run
		// per burst. The window must outlast the gap between two
		// generations of one subject, here 1,000 enqueues.
		for _, debounce := range []time.Duration{0, stormDebounce} {
			var stormSecs, stormRuns []float64
			for rep := 0; rep < reps; rep++ {
				var ran int64
				v, err := withBenchDaemon(ctx, self, durability, 4, profilePath(fmt.Sprintf("storm-debounce%s-rep%d", debounce, rep)), func(env *benchEnv) (float64, error) {
					s, r, err := env.storm(ctx, jobs*5, 1000, debounce)
					ran = r
					return s, err
				})
				if err != nil {
					return err
				}
				stormSecs = append(stormSecs, v)
				stormRuns = append(stormRuns, float64(ran))
			}
			how := "no debounce"
			if debounce > 0 {
				how = "--debounce " + debounce.String()
			}
			add(newRow(fmt.Sprintf("supersede storm: %d enqueues over 1,000 subjects, 16 clients, %s", jobs*5, how), "s", "until every job ended", stormSecs))
			add(newRow("supersede storm, "+how+": jobs that ran", "jobs", "the rest were superseded", stormRuns))
		}
	}

	if want("rss") {
		var idle, loaded []float64
		for rep := 0; rep < reps; rep++ {
			if _, err := withBenchDaemon(ctx, self, durability, 4, "", func(env *benchEnv) (float64, error) {
				time.Sleep(500 * time.Millisecond)
				r, err := env.rssMB()
				if err != nil {
					return 0, err
				}
				idle = append(idle, r)
				stop := make(chan struct{})
				peak := make(chan float64, 1)
				go func() {
					p := 0.0
					t := time.NewTicker(20 * time.Millisecond)
					defer t.Stop()
					for {
						if r, err := env.rssMB(); err == nil {
							p = math.Max(p, r)
						}
						select {
						case <-stop:
							peak <- p
							return
						case <-t.C:
						}
					}
				}()
				_, err = env.enqueueRate(ctx, 16, jobs)
				close(stop)
				loaded = append(loaded, <-peak)
				return 0, err
			}); err != nil {
				return err
			}
		}
		add(newRow("daemon RSS, idle", "MB", "VmRSS half a second after start", idle))
		add(newRow("daemon RSS, peak under 16 enqueuing clients", "MB", fmt.Sprintf("%d durable enqueues", jobs), loaded))
	}

	if want("latency") {
		var lat []float64
		if _, err := withBenchDaemon(ctx, self, durability, 4, "", func(env *benchEnv) (float64, error) {
			var err error
			lat, err = env.startLatency(ctx, samples)
			return 0, err
		}); err != nil {
			return err
		}
		slices.Sort(lat)
		add(benchRow{Name: "enqueue->start latency p50, idle daemon", Unit: "ms", Median: percentile(lat, 0.5), Min: lat[0], Max: lat[len(lat)-1], Note: fmt.Sprintf("%d samples", len(lat))})
		add(benchRow{Name: "enqueue->start latency p99, idle daemon", Unit: "ms", Median: percentile(lat, 0.99), Min: lat[0], Max: lat[len(lat)-1], Note: fmt.Sprintf("%d samples", len(lat))})
	}

	if want("process") {
		var procs, forks []float64
		if _, err := withBenchDaemon(ctx, self, durability, 4, "", func(env *benchEnv) (float64, error) {
			var err error
			procs, forks, err = env.processWallTime(ctx, samples)
			return 0, err
		}); err != nil {
			return err
		}
		add(newRow("one `stq enqueue` process, wall time", "ms", fmt.Sprintf("%d runs; spread is min-max", len(procs)), procs))
		add(newRow("`true` via fork/exec, wall time (baseline)", "ms", fmt.Sprintf("%d runs", len(forks)), forks))
	}

	if want("flat") {
		if err := benchFlat(ctx, self, durability, reps, samples, c.Bool("quick"), add); err != nil {
			return err
		}
	}

	if c.Bool("json") {
		return writeJSON(a.stdout, rows)
	}
	table := make([][]string, 0, len(rows))
	for _, r := range rows {
		table = append(table, []string{r.Name, fmt.Sprintf("%.1f", r.Median), fmt.Sprintf("%.1f-%.1f", r.Min, r.Max), r.Unit, r.Note})
	}
	a.styles().writeTable(a.stdout, []string{"WHAT", "MEDIAN", "SPREAD", "UNIT", "NOTE"}, table, -1)
	return nil
}

// withBenchDaemon runs fn against a fresh daemon on a temporary home and
// stops the daemon afterwards.
func withBenchDaemon(ctx context.Context, self, durability string, workers int, profile string, fn func(*benchEnv) (float64, error)) (float64, error) {
	dir, err := os.MkdirTemp("", "stqb")
	if err != nil {
		return 0, fmt.Errorf("make bench home: %w", err)
	}
	defer os.RemoveAll(dir)
	return withBenchHome(ctx, self, filepath.Join(dir, "h"), durability, workers, profile, fn)
}

// withBenchHome is withBenchDaemon on a given home, which may already hold
// a database and a config.
func withBenchHome(ctx context.Context, self, home, durability string, workers int, profile string, fn func(*benchEnv) (float64, error)) (float64, error) {
	p, err := resolvePaths(home)
	if err != nil {
		return 0, err
	}
	args := []string{"--home", home, "daemon", "--workers", fmt.Sprint(workers), "--durability", durability, "--log-level", "error"}
	if profile != "" {
		args = append(args, "--cpu-profile", profile)
	}
	d := osexec.Command(self, args...)
	d.Stderr = os.Stderr
	if err := d.Start(); err != nil {
		return 0, fmt.Errorf("start bench daemon: %w", err)
	}
	defer func() {
		_ = d.Process.Signal(syscall.SIGTERM)
		_ = d.Wait()
	}()
	env := &benchEnv{home: home, paths: p, daemon: d, self: self}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if tok, err := os.ReadFile(p.Token); err == nil && len(tok) >= 64 {
			env.token = string(tok[:64])
			if cl, err := ipc.Dial(ctx, p.Socket, env.token); err == nil {
				cl.Close()
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, errors.New("bench daemon did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fn(env)
}

func (env *benchEnv) dial(ctx context.Context) (*ipc.Client, error) {
	return ipc.Dial(ctx, env.paths.Socket, env.token)
}

// enqueueRate enqueues n jobs from `clients` connections, each request one
// durable job, and returns jobs per second.
func (env *benchEnv) enqueueRate(ctx context.Context, clients, n int) (float64, error) {
	later := engine.Duration(time.Hour)
	req := engine.EnqueueRequest{Type: "noop", Delay: &later, Payload: []byte(`{"path":"src/main.rs","reason":"save"}`)}
	return env.flood(ctx, clients, n, req)
}

func (env *benchEnv) flood(ctx context.Context, clients, n int, req engine.EnqueueRequest) (float64, error) {
	return env.floodWith(ctx, clients, n, func(int) engine.EnqueueRequest { return req })
}

// floodWith sends n enqueues, request i built by reqFor(i), from `clients`
// connections at once (client c sends i = c, c+clients, ...) and returns
// enqueues per second.
func (env *benchEnv) floodWith(ctx context.Context, clients, n int, reqFor func(i int) engine.EnqueueRequest) (float64, error) {
	conns := make([]*ipc.Client, clients)
	for i := range conns {
		cl, err := env.dial(ctx)
		if err != nil {
			return 0, err
		}
		defer cl.Close()
		conns[i] = cl
	}
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	start := time.Now()
	for c, cl := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; i < n; i += clients {
				if _, err := cl.Enqueue(ctx, reqFor(i)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	if err := <-errs; err != nil {
		return 0, fmt.Errorf("enqueue: %w", err)
	}
	return float64(n) / elapsed.Seconds(), nil
}

// drainRate measures how fast 4 workers drain n queued jobs like req. The
// jobs are all due at one instant T, set far enough ahead that the flood of
// enqueues has finished by then, so the rate is n / (last finish - T) and
// the enqueue path is not part of it. It also reports the database's size
// per finished job.
func (env *benchEnv) drainRate(ctx context.Context, n int, req engine.EnqueueRequest) (rate, bytesPerJob float64, err error) {
	// The head start: time for the flood of enqueues, each with its 3 KB
	// base environment when it has one (decoded twice by the daemon, and
	// encoded by a client on the same cores).
	perJob := 200 * time.Microsecond
	if req.BaseEnv != nil {
		perJob = 600 * time.Microsecond
	}
	due := time.Now().Add(2*time.Second + time.Duration(n)*perJob).UTC()
	req.RunAt = &due
	if _, err := env.flood(ctx, 16, n, req); err != nil {
		return 0, 0, err
	}
	if time.Now().After(due) {
		return 0, 0, errors.New("the enqueue flood outlasted the head start; rerun with fewer --jobs")
	}
	cl, err := env.dial(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	st, err := waitCount(ctx, cl, n, engine.StateDone)
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
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 4 {
				if err := osexec.CommandContext(ctx, path).Run(); err != nil {
					errs <- err
					return
				}
			}
		}()
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
func (env *benchEnv) storm(ctx context.Context, n, subjects int, debounce time.Duration) (secs float64, ran int64, err error) {
	var window *engine.Duration
	if debounce > 0 {
		d := engine.Duration(debounce)
		window = &d
	}
	start := time.Now()
	if _, err := env.floodWith(ctx, 16, n, func(i int) engine.EnqueueRequest {
		return engine.EnqueueRequest{Type: "noop", Subject: fmt.Sprintf("src/file%04d.rs", i%subjects), Debounce: window}
	}); err != nil {
		return 0, 0, err
	}
	cl, err := env.dial(ctx)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	st, err := waitCount(ctx, cl, n, engine.StateDone, engine.StateSuperseded)
	if err != nil {
		return 0, 0, err
	}
	return time.Since(start).Seconds(), st.Queues[engine.DefaultQueue][engine.StateDone], nil
}

// waitCount polls the daemon's counters until at least n jobs of the
// default queue are in the given states, and returns the stats then.
func waitCount(ctx context.Context, cl *ipc.Client, n int, states ...engine.State) (engine.Stats, error) {
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
		time.Sleep(10 * time.Millisecond)
	}
}

// rssMB is the daemon's resident memory, from /proc (Linux only).
func (env *benchEnv) rssMB() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", env.daemon.Process.Pid))
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

// startLatency enqueues one noop job at a time on an idle daemon and
// measures created_at -> started_at as the daemon recorded them, in ms.
func (env *benchEnv) startLatency(ctx context.Context, samples int) ([]float64, error) {
	cl, err := env.dial(ctx)
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
func (env *benchEnv) processWallTime(ctx context.Context, samples int) (procs, forks []float64, err error) {
	truePath, err := osexec.LookPath("true")
	if err != nil {
		return nil, nil, fmt.Errorf("find true: %w", err)
	}
	for i := 0; i < samples; i++ {
		t0 := time.Now()
		cmd := osexec.CommandContext(ctx, env.self, "--home", env.home, "enqueue", "--type", "noop", "--in", "1h")
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, nil, fmt.Errorf("stq enqueue: %v: %s", err, out)
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
