//go:build !linux && !darwin && !freebsd

package ipc

import (
	"fmt"
	"net"
	"runtime"
)

// maxSocketPath is the smallest sun_path among Unix systems, less its NUL.
const maxSocketPath = 103

// peerUID fails closed where there is no known way to read the peer's
// credentials: the server then refuses every connection.
func peerUID(net.Conn) (uint32, error) {
	return 0, fmt.Errorf("peer credentials are not supported on %s", runtime.GOOS)
}
