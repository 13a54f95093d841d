package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// clusterLease is the lease of the two-daemon tests: short so they take
// seconds, long enough that a loaded CI machine still renews in time.
const clusterLease = 4 * time.Second

// leaseEnv is a pgEnv home on schema whose daemon holds a clusterLease
// lease ([store] is the last table of pgEnv's config).
func leaseEnv(t *testing.T, schema string) *testEnv {
	t.Helper()
	e := pgEnv(t, schema)
	f, err := os.OpenFile(e.path("config.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintf(f, "lease = %q\n", clusterLease.String()); err != nil {
		t.Fatal(err)
	}
	return e
}

// startDaemonAs is startDaemon with extra environment (STQ_HOST, to play
// another host on this machine).
func (e *testEnv) startDaemonAs(env ...string) *daemon {
	e.t.Helper()
	d := e.launchDaemon(env, "--workers", "4")
	e.waitReady(d)
	return d
}

type clusterStats struct {
	Owner   string `json:"owner"`
	Store   string `json:"store"`
	Daemons []struct {
		Owner     string    `json:"owner"`
		Host      string    `json:"host"`
		PID       int       `json:"pid"`
		Version   string    `json:"version"`
		Started   time.Time `json:"started"`
		Heartbeat time.Time `json:"heartbeat"`
	} `json:"daemons"`
}

func (e *testEnv) clusterStats() clusterStats {
	e.t.Helper()
	var st clusterStats
	if err := json.Unmarshal([]byte(e.ok("stats", "--json")), &st); err != nil {
		e.t.Fatal(err)
	}
	return st
}

// leaseJob is the job of these tests: its first attempt writes its pid to
// dir/ID.pid, notes a SIGTERM in dir/ID.term (how a daemon stops its own
// job; recovery kills with SIGKILL) and sleeps; later attempts succeed at
// once.
func leaseJob(dir string) []string {
	script := `f="$0/$STQ_JOB_ID"
if [ "$STQ_ATTEMPT" != 1 ]; then exit 0; fi
trap 'echo term > "$f.term"; exit 143' TERM
echo $$ > "$f.pid"
sleep 120 &
wait $!`
	return []string{"sh", "-c", script, dir}
}

// enqueueLeaseJobs enqueues n leaseJobs through e and waits for all of
// them to run, returning their ids and their first attempts' pids.
func enqueueLeaseJobs(t *testing.T, e *testEnv, dir string, n int) ([]string, map[string]int) {
	t.Helper()
	var ids []string
	for range n {
		ids = append(ids, e.ok(append([]string{"enqueue", "--max-attempts", "3", "--backoff", "100ms", "--"}, leaseJob(dir)...)...))
	}
	pids := map[string]int{}
	for _, id := range ids {
		pids[id] = readPID(t, filepath.Join(dir, id+".pid"))
	}
	return ids, pids
}

// checkRecovered says every job ran twice: a first attempt recorded as
// crashed by the recovering daemon (never as the late completion of the
// daemon that lost it), then a successful one on owner's daemon.
func checkRecovered(t *testing.T, e *testEnv, ids []string, owner string) {
	t.Helper()
	for _, id := range ids {
		j := e.waitState(id, "DONE")
		if len(j.Attempts) != 2 || j.Attempts[0].Outcome != "crashed" || j.Attempts[0].Reason != "daemon crashed" ||
			j.Attempts[1].Outcome != "succeeded" {
			t.Errorf("job %s attempts %+v, want a crashed one then a succeeded one", id, j.Attempts)
		}
	}
	all := e.list()
	if len(all) != len(ids) {
		t.Errorf("%d jobs in the store, want %d", len(all), len(ids))
	}
	st := e.clusterStats()
	if len(st.Daemons) != 1 || st.Daemons[0].Owner != owner {
		t.Errorf("live daemons %+v, want only %s", st.Daemons, owner)
	}
}

// kill -9 of a daemon with jobs running. B leaves A's jobs alone while A
// lives, and once A is dead recovers them and runs every one to DONE.
// On another host (STQ_HOST) that is after A's lease expired, and A's
// processes are beyond B's reach; on the same host B sees at once that
// A's process is gone and kills what A left behind.
func TestClusterLeaseKill9(t *testing.T) {
	for _, tc := range []struct {
		name         string
		envA, envB   []string
		waitForLease bool
	}{
		{"other host", []string{"STQ_HOST=host-a"}, []string{"STQ_HOST=host-b"}, true},
		{"same host", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			schema := pgSchema(t)
			a, b := leaseEnv(t, schema), leaseEnv(t, schema)
			dir := t.TempDir()
			da := a.startDaemonAs(tc.envA...)
			ids, pids := enqueueLeaseJobs(t, a, dir, 4)
			t.Cleanup(func() {
				for _, pid := range pids {
					_ = syscall.Kill(-pid, syscall.SIGKILL) // another host's leftovers
				}
			})
			b.startDaemonAs(tc.envB...)
			st := b.clusterStats()
			checkDaemons(t, b, st, 2)
			if !strings.HasPrefix(st.Store, "postgres") || !strings.Contains(st.Store, "schema "+schema) {
				t.Errorf("stats names the store %q, want the database URL and schema %s", st.Store, schema)
			}
			// B started after A's jobs: its start-up recovery left them alone.
			for _, id := range ids {
				if j := b.show(id); j.State != "RUNNING" {
					t.Fatalf("job %s is %s on B's start, want RUNNING (A lives)", id, j.State)
				}
			}

			killed := time.Now()
			da.kill()
			checkRecovered(t, b, ids, st.Owner)
			took := time.Since(killed)
			for id, pid := range pids {
				if tc.waitForLease {
					if !processAlive(pid) {
						t.Errorf("B killed process %d of %s on another host", pid, id)
					}
					continue
				}
				waitFor(t, fmt.Sprintf("A's process %d of %s to be killed", pid, id), 10*time.Second, func() bool { return !processAlive(pid) })
				if _, err := os.Stat(filepath.Join(dir, id+".term")); err == nil {
					t.Errorf("job %s got SIGTERM: recovery kills with SIGKILL", id)
				}
			}
			if tc.waitForLease && took < clusterLease/2 {
				t.Errorf("recovered %s after the kill, before A's lease could expire", took)
			}
		})
	}
}

