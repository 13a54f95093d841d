package commands

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Paths are the files stq uses. With a home (--home or STQ_HOME) they all
// live in it; otherwise state goes under the XDG state directory and the
// socket under XDG_RUNTIME_DIR when that is set.
type Paths struct {
	Home   string `json:"home"`
	DB     string `json:"db"`
	Socket string `json:"socket"`
	Token  string `json:"token"`
	Config string `json:"config"`
	Lock   string `json:"lock"`
}

// maxSocketPath is the usable length of sun_path (108 on Linux, 104 on
// macOS); longer paths cannot be bound.
const maxSocketPath = 103

func resolvePaths(home string) (Paths, error) {
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
	if len(p.Socket) > maxSocketPath {
		return Paths{}, &exitError{code: ExitUsage,
			err:  fmt.Errorf("socket path %s is %d bytes, longer than a Unix socket path may be (%d)", p.Socket, len(p.Socket), maxSocketPath),
			hint: "use a shorter --home / STQ_HOME"}
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

// ensureDirs creates the home and socket directories 0700. An existing
// directory that others can enter is tightened, since the socket's safety
// rests on it.
func (p Paths) ensureDirs() error {
	for _, d := range []string{p.Home, filepath.Dir(p.Socket)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("create %s: %w", d, err)
		}
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("stat %s: %w", d, err)
		}
		if !fi.IsDir() {
			return errors.New(d + " is not a directory")
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(d, 0o700); err != nil {
				return fmt.Errorf("restrict %s to its owner: %w", d, err)
			}
		}
	}
	return nil
}
