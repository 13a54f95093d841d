package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDiskFullEnqueuesFailClearlyAndRecover fills a small tmpfs under the
// daemon's home. It needs root to mount; elsewhere it skips.
func TestDiskFullEnqueuesFailClearlyAndRecover(t *testing.T) {
	t.Parallel()
	if os.Getuid() != 0 {
		t.Skip("needs root to mount a size-limited tmpfs")
	}
	mnt, err := os.MkdirTemp("", "stqfull")
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	e := &testEnv{t: t, home: filepath.Join(mnt, "h")}
	d := e.startDaemon()
	t.Cleanup(func() {
		d.kill()
		_ = exec.Command("umount", mnt).Run()
		os.RemoveAll(mnt)
	})

	var acked []string
	for i := 0; i < 20; i++ {
		acked = append(acked, e.ok("enqueue", "--in", "1h", "--type", "noop"))
	}
	// Fill what is left of the file system.
	filler := filepath.Join(mnt, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()

	failures := 0
	for i := 0; i < 300 && failures < 5; i++ {
		r := e.run("enqueue", "--in", "1h", "--type", "noop", "--payload", `"`+strings.Repeat("x", 4000)+`"`)
		switch {
		case r.code == 0:
			acked = append(acked, strings.TrimSpace(r.stdout))
		case r.code == 1 && strings.Contains(r.stderr, "full"):
			failures++
		default:
			t.Fatalf("enqueue on a full disk: exit %d %q", r.code, r.stderr)
		}
	}
	if failures == 0 {
		t.Fatal("the disk never filled up")
	}
	e.ok("stats") // the daemon still serves

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	acked = append(acked, e.ok("enqueue", "--in", "1h", "--type", "noop"))
	stored := map[string]bool{}
	for _, j := range e.list() {
		stored[j.ID] = true
	}
	for _, id := range acked {
		if !stored[id] {
			t.Fatalf("acknowledged job %s missing after the disk filled up", id)
		}
	}
	t.Logf("%d acknowledged, %d refused with a disk-full error, all acknowledged present after space returned", len(acked), failures)
}
