// Package ipc is the daemon's local API: a server and a client speaking
// line-delimited JSON-RPC 2.0 over a Unix socket, guarded by the socket's file
// mode, the peer's uid and a shared token. docs/API.md is the wire contract.
package ipc
