package e2e

// What the tests inspect from outside the daemon: processes through /proc,
// process groups, file sizes, and SQLite's own checks of a stopped
// daemon's database.

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
)

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	if err != nil {
		return false
	}
	// A zombie still answers kill(0); it is dead for our purposes.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i > 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	var pid int
	waitFor(t, "pid file "+path, 30*time.Second, func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	return pid
}

func needProc(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("needs Linux /proc")
	}
}

// procStatusKB reads a size field ("VmRSS", "VmHWM") of /proc/PID/status,
// in KiB.
func procStatusKB(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			if len(f) == 0 {
				break
			}
			return strconv.ParseInt(f[0], 10, 64)
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// rssMB is the daemon's resident set now (VmRSS), in MiB.
func (d *daemon) rssMB() float64 {
	d.t.Helper()
	kb, err := procStatusKB(d.cmd.Process.Pid, "VmRSS")
	if err != nil {
		d.t.Fatalf("read daemon RSS: %v", err)
	}
	return float64(kb) / 1024
}

// peakRSSMB is the daemon's peak resident set so far (VmHWM), in MiB.
func (d *daemon) peakRSSMB() float64 {
	d.t.Helper()
	kb, err := procStatusKB(d.cmd.Process.Pid, "VmHWM")
	if err != nil {
		d.t.Fatalf("read daemon peak RSS: %v", err)
	}
	return float64(kb) / 1024
}

// jobProcesses lists the live processes that run jobs of this home: every
// job inherits the daemon's environment, which holds STQ_HOME, plus its own
// STQ_JOB_ID. The map goes from PID to (job id, process group).
type jobProc struct {
	id   string
	pgid int
	cmd  string
}

func (e *testEnv) jobProcesses() map[int]jobProc {
	procs := map[int]jobProc{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return procs
	}
	home := []byte("STQ_HOME=" + e.home)
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil {
			continue
		}
		var id string
		mine := false
		for kv := range bytes.SplitSeq(env, []byte{0}) {
			if bytes.Equal(kv, home) {
				mine = true
			}
			if v, ok := bytes.CutPrefix(kv, []byte("STQ_JOB_ID=")); ok {
				id = string(v)
			}
		}
		if !mine || id == "" || !processAlive(pid) {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		procs[pid] = jobProc{id: id, pgid: pgidOf(pid), cmd: strings.ReplaceAll(string(cmdline), "\x00", " ")}
	}
	return procs
}

// pgidOf reads the process group from /proc/PID/stat (field 5).
func pgidOf(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:]) // state ppid pgrp ...
	if len(f) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(f[2])
	return n
}

// syscallKillGroup kills a leftover process group the test found.
func syscallKillGroup(pgid int) error {
	if pgid <= 1 {
		return nil
	}
	return syscall.Kill(-pgid, syscall.SIGKILL)
}

func fdCount(pid int) int {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return -1
	}
	return len(ents)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func mb(n int64) float64 { return float64(n) / (1 << 20) }

// sqliteCheck opens the database file directly (the daemon must be stopped)
// and returns what PRAGMA integrity_check and foreign_key_check say: "ok"
// and no rows when the file is sound.
func sqliteCheck(t *testing.T, path string) (integrity string, fkViolations int) {
	t.Helper()
	db, err := sqlite3.Open(path)
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer db.Close()
	rows := func(sql string) []string {
		stmt, _, err := db.Prepare(sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer stmt.Close()
		var out []string
		for stmt.Step() {
			out = append(out, stmt.ColumnText(0))
		}
		if err := stmt.Err(); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return out
	}
	return strings.Join(rows("PRAGMA integrity_check"), "\n"), len(rows("PRAGMA foreign_key_check"))
}

func dbBytes(t *testing.T, e *testEnv) int64 {
	var total int64
	for _, suffix := range []string{"", "-wal"} {
		if fi, err := os.Stat(e.path("stq.db" + suffix)); err == nil {
			total += fi.Size()
		}
	}
	return total
}
