package exec

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"stq/engine"
)

// Defaults for the zero values of Subprocess and engine.Run.
const (
	DefaultGrace        = 5 * time.Second
	DefaultDrainTimeout = 200 * time.Millisecond
)

// Subprocess runs an attempt's command as a child process in its own process
// group, so that stopping the attempt stops everything it started.
type Subprocess struct {
	// MaxLine bounds one captured output line; longer lines are split.
	// Zero means DefaultMaxLine.
	MaxLine int
	// DrainTimeout is how long the output readers get, once the process
	// group is dead, to read what is left in the pipes. A process that left
	// the group (setsid) can hold a pipe open forever; after this the pipes
	// are closed on it. Zero means DefaultDrainTimeout.
	DrainTimeout time.Duration
	// Gate holds the command back until run.Started has returned, that is
	// until the daemon has durably recorded the PID. The child starts as
	// /bin/sh waiting on a pipe, then execs the command in place (same PID,
	// same start time). If the daemon dies before opening the gate, the
	// pipe closes and the child exits 125 without running anything, so a
	// crash can never leave behind a process that recovery cannot find.
	Gate bool
}

// gateScript waits for a line on fd 3 and then becomes the command; EOF
// (the daemon died before recording the PID) means "do not run".
const gateScript = `IFS= read -r _ <&3 || exit 125; exec 3<&-; exec "$@"`

// ExitGateClosed is the status of a gated child whose daemon died before
// letting it run.
const ExitGateClosed = 125

var _ engine.Executor = Subprocess{}

// Execute runs run.Command and returns once the process has exited, its
// process group has been killed and its output has been read.
func (s Subprocess) Execute(ctx context.Context, run *engine.Run) engine.Result {
	if len(run.Command) == 0 {
		return engine.Result{Err: fmt.Errorf("start job: empty command: %w", engine.ErrPermanent)}
	}
	if ctx.Err() != nil {
		return engine.Result{Err: fmt.Errorf("start %q: %w", run.Command[0], context.Cause(ctx))}
	}
	p, err := s.start(run)
	if err != nil {
		return engine.Result{Err: err}
	}
	// Without a gate the command already runs: the record need not be
	// durable before anything else happens, so it goes with the engine's
	// next commit (recovery finds an unrecorded process by its marker).
	record := run.Started
	if !s.Gate && run.Spawned != nil {
		record = run.Spawned
	}
	if record != nil {
		// A failed lookup leaves 0, which recovery treats as "not ours"
		// whenever the PID is alive: it never kills on a guess.
		pidStart, _ := StartTime(p.pid)
		record(p.pid, pidStart)
	}
	p.openGate()
	grace := run.Grace
	if grace <= 0 {
		grace = DefaultGrace
	}
	return p.finish(ctx, grace)
}

// proc is one running attempt. Every goroutine it starts has ended when
// finish returns.
type proc struct {
	name  string
	cmd   *osexec.Cmd
	pid   int
	drain time.Duration

	// The read ends of the output pipes. We own them (rather than letting
	// os/exec copy) so that cmd.Wait never waits for a pipe that a
	// grandchild still holds, and so that we can close them to stop a drain.
	stdout, stderr *os.File
	readers        sync.WaitGroup
	// lines counts what the readers delivered, so a drain can tell a
	// reader still emptying a full pipe from one blocked on a holder.
	lines atomic.Int64

	// gate is the write end of the start gate, nil without one.
	gate     *os.File
	gateOnce sync.Once

	// stdin is the write end of the payload pipe, nil without a payload.
	stdin      *os.File
	stdinOnce  sync.Once
	writerDone chan struct{}

	// exited is closed when the leader has exited. reaped and waitErr are
	// set before that when the platform could not wait without reaping.
	exited  chan struct{}
	reaped  bool
	waitErr error
}

