// Package exec runs job attempts for the engine: as subprocesses in their own
// process group, or as in-process handlers. It also finds and kills the
// process groups that a crashed daemon left behind.
package exec
