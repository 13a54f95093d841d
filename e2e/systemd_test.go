package e2e

// systemd integration of the real daemon: sd_notify (READY, STATUS,
// WATCHDOG, STOPPING) and socket activation, driven by a test that plays the
// service manager's part and by systemd-socket-activate.

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// waitAnswers waits until the home's daemon answers `stq stats`.
func (e *testEnv) waitAnswers() {
	e.t.Helper()
	waitFor(e.t, "the daemon to answer", 30*time.Second, func() bool { return e.run("stats", "--json").code == 0 })
}

// notifySocket is the service manager's end of NOTIFY_SOCKET: it keeps
// every datagram the daemon sends, with when it came.
type notifySocket struct {
	path string
	mu   sync.Mutex
	msgs []notifyMsg
}

type notifyMsg struct {
	at   time.Time
	text string
}

func listenNotify(t *testing.T) *notifySocket {
	t.Helper()
	dir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	n := &notifySocket{path: filepath.Join(dir, "notify")}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() { // ends when the cleanup closes conn
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				return
			}
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{time.Now(), string(buf[:k])})
			n.mu.Unlock()
		}
	}()
	return n
}

// matching returns the messages received so far that start with prefix.
func (n *notifySocket) matching(prefix string) []notifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []notifyMsg
	for _, m := range n.msgs {
		if strings.HasPrefix(m.text, prefix) {
			out = append(out, m)
		}
	}
	return out
}

func (n *notifySocket) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for _, m := range n.msgs {
		out = append(out, m.text)
	}
	return out
}

func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := listenNotify(t)
	d := e.launchDaemon([]string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=2000000"})

	waitFor(t, "READY=1", 30*time.Second, func() bool { return len(n.matching("READY=1")) > 0 })
	// READY=1 promises that the socket accepts: a client right after it
	// gets in on its first try, with no retry.
	if r := e.run("stats", "--json"); r.code != 0 {
		t.Fatalf("stats right after READY=1: exit %d: %s", r.code, r.stderr)
	}
	waitFor(t, "the first status line", 10*time.Second, func() bool { return len(n.matching("STATUS=running 0, queued 0")) > 0 })

	// Idle, the dispatcher's pulse still feeds the watchdog: pings keep
	// coming, never further apart than WATCHDOG_USEC (2s), past which
	// systemd would kill the daemon.
	waitFor(t, "three WATCHDOG=1 while idle", 15*time.Second, func() bool { return len(n.matching("WATCHDOG=1")) >= 3 })
	pings := n.matching("WATCHDOG=1")
	for i := 1; i < len(pings); i++ {
		if gap := pings[i].at.Sub(pings[i-1].at); gap >= 2*time.Second {
			t.Fatalf("%v between two WATCHDOG=1 with WATCHDOG_USEC=2s: %q", gap, n.all())
		}
	}
	dir := t.TempDir()
	id := e.ok("enqueue", "--", "sh", "-c", "touch "+dir+"/started; sleep 30")
	waitFor(t, "the job to start", 30*time.Second, func() bool { _, err := os.Stat(dir + "/started"); return err == nil })
	waitFor(t, "a status line with the running job", 10*time.Second, func() bool {
		return len(n.matching("STATUS=running 1, queued 0")) > 0
	})
	e.ok("cancel", id)

	// A burst of job events is summed up at most once a second: STATUS=
	// lines never come closer together than that (less a little for the
	// datagrams' own timing).
	for range 20 {
		e.ok("enqueue", "--", "true")
	}
	waitFor(t, "the burst to end", 30*time.Second, func() bool { return len(n.matching("STATUS=running 0, queued 0")) >= 2 })
	status := n.matching("STATUS=")
	for i := 1; i < len(status); i++ {
		if gap := status[i].at.Sub(status[i-1].at); gap < 900*time.Millisecond {
			t.Fatalf("two STATUS= lines %v apart, want at most one a second: %q", gap, n.all())
		}
	}

	if len(n.matching("STOPPING=1")) != 0 {
		t.Fatal("STOPPING=1 before any shutdown")
	}
	if code := d.stop(); code != 0 {
		t.Fatalf("daemon exit %d after SIGTERM", code)
	}
	if len(n.matching("STOPPING=1")) != 1 {
		t.Fatalf("no STOPPING=1 after SIGTERM: %q", n.all())
	}
	if strings.Contains(d.output(), "systemd: notify failed") {
		t.Fatalf("a notification failed:\n%s", d.output())
	}
}

