package commands

import (
	"errors"
	"fmt"
)

// Exit codes: a contract scripts rely on (documented in README.md).
const (
	ExitOK       = 0 // success; for wait, every job ended DONE
	ExitFailure  = 1 // an error, or a job that did not end DONE
	ExitUsage    = 2 // bad command line: unknown command or flag, bad flag value
	ExitNoDaemon = 3 // the daemon is not reachable
	ExitTimeout  = 4 // wait --timeout ran out before the jobs ended
	ExitAuth     = 5 // the daemon's token is missing, unreadable or refused
)

// exitError carries an exit code and an optional hint line for the user.
type exitError struct {
	code int
	err  error
	hint string
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErrorf(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

func failf(format string, args ...any) error {
	return &exitError{code: ExitFailure, err: fmt.Errorf(format, args...)}
}

// silentFailure ends a command with ExitFailure after it already printed
// what happened (wait on a job that failed).
var errSilentFailure = &exitError{code: ExitFailure, err: errors.New("")}

// exitCode maps an error returned by a command to the process exit status.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitFailure
}
