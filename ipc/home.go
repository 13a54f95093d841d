package ipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Paths are the files of one stq home. With a home (STQ_HOME, --home) they
// all live in it; otherwise state goes under the XDG state directory and
// the socket under XDG_RUNTIME_DIR when that is set.
type Paths struct {
	Home   string `json:"home"`
	DB     string `json:"db"`
	Socket string `json:"socket"`
	Token  string `json:"token"`
	Config string `json:"config"`
	Lock   string `json:"lock"`
}

// MaxSocketPath is the longest socket path this system can bind (sun_path
// less its NUL: 107 bytes on Linux, 103 on macOS and the BSDs).
const MaxSocketPath = maxSocketPath

// ErrSocketPathTooLong: the home's socket path is longer than a Unix socket
// path may be.
var ErrSocketPathTooLong = errors.New("socket path too long")

// Locate resolves the paths of a home the way the stq command does: home
// if not empty, else $STQ_HOME, else the platform's default.
func Locate(home string) (Paths, error) {
	if home == "" {
		home = os.Getenv("STQ_HOME")
	}
	explicit := home != ""
	if !explicit {
		dir, err := defaultStateDir()
		if err != nil {
			return Paths{}, err
		}
		home = dir
	}
	abs, err := filepath.Abs(home)
	if err != nil {
		return Paths{}, fmt.Errorf("resolve home %s: %w", home, err)
	}
	p := Paths{
		Home:   abs,
		DB:     filepath.Join(abs, "stq.db"),
		Socket: filepath.Join(abs, "stq.sock"),
		Token:  filepath.Join(abs, "token"),
		Config: filepath.Join(abs, "config.toml"),
		Lock:   filepath.Join(abs, "stq.lock"),
	}
	if rt := os.Getenv("XDG_RUNTIME_DIR"); !explicit && rt != "" {
		p.Socket = filepath.Join(rt, "stq", "stq.sock")
	}
	if len(p.Socket) > MaxSocketPath {
		return Paths{}, fmt.Errorf("%w: %s is %d bytes, longer than a Unix socket path may be (%d)", ErrSocketPathTooLong, p.Socket, len(p.Socket), MaxSocketPath)
	}
	return p, nil
}

func defaultStateDir() (string, error) {
	if runtime.GOOS == "darwin" {
		h, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find home directory: %w", err)
		}
		return filepath.Join(h, "Library", "Application Support", "stq"), nil
	}
	if x := os.Getenv("XDG_STATE_HOME"); x != "" && filepath.IsAbs(x) {
		return filepath.Join(x, "stq"), nil
	}
	h, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find home directory: %w (set STQ_HOME)", err)
	}
	return filepath.Join(h, ".local", "state", "stq"), nil
}

// ReadToken reads the daemon's token from the home's token file. When the
// file is missing, empty or unreadable, what that means depends on the
// socket: if nothing answers there, no daemon runs and the error wraps
// ErrNoDaemon; if a daemon answers, the token file is what is wrong, and
// the error is a *TokenError (which matches ErrUnauthorized).
func (p Paths) ReadToken() (string, error) {
	b, err := os.ReadFile(p.Token)
	if err == nil {
		if tok := strings.TrimSpace(string(b)); tok != "" {
			return tok, nil
		}
		err = errTokenEmpty
	}
	if !answers(p.Socket) {
		return "", &NoDaemonError{Path: p.Socket, Err: err}
	}
	return "", &TokenError{Path: p.Token, Socket: p.Socket, Err: err}
}

var errTokenEmpty = errors.New("the file is empty")

// TokenError: a daemon answers on the socket, but the token file that
// would let a client in is missing, empty or unreadable. It matches
// ErrUnauthorized with errors.Is.
type TokenError struct {
	Path   string // the token file
	Socket string // where the daemon answers
	Err    error  // why the file cannot be used
}

