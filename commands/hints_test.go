package commands

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"stq/ipc"
)

func TestErrorLineAddsTheAdviceTheFactsCallFor(t *testing.T) {
	t.Parallel()
	down := &ipc.NoDaemonError{Path: "/h/stq.sock", Err: syscall.ECONNREFUSED}
	starting := &ipc.NoDaemonError{Path: "/h/stq.sock", Starting: "a daemon (pid 7) holds the home's lock but did not answer within 5s", Err: syscall.ENOENT}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"no daemon", down, "no daemon at /h/stq.sock: start one with `stq daemon`"},
		{"no daemon, wrapped", fmt.Errorf("list: %w", down), "list: no daemon at /h/stq.sock: start one with `stq daemon`"},
		{"no daemon, with an exit code", &exitError{code: ExitNoDaemon, err: down}, "no daemon at /h/stq.sock: start one with `stq daemon`"},
		{"a daemon starting needs no starting", starting, "no daemon answers at /h/stq.sock: a daemon (pid 7) holds the home's lock but did not answer within 5s"},
		{"advice only right after the fact", fmt.Errorf("%w (while sending)", down), "no daemon at /h/stq.sock (while sending)"},
		{"other errors print as they are", errors.New("job not found\nmore"), "job not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := errorLine(tt.err); got != tt.want {
				t.Fatalf("errorLine = %q, want %q", got, tt.want)
			}
		})
	}
}
