package ipc

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/activation"
)

// Inherited returns the socket a service manager passed the daemon for it
// to serve (socket activation: LISTEN_PID is this process and LISTEN_FDS is
// set), or nil when it passed none and the daemon should Listen itself.
//
// The socket must be exactly one Unix stream socket listening at path, the
// home's socket: anything else means the unit and the home disagree, and
// serving it would leave clients dialling path unanswered. The variables are
// removed from the environment, so the jobs the daemon starts do not take
// the sockets for theirs.
//
// The socket file belongs to the service manager: closing the listener
// leaves it in place, so that the next client starts the daemon again.
func Inherited(path string) (net.Listener, error) {
	files := activation.Files(true)
	if len(files) == 0 {
		return nil, nil
	}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	if len(files) != 1 {
		return nil, fmt.Errorf("socket activation: got %d sockets, want one (the Unix socket %s)", len(files), path)
	}
	ln, err := net.FileListener(files[0])
	if err != nil {
		return nil, fmt.Errorf("socket activation: the inherited file descriptor is not a listening socket: %w", err)
	}
	ul, ok := ln.(*net.UnixListener)
	if !ok || ul.Addr().Network() != "unix" {
		ln.Close()
		return nil, fmt.Errorf("socket activation: the inherited socket is %s %s, not a Unix stream socket at %s", ln.Addr().Network(), ln.Addr(), path)
	}
	if got := ul.Addr().String(); filepath.Clean(got) != filepath.Clean(path) && !sameFile(got, path) {
		ln.Close()
		return nil, fmt.Errorf("socket activation: the inherited socket listens at %s, not at this home's socket %s", got, path)
	}
	ul.SetUnlinkOnClose(false)
	// A unit's SocketMode= defaults to 0666; the home directory (0700) and
	// the peer-uid check guard the socket anyway, but keep the mode the
	// daemon itself would give it. A socket owned by someone else (a
	// system unit without SocketUser=) cannot be changed and is left as is.
	_ = os.Chmod(path, 0o600)
	return ul, nil
}

// sameFile reports whether two paths name the same file: the unit may name
// the socket through a symbolic link to the home.
func sameFile(a, b string) bool {
	fa, err := os.Stat(a)
	if err != nil {
		return false
	}
	fb, err := os.Stat(b)
	return err == nil && os.SameFile(fa, fb)
}