func (e *TokenError) Error() string {
	why := e.Err
	var pe *fs.PathError
	if errors.As(why, &pe) {
		why = pe.Err // the path is said already
	}
	if errors.Is(e.Err, fs.ErrNotExist) {
		return fmt.Sprintf("token file %s is missing, but a daemon answers on %s", e.Path, e.Socket)
	}
	return fmt.Sprintf("cannot use token file %s: %v (a daemon answers on %s)", e.Path, why, e.Socket)
}

func (e *TokenError) Unwrap() error { return e.Err }

// Is makes a TokenError match ErrUnauthorized: the client cannot
// authenticate.
func (e *TokenError) Is(target error) bool { return target == ErrUnauthorized }

// answers reports whether something accepts connections on the socket. It
// is only asked when the token cannot be read, never on the common path.
func answers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// StartWait bounds how long a client waits for a daemon that is starting
// (it holds the home's lock but does not answer yet) before it reports
// ErrNoDaemon.
const StartWait = 2 * time.Second

// startPoll is how often a client looks again for a starting daemon.
const startPoll = 20 * time.Millisecond

// ConnectPaths is Connect to the daemon of the home p with the token from
// its token file. When no daemon answers but one is starting (the home's
// lock is held: its socket or token is not there yet), it waits up to
// StartWait for it, so `stq daemon & stq enqueue ...` works. The common
// path, a running daemon, costs no more than reading the token and
// connecting.
func ConnectPaths(ctx context.Context, p Paths) (*Client, error) {
	c, err := connectPaths(ctx, p)
	if err == nil || !errors.Is(err, ErrNoDaemon) {
		return c, err
	}
	pid, starting := p.LockHolder()
	if !starting {
		return nil, err
	}
	deadline := time.Now().Add(StartWait)
	for {
		t := time.NewTimer(startPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, err
		case <-t.C:
		}
		c, err = connectPaths(ctx, p)
		if err == nil || !errors.Is(err, ErrNoDaemon) {
			return c, err
		}
		if _, starting = p.LockHolder(); !starting {
			return nil, err
		}
		if time.Now().After(deadline) {
			var nd *NoDaemonError
			if errors.As(err, &nd) {
				nd.Starting = fmt.Sprintf("a daemon (pid %s) holds the home's lock but did not answer within %s", pid, StartWait)
			}
			return nil, err
		}
	}
}

func connectPaths(ctx context.Context, p Paths) (*Client, error) {
	tok, err := p.ReadToken()
	if err != nil {
		return nil, err
	}
	return Connect(ctx, p.Socket, tok)
}

// LockHolder reports whether a daemon holds the home's lock (stq.lock),
// which it takes before anything else and keeps until it has exited, and
// the PID it wrote there ("unknown" when unreadable). It takes a shared
// lock for an instant to find out; a daemon starting at that moment tries
// again, so the probe never keeps it from starting.
func (p Paths) LockHolder() (pid string, held bool) {
	f, err := os.Open(p.Lock)
	if err != nil {
		return "", false
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err == nil {
		_ = unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return "", false
	} else if !errors.Is(err, unix.EWOULDBLOCK) {
		return "", false
	}
	b := make([]byte, 32)
	n, _ := f.ReadAt(b, 0)
	pid = strings.TrimSpace(string(b[:n]))
	if pid == "" {
		pid = "unknown"
	}
	return pid, true
}

// DialHome connects to the daemon of a home, found as Locate finds it (""
// for $STQ_HOME or the default), and authenticates. It is the one line a
// program needs: cl, err := ipc.DialHome(ctx, ""). A daemon that is
// starting is waited for, as ConnectPaths does.
func DialHome(ctx context.Context, home string) (*Client, error) {
	p, err := Locate(home)
	if err != nil {
		return nil, err
	}
	c, err := ConnectPaths(ctx, p)
	if err != nil {
		return nil, err
	}
	if err := c.authNow(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// ConnectHome is DialHome without the wait for authentication (see
// Connect): the first call carries it.
func ConnectHome(ctx context.Context, home string) (*Client, error) {
	p, err := Locate(home)
	if err != nil {
		return nil, err
	}
	return ConnectPaths(ctx, p)
}
