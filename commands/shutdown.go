package commands

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"
)

func (a *app) shutdownCommand() *cli.Command {
	return &cli.Command{
		Name:  "shutdown",
		Usage: "stop the daemon gracefully, as SIGTERM does, and wait until it has exited",
		Description: "Asks the daemon to stop: it takes no new requests, gives running jobs its grace\n" +
			"period (daemon.grace, default 10s), then kills and requeues what is left without\n" +
			"using up an attempt. Returns once the daemon has exited (exit 0), or exits 1 if it\n" +
			"is still there after its grace periods and a margin.",
		Action: a.shutdown,
	}
}

func (a *app) shutdown(ctx context.Context, c *cli.Command) error {
	cl, p, err := a.client(ctx, c)
	if err != nil {
		return err
	}
	res, err := cl.Shutdown(ctx)
	cl.Close()
	if err != nil {
		return rpcFailure(err)
	}
	limit := time.Duration(res.Grace) + time.Duration(res.KillGrace) + shutdownMargin
	deadline := time.Now().Add(limit)
	for !daemonGone(p, res.PID) {
		if time.Now().After(deadline) {
			return &exitError{code: ExitFailure,
				err:  fmt.Errorf("the daemon (pid %d) is still running %s after it began to shut down", res.PID, limit),
				hint: fmt.Sprintf("see its log; kill -KILL %d ends it (the next daemon recovers its running jobs)", res.PID)}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(lifePoll):
		}
	}
	return nil
}

// daemonGone reports whether the daemon pid has exited: the process is
// gone, or the home's lock is free (a zombie nobody reaped yet holds no
// lock).
func daemonGone(p Paths, pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	_, held := p.LockHolder()
	return !held
}
