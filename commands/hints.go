package commands

import (
	"errors"
	"strings"

	"stq/ipc"
)

// The libraries' errors state facts ("no daemon at PATH"); advice meant for
// a person, which names stq's own commands, is added here, when the CLI
// prints an error. Hints on a line of their own travel in exitError.hint.

// startDaemonAdvice follows a no-daemon error on the same line, as it
// always has: scripts and tests match that line.
const startDaemonAdvice = ": start one with `stq daemon`"

// errorLine is the text of the "stq: ..." line that reports err: the
// first line of its message, with the advice its facts call for.
func errorLine(err error) string {
	line := firstLine(err.Error())
	var nd *ipc.NoDaemonError
	// A daemon that is starting needs waiting for, not starting; and the
	// advice belongs right after the fact, so only when the line ends with it.
	if errors.As(err, &nd) && nd.Starting == "" && strings.HasSuffix(line, nd.Error()) {
		line += startDaemonAdvice
	}
	return line
}
