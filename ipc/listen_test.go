package ipc

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "stq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func TestListenSocketMode(t *testing.T) {
	path := filepath.Join(shortDir(t), "s")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %s, want socket 0600", fi.Mode())
	}
}

func TestListenRefusesSymlink(t *testing.T) {
	dir := shortDir(t)
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "s")
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Listen over a symlink: %v", err)
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "precious" {
		t.Fatalf("symlink target changed: %q %v", b, err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("symlink removed: %v", err)
	}

	// A dangling symlink, or one to a stale socket, is refused too.
	stale := filepath.Join(dir, "stale")
	makeStaleSocket(t, stale)
	link2 := filepath.Join(dir, "s2")
	os.Symlink(stale, link2)
	if _, err := Listen(link2); err == nil {
		t.Fatal("Listen followed a symlink to a socket")
	}
	if _, err := os.Lstat(stale); err != nil {
		t.Fatalf("socket behind the symlink removed: %v", err)
	}
}

func TestListenRefusesRegularFile(t *testing.T) {
	path := filepath.Join(shortDir(t), "s")
	if err := os.WriteFile(path, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Listen(path)
	if err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Listen over a file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Fatal("file changed")
	}
	dirPath := filepath.Join(filepath.Dir(path), "d")
	os.Mkdir(dirPath, 0o700)
	if _, err := Listen(dirPath); err == nil {
		t.Fatal("Listen over a directory")
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), "s")
	makeStaleSocket(t, path)
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer ln.Close()
	// The new socket answers.
	dialRaw(t, path)
}

func TestListenRefusesLiveSocket(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	_, err := Listen(ts.path)
	if err == nil || err.Error() != "a daemon is already listening on "+ts.path {
		t.Fatalf("Listen over a live socket: %v", err)
	}
	// The running server is unharmed.
	c := authedRaw(t, ts.path)
	c.send(req(1, MethodStats, ""))
	if r := c.recv(); r.Error != nil {
		t.Fatal(r.Error)
	}
}

func TestListenPathErrors(t *testing.T) {
	dir := shortDir(t)
	if _, err := Listen(filepath.Join(dir, "missing", "s")); err == nil {
		t.Fatal("Listen in a missing directory")
	}
	long := filepath.Join(dir, strings.Repeat("x", 120))
	if _, err := Listen(long); err == nil || !strings.Contains(err.Error(), "over the limit") {
		t.Fatalf("Listen on an over-long path: %v", err)
	}
}
