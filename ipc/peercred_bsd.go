//go:build darwin || freebsd

package ipc

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest socket path bind accepts (sun_path less its
// terminating NUL).
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// peerUID returns the effective uid of the process at the other end of a
// Unix socket, as recorded at connect time (LOCAL_PEERCRED, which is what
// getpeereid(3) reads).
func peerUID(nc net.Conn) (uint32, error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("peer credentials: not a unix socket (%T)", nc)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Xucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptXucred(int(fd), unix.SOL_LOCAL, unix.LOCAL_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("peer credentials: LOCAL_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}