// checkDaemons checks that stats on e lists n complete daemon entries,
// in --json and in its text table.
func checkDaemons(t *testing.T, e *testEnv, st clusterStats, n int) {
	t.Helper()
	if len(st.Daemons) != n {
		t.Fatalf("stats lists %d daemons, want %d: %+v", len(st.Daemons), n, st.Daemons)
	}
	for _, d := range st.Daemons {
		if d.PID <= 0 || d.Host == "" || d.Version == "" || d.Heartbeat.IsZero() || d.Started.IsZero() {
			t.Errorf("daemon entry incomplete: %+v", d)
		}
	}
	if text := e.ok("stats"); !strings.Contains(text, "HEARTBEAT") || !strings.Contains(text, st.Owner+" (this daemon)") {
		t.Errorf("stats text has no daemon table:\n%s", text)
	}
}

// SIGSTOP of a daemon past its lease, then SIGCONT: its jobs were run
// again on the other host, it stopped its own copies itself (SIGTERM, the
// other host cannot reach them), none of its late completions was
// stored, and it exited non-zero rather than carry on with a lost lease.
func TestClusterLeaseSIGSTOP(t *testing.T) {
	schema := pgSchema(t)
	a, b := leaseEnv(t, schema), leaseEnv(t, schema)
	dir := t.TempDir()
	da := a.startDaemonAs("STQ_HOST=host-a")
	ids, pids := enqueueLeaseJobs(t, a, dir, 3)
	b.startDaemonAs("STQ_HOST=host-b")
	bOwner := b.clusterStats().Owner
	if !strings.HasPrefix(bOwner, "host-b/") {
		t.Fatalf("B's owner %q does not carry STQ_HOST", bOwner)
	}

	if err := da.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	checkRecovered(t, b, ids, bOwner)
	for id, pid := range pids {
		if !processAlive(pid) {
			t.Fatalf("A's process %d of %s died while A was stopped: nobody on host-b may kill it", pid, id)
		}
	}
	if err := da.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-da.done:
	case <-time.After(30 * time.Second):
		t.Fatal("A did not exit after finding its lease lost")
	}
	if code := da.cmd.ProcessState.ExitCode(); code != 1 {
		t.Errorf("A exited %d after losing its lease, want 1", code)
	}
	if log := da.output(); !strings.Contains(log, "lease") {
		t.Errorf("A's log does not say it lost its lease:\n%s", log)
	}
	for id, pid := range pids {
		waitFor(t, fmt.Sprintf("A's process %d of %s to end", pid, id), 10*time.Second, func() bool { return !processAlive(pid) })
		if _, err := os.Stat(filepath.Join(dir, id+".term")); err != nil {
			t.Errorf("job %s's first attempt was not stopped by A with SIGTERM: %v", id, err)
		}
	}
	// A's late completions were refused: the history is unchanged.
	checkRecovered(t, b, ids, bOwner)
}