// start starts the attempt's command (behind the gate, with Gate) and the
// goroutines that feed and read it, and returns at once.
func (s Subprocess) start(run *engine.Run) (*proc, error) {
	name := run.Command[0]
	var payload []byte
	var cwd string
	if run.Job != nil {
		payload, cwd = run.Job.Payload, run.Job.Cwd
	}
	// The program is looked up in the PATH the job runs with (its
	// caller's, when it brought its environment), not the daemon's. With a
	// gate too: a missing program then fails to start with a clear error
	// instead of as the shell's exit 127.
	env := run.ProcessEnv(os.Environ())
	path, err := lookPath(name, env, cwd)
	if err != nil {
		return nil, startError(name, cwd, err)
	}
	pp, err := openPipes(len(payload) > 0, s.Gate)
	if err != nil {
		return nil, err
	}
	cmd := pp.command(path, run.Command, env, cwd)
	err = cmd.Start()
	// The child holds its own copies now; ours would keep the readers from
	// ever seeing EOF.
	pp.closeChildEnds()
	if err != nil {
		pp.closeOurEnds()
		return nil, startError(name, cwd, err)
	}
	s.defaults()
	p := &proc{
		name:   name,
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		drain:  s.DrainTimeout,
		stdout: pp.outR,
		stderr: pp.errR,
		stdin:  pp.inW,
		gate:   pp.gateW,
		exited: make(chan struct{}),
	}
	p.serve(newSink(run.Output), s.MaxLine, payload)
	return p, nil
}

// pipes connect the daemon to one child: its stdout and stderr, its stdin
// when there is a payload, and the start gate with Gate. Each pair is the
// child's end and ours; a pair not asked for is nil.
type pipes struct {
	outR, outW, errR, errW, inR, inW, gateR, gateW *os.File
}

func openPipes(stdin, gate bool) (*pipes, error) {
	pp := &pipes{}
	var err error
	if pp.outR, pp.outW, err = os.Pipe(); err != nil {
		return nil, fmt.Errorf("create stdout pipe: %w", err)
	}
	if pp.errR, pp.errW, err = os.Pipe(); err != nil {
		pp.closeAll()
		return nil, fmt.Errorf("create stderr pipe: %w", err)
	}
	if stdin {
		if pp.inR, pp.inW, err = os.Pipe(); err != nil {
			pp.closeAll()
			return nil, fmt.Errorf("create stdin pipe: %w", err)
		}
	}
	if gate {
		if pp.gateR, pp.gateW, err = os.Pipe(); err != nil {
			pp.closeAll()
			return nil, fmt.Errorf("create start gate: %w", err)
		}
	}
	return pp, nil
}

func (pp *pipes) closeChildEnds() { closeAll(pp.outW, pp.errW, pp.inR, pp.gateR) }
func (pp *pipes) closeOurEnds()   { closeAll(pp.outR, pp.errR, pp.inW, pp.gateW) }
func (pp *pipes) closeAll()       { pp.closeChildEnds(); pp.closeOurEnds() }

