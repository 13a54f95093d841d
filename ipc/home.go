package ipc

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
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

// MaxSocketPath is the usable length of sun_path (108 bytes on Linux, 104
// on macOS); longer paths cannot be bound.
const MaxSocketPath = 103

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

// ReadToken reads the daemon's token from the home's token file. A missing
// file means no daemon has run there: the error wraps ErrNoDaemon.
func (p Paths) ReadToken() (string, error) {
	b, err := os.ReadFile(p.Token)
	if errors.Is(err, fs.ErrNotExist) {
		return "", &noDaemonError{path: p.Socket, cause: err}
	}
	if err != nil {
		return "", fmt.Errorf("read token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// DialHome connects to the daemon of a home, found as Locate finds it (""
// for $STQ_HOME or the default), and authenticates. It is the one line a
// program needs: cl, err := ipc.DialHome(ctx, "").
func DialHome(ctx context.Context, home string) (*Client, error) {
	p, err := Locate(home)
	if err != nil {
		return nil, err
	}
	tok, err := p.ReadToken()
	if err != nil {
		return nil, err
	}
	return Dial(ctx, p.Socket, tok)
}

// ConnectHome is DialHome without the wait for authentication (see
// Connect): the first call carries it.
func ConnectHome(ctx context.Context, home string) (*Client, error) {
	p, err := Locate(home)
	if err != nil {
		return nil, err
	}
	tok, err := p.ReadToken()
	if err != nil {
		return nil, err
	}
	return Connect(ctx, p.Socket, tok)
}
