package ipc

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"stq/engine"
)

func TestShutdownAndReloadReachTheBackend(t *testing.T) {
	ts := startServer(t, nil, ServerOptions{})
	c := dialClient(t, ts.path)
	ctx := testCtx(t)
	res, err := c.Reload(ctx)
	if err != nil || res.Config != "config.toml" || res.RestartNeeded == nil {
		t.Fatalf("reload: %+v, %v", res, err)
	}
	sd, err := c.Shutdown(ctx)
	if err != nil || sd.PID != 4242 || time.Duration(sd.Grace) != 10*time.Second || time.Duration(sd.KillGrace) != 5*time.Second {
		t.Fatalf("shutdown: %+v, %v", sd, err)
	}
	ts.fake.mu.Lock()
	defer ts.fake.mu.Unlock()
	if ts.fake.shutdowns != 1 || ts.fake.reloads != 1 {
		t.Fatalf("backend saw %d shutdowns and %d reloads, want 1 and 1", ts.fake.shutdowns, ts.fake.reloads)
	}
}

func TestSetLimitsReachesOpenConnections(t *testing.T) {
	dir, err := os.MkdirTemp("", "stq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "s")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(newFake(), ServerOptions{Token: testToken, Limits: RateLimits{ConnEnqueueRate: 0.001, ConnEnqueueBurst: 1}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })

	c := dialClient(t, path)
	tctx := testCtx(t)
	if _, err := c.Enqueue(tctx, enqueueReq("q")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Enqueue(tctx, enqueueReq("q")); !errors.Is(err, ErrRateLimited) {
		t.Fatalf("second enqueue over a burst of 1: %v", err)
	}
	if _, err := c.EnqueueMany(tctx, []engine.EnqueueRequest{enqueueReq("q"), enqueueReq("q")}); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("a batch of 2 over a burst of 1: %v", err)
	}
	srv.SetLimits(RateLimits{ConnEnqueueRate: 1000, ConnEnqueueBurst: 1000, EnqueueRate: 1000, EnqueueBurst: 5})
	// The bucket keeps the tokens it had (none), now refilled at the new
	// rate: wait as long as the daemon says, once.
	three := []engine.EnqueueRequest{enqueueReq("q"), enqueueReq("q"), enqueueReq("q")}
	_, err = c.EnqueueMany(tctx, three)
	if d, limited := RetryAfter(err); limited && d < time.Second {
		time.Sleep(d)
		_, err = c.EnqueueMany(tctx, three)
	}
	if err != nil {
		t.Fatalf("a batch of 3 on the same connection after SetLimits: %v", err)
	}
	if _, err := c.EnqueueMany(tctx, make([]engine.EnqueueRequest, 6)); !errors.Is(err, ErrLimitExceeded) {
		t.Fatalf("a batch of 6 over the new daemon-wide burst of 5: %v", err)
	}
}

// lifeHome makes an empty home directory; serveHome serves its socket
// with a fake backend.
func lifeHome(t *testing.T) Paths {
	t.Helper()
	dir, err := os.MkdirTemp("", "stq")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	p, err := Locate(dir)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func serveHome(t *testing.T, p Paths) {
	t.Helper()
	ln, err := Listen(p.Socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(newFake(), ServerOptions{Token: testToken})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestReadTokenSaysWhatIsWrongWhenADaemonAnswers(t *testing.T) {
	p := lifeHome(t)
	// Nothing listens: a missing token means no daemon.
	if _, err := p.ReadToken(); !errors.Is(err, ErrNoDaemon) {
		t.Fatalf("no daemon, no token: %v", err)
	}
	serveHome(t, p)
	_, err := p.ReadToken()
	var te *TokenError
	if !errors.As(err, &te) || !errors.Is(err, ErrUnauthorized) || errors.Is(err, ErrNoDaemon) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a daemon answers, no token file: %v", err)
	}
	if want := "token file " + p.Token + " is missing"; !strings.Contains(err.Error(), want) {
		t.Fatalf("message %q lacks %q", err, want)
	}
	if err := os.Mkdir(p.Token, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReadToken(); !errors.As(err, &te) || !strings.Contains(err.Error(), "is a directory") {
		t.Fatalf("a directory as the token file: %v", err)
	}
	os.Remove(p.Token)
	if err := os.WriteFile(p.Token, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := p.ReadToken(); !errors.As(err, &te) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("an empty token file: %v", err)
	}
	if err := os.WriteFile(p.Token, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := DialHome(testCtx(t), p.Home)
	if err != nil {
		t.Fatalf("dial with the right token: %v", err)
	}
	c.Close()
}

func TestConnectPathsWaitsForADaemonThatHoldsTheLock(t *testing.T) {
	p := lifeHome(t)
	start := time.Now()
	if _, err := ConnectPaths(testCtx(t), p); !errors.Is(err, ErrNoDaemon) || time.Since(start) > time.Second {
		t.Fatalf("no daemon: %v after %s; want ErrNoDaemon at once", err, time.Since(start))
	}

	// A daemon starting: it holds the lock, and has no token or socket yet.
	lock, err := os.OpenFile(p.Lock, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	lock.WriteString("777\n")
	if pid, held := p.LockHolder(); !held || pid != "777" {
		t.Fatalf("LockHolder: %q %v", pid, held)
	}

	start = time.Now()
	_, err = ConnectPaths(testCtx(t), p)
	if took := time.Since(start); !errors.Is(err, ErrNoDaemon) || took < StartWait || !strings.Contains(err.Error(), "pid 777") {
		t.Fatalf("a daemon that never answers: %v after %s", err, took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		os.WriteFile(p.Token, []byte(testToken+"\n"), 0o600)
		ln, err := Listen(p.Socket)
		if err != nil {
			served <- err
			return
		}
		served <- NewServer(newFake(), ServerOptions{Token: testToken}).Serve(ctx, ln)
	}()
	defer func() { cancel(); <-served }()
	c, err := ConnectPaths(testCtx(t), p)
	if err != nil {
		t.Fatalf("a daemon ready within StartWait: %v", err)
	}
	defer c.Close()
	if _, err := c.Stats(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}
