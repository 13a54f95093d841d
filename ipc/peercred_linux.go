//go:build linux

package ipc

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// maxSocketPath is the longest socket path bind accepts (sun_path less its
// terminating NUL).
const maxSocketPath = len(unix.RawSockaddrUnix{}.Path) - 1

// peerUID returns the uid of the process at the other end of a Unix socket,
// as the kernel recorded it at connect time (SO_PEERCRED).
func peerUID(nc net.Conn) (uint32, error) {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return 0, fmt.Errorf("peer credentials: not a unix socket (%T)", nc)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, fmt.Errorf("peer credentials: %w", err)
	}
	if cerr != nil {
		return 0, fmt.Errorf("peer credentials: SO_PEERCRED: %w", cerr)
	}
	return cred.Uid, nil
}
