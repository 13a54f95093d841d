package e2e

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// runOnTerminal runs one stq command with its stdout on a pseudo-terminal
// of the given width, as a person at a terminal runs it; colour as the
// terminal allows unless noColor. It returns stdout as the terminal got
// it, with "\r\n" turned back into "\n".
func (e *testEnv) runOnTerminal(cols int, noColor bool, args ...string) string {
	e.t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		e.t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		e.t.Fatalf("unlock pty: %v", err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		e.t.Fatalf("pty number: %v", err)
	}
	tty, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		e.t.Skipf("open pty: %v", err)
	}
	if err := unix.IoctlSetWinsize(int(tty.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 50, Col: uint16(cols)}); err != nil {
		tty.Close()
		e.t.Fatalf("set pty size: %v", err)
	}
	c := exec.Command(stqBin, args...)
	c.Env = []string{"STQ_HOME=" + e.home, "TERM=xterm-256color", "GORACE=atexit_sleep_ms=0 halt_on_error=1", "PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	if noColor {
		c.Env = append(c.Env, "NO_COLOR=1")
	}
	var errb bytes.Buffer
	c.Stdin, c.Stdout, c.Stderr = nil, tty, &errb
	if err := c.Start(); err != nil {
		tty.Close()
		e.t.Fatal(err)
	}
	tty.Close() // the child holds it now; its exit ends the reads below
	got := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(master) // ends with EIO once the child closed the terminal
		got <- b
	}()
	if err := c.Wait(); err != nil {
		e.t.Fatalf("stq %s on a terminal: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return strings.ReplaceAll(string(<-got), "\r\n", "\n")
}