func TestSystemdWatchdogOfAnotherProcessIsIgnored(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	n := listenNotify(t)
	e.launchDaemon([]string{"NOTIFY_SOCKET=" + n.path, "WATCHDOG_USEC=200000", "WATCHDOG_PID=1"})
	e.waitAnswers()
	time.Sleep(time.Second) // five watchdog intervals: a real timer being watched
	if pings := n.matching("WATCHDOG=1"); len(pings) != 0 || len(n.matching("READY=1")) != 1 {
		t.Fatalf("WATCHDOG_PID names another process, yet got %q", n.all())
	}
}

// socketActivate runs `systemd-socket-activate -l listen stq daemon` on the
// home; it execs the daemon on the first connection.
func (e *testEnv) socketActivate(listen string) (*exec.Cmd, *bytes.Buffer, chan struct{}) {
	e.t.Helper()
	sa, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		e.t.Skip("systemd-socket-activate is not installed")
	}
	var out bytes.Buffer
	c := exec.Command(sa, "-l", listen, "-E", "GORACE=atexit_sleep_ms=0 halt_on_error=1",
		stqBin, "daemon", "--home", e.home, "--log-level", "debug")
	c.Stdout, c.Stderr = &out, &out
	if err := c.Start(); err != nil {
		e.t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = c.Wait(); close(done) }()
	e.t.Cleanup(func() {
		_ = c.Process.Signal(syscall.SIGKILL)
		<-done
		if e.t.Failed() {
			e.t.Logf("systemd-socket-activate and daemon output:\n%s", out.String())
		}
	})
	return c, &out, done
}

// prepareHome runs the daemon once, so the home, database and token exist
// as a service installation leaves them.
func (e *testEnv) prepareHome() {
	e.t.Helper()
	d := e.startDaemon()
	if code := d.stop(); code != 0 {
		e.t.Fatalf("daemon exit %d", code)
	}
}

func TestSystemdSocketActivation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.prepareHome()
	sock := e.path("stq.sock")
	os.Remove(sock) // normally gone already: the daemon removes what it made
	c, _, done := e.socketActivate(sock)
	waitFor(t, "systemd-socket-activate to listen", 10*time.Second, func() bool {
		fi, err := os.Lstat(sock)
		return err == nil && fi.Mode()&os.ModeSocket != 0
	})

	// The first client starts the daemon and is answered by it.
	r := e.run("stats", "--json")
	if r.code != 0 {
		t.Fatalf("stats through an activated socket: exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, `"pid": `+strconv.Itoa(c.Process.Pid)) {
		t.Fatalf("stats answered by another process than the activated daemon (pid %d):\n%s", c.Process.Pid, r.stdout)
	}
	e.ok("wait", e.ok("enqueue", "--", "true"))
	if fi, err := os.Stat(sock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v, want 0600", fi.Mode(), err)
	}
	e.ok("shutdown")
	<-done
	// The socket belongs to the service manager: it stays for the next
	// activation, and a daemon started by hand replaces it.
	if fi, err := os.Lstat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("the activated daemon removed the socket it did not create: %v", err)
	}
	d := e.startDaemon()
	d.stop()
}

func TestSystemdSocketActivationRefusesAnotherSocket(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		listen func(e *testEnv) (listen, dial, network string)
		want   string
	}{
		{"a TCP socket", func(e *testEnv) (string, string, string) {
			addr := freeTCPAddr(t)
			return addr, addr, "tcp"
		}, "not a Unix stream socket at"},
		{"a Unix socket elsewhere", func(e *testEnv) (string, string, string) {
			p := e.path("other.sock")
			return p, p, "unix"
		}, "not at this home's socket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			e.prepareHome()
			listen, dial, network := tt.listen(e)
			c, out, done := e.socketActivate(listen)
			var conn net.Conn
			waitFor(t, "systemd-socket-activate to listen", 10*time.Second, func() bool {
				var err error
				conn, err = net.Dial(network, dial)
				return err == nil
			})
			defer conn.Close()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the daemon serves a socket that is not its own")
			}
			if c.ProcessState.ExitCode() == 0 {
				t.Fatalf("daemon exit 0 on a wrong socket:\n%s", out)
			}
			if !strings.Contains(out.String(), tt.want) {
				t.Fatalf("no %q in the daemon's output:\n%s", tt.want, out)
			}
		})
	}
}

// freeTCPAddr returns a loopback address with a port nothing listens on now.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
