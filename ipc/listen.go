package ipc

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleProbeTimeout bounds the dial that tells a live socket from a stale one.
const staleProbeTimeout = time.Second

// Listen creates the daemon's socket at path, mode 0600, in an existing
// directory.
//
// Whatever is already at path is examined without following it: a symlink
// or anything that is not a socket is refused and left alone (removing it
// could be made to delete a file of the attacker's choosing); a socket some
// daemon answers on is refused; a socket nobody answers on (connection
// refused) is a leftover of a crashed daemon and is replaced.
//
// Permissions: the socket is chmod'ed to 0600 right after bind instead of
// narrowing the umask around bind, because the umask is process-wide and
// changing it would race with every other goroutine creating files. The
// short window between bind and chmod is harmless when, as the daemon does,
// the socket lives in a directory only its owner can enter (0700) — that
// directory is the real guard, and the peer-uid check in the server is a
// second one. Callers must also hold the daemon's lock so two daemons never
// run the stale-socket replacement at the same time.
func Listen(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("socket path %s is %d bytes, over the limit of %d on this system", path, len(path), maxSocketPath)
	}
	dir := filepath.Dir(path)
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("socket directory %s is not a directory", dir)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set mode of socket %s: %w", path, err)
	}
	return ln, nil
}

// clearStale makes way for a new socket at path, or says why it cannot.
func clearStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("check socket path: %w", err)
	case fi.Mode()&fs.ModeSymlink != 0:
		return fmt.Errorf("refusing to use %s: it is a symbolic link", path)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("refusing to use %s: it exists and is not a socket (mode %s)", path, fi.Mode())
	}
	nc, err := net.DialTimeout("unix", path, staleProbeTimeout)
	if err == nil {
		nc.Close()
		return fmt.Errorf("a daemon is already listening on %s", path)
	}
	// Only "connection refused" proves nobody listens; anything else
	// (permission denied, a full backlog) leaves the socket alone.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether %s is in use: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}
