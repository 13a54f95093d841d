package commands

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"stq/ipc"
)

// Paths are the files stq uses; see ipc.Locate for where they are.
type Paths = ipc.Paths

// resolvePaths locates the home's files; a socket path too long to bind is
// a usage error with a hint.
func resolvePaths(home string) (Paths, error) {
	p, err := ipc.Locate(home)
	if errors.Is(err, ipc.ErrSocketPathTooLong) {
		return Paths{}, &exitError{code: ExitUsage, err: err, hint: "use a shorter --home / STQ_HOME"}
	}
	return p, err
}

// ensureDirs creates the home and socket directories 0700. An existing
// directory that others can enter is tightened, since the socket's safety
// rests on it.
func ensureDirs(p Paths) error {
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