// command is the child to start: the program at path in its own process
// group, or with a gate /bin/sh holding it back until the gate opens.
func (pp *pipes) command(path string, args, env []string, cwd string) *osexec.Cmd {
	cmd := &osexec.Cmd{Path: path, Args: args}
	if pp.gateR != nil {
		cmd = osexec.Command("/bin/sh", append([]string{"-c", gateScript, "stq-gate"}, args...)...)
		cmd.ExtraFiles = []*os.File{pp.gateR} // fd 3
	}
	cmd.Dir = cwd
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = pp.outW, pp.errW
	if pp.inR != nil {
		cmd.Stdin = pp.inR
	}
	// Without a payload os/exec connects stdin to /dev/null: a child that
	// reads it sees EOF at once instead of waiting on the daemon's stdin.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// serve starts the goroutines of a started child: one reader per output
// pipe, the payload's writer, and the waiter that closes p.exited. finish
// waits for all of them.
func (p *proc) serve(out *sink, maxLine int, payload []byte) {
	p.readers.Add(2)
	go p.read(p.stdout, "stdout", maxLine, out)
	go p.read(p.stderr, "stderr", maxLine, out)
	if p.stdin != nil {
		p.writerDone = make(chan struct{})
		go func() {
			defer close(p.writerDone)
			// EPIPE when the child exits without reading everything is
			// expected: stdin is the job's to ignore.
			_, _ = p.stdin.Write(payload)
			p.closeStdin()
		}()
	}
	go func() {
		defer close(p.exited)
		if waitExit(p.pid) == nil {
			return
		}
		p.waitErr = p.cmd.Wait()
		p.reaped = true
	}()
}

// openGate lets a gated child run its command; closing without the line
// (as a dying daemon does) would make it exit instead.
func (p *proc) openGate() {
	p.gateOnce.Do(func() {
		if p.gate != nil {
			_, _ = p.gate.Write([]byte("\n"))
			_ = p.gate.Close()
		}
	})
}

func (s *Subprocess) defaults() {
	if s.MaxLine <= 0 {
		s.MaxLine = DefaultMaxLine
	}
	if s.DrainTimeout <= 0 {
		s.DrainTimeout = DefaultDrainTimeout
	}
}

func (p *proc) read(f *os.File, stream string, maxLine int, out *sink) {
	defer p.readers.Done()
	readLines(f, maxLine, func(text string) {
		p.lines.Add(1)
		out.write(stream, text)
	})
}

// finish waits for the leader to exit, stopping it first if ctx ends, then
// kills the rest of its group and collects the output.
func (p *proc) finish(ctx context.Context, grace time.Duration) engine.Result {
	select {
	case <-p.exited:
	case <-ctx.Done():
		p.signalGroup(unix.SIGTERM)
		timer := time.NewTimer(grace)
		select {
		case <-p.exited:
			timer.Stop()
		case <-timer.C:
			p.signalGroup(unix.SIGKILL)
			<-p.exited
		}
	}
	// The attempt is over when its leader is: whatever it left running in
	// its group would otherwise outlive the attempt and hold the pipes.
	p.signalGroup(unix.SIGKILL)
	if !p.reaped {
		p.waitErr = p.cmd.Wait()
	}

	// Closing the payload pipe unblocks a writer stuck on a reader that
	// escaped the group.
	p.closeStdin()
	if p.writerDone != nil {
		<-p.writerDone
	}
	p.drainOutput()
	return p.result()
}

// signalGroup signals the attempt's whole process group. ESRCH only means
// nothing is left.
func (p *proc) signalGroup(sig unix.Signal) {
	_ = unix.Kill(-p.pid, sig)
}

func (p *proc) closeStdin() {
	if p.stdin != nil {
		p.stdinOnce.Do(func() { _ = p.stdin.Close() })
	}
}

// maxDrain bounds a drain that keeps making progress: a process that
// escaped the group and writes without end must not hold the attempt open.
const maxDrain = 10 * time.Second

// drainOutput waits for the readers to reach EOF. The group is dead, so
// normally that is quick; a process that escaped the group with setsid may
// still hold the pipes, and then closing our read ends makes the blocked
// reads return. What the dead group wrote is still in the pipes, up to
// their buffers' size, and on a loaded machine reading it can take longer
// than one drain period: the readers get another period as long as they
// delivered lines in the last one, so that output is not cut off.
func (p *proc) drainOutput() {
	done := make(chan struct{})
	go func() {
		p.readers.Wait()
		close(done)
	}()
	timer := time.NewTimer(p.drain)
	defer timer.Stop()
	giveUp := time.Now().Add(maxDrain)
	for seen := p.lines.Load(); ; {
		select {
		case <-done:
			closeAll(p.stdout, p.stderr)
			return
		case <-timer.C:
		}
		now := p.lines.Load()
		if now == seen || time.Now().After(giveUp) {
			closeAll(p.stdout, p.stderr)
			<-done
			return
		}
		seen = now
		timer.Reset(p.drain)
	}
}

func (p *proc) result() engine.Result {
	st := p.cmd.ProcessState
	if st == nil {
		return engine.Result{Err: fmt.Errorf("wait for %q: %w", p.name, p.waitErr)}
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return engine.Result{Signal: signalName(ws.Signal())}
	}
	code := st.ExitCode()
	return engine.Result{ExitCode: &code}
}

func signalName(sig syscall.Signal) string {
	if name := unix.SignalName(sig); name != "" {
		return name
	}
	return sig.String()
}

// startError words a start failure as `start "name": reason`, without the
// "exec: " prefix os/exec adds. A failed chdir surfaces from the child as a
// bare "fork/exec <path>: no such file or directory", which blames the
// command, so a missing working directory is named instead.
func startError(name, cwd string, err error) error {
	var ee *osexec.Error
	if errors.As(err, &ee) {
		return fmt.Errorf("start %q: %w", ee.Name, ee.Err)
	}
	if cwd != "" {
		if _, statErr := os.Stat(cwd); statErr != nil {
			return fmt.Errorf("start %q: working directory: %w", name, statErr)
		}
	}
	return fmt.Errorf("start %q: %w", name, err)
}

// closeAll closes the files that are not nil. Errors are of no use here:
// the files are pipe ends we are done with (or closing twice on purpose).
func closeAll(files ...*os.File) {
	for _, f := range files {
		if f != nil {
			_ = f.Close()
		}
	}
}
