//go:build !linux

package e2e

// runOnTerminal needs Linux's /dev/ptmx; elsewhere the terminal tests skip.
func (e *testEnv) runOnTerminal(cols int, noColor bool, args ...string) string {
	e.t.Helper()
	e.t.Skip("pseudo-terminal tests run on Linux")
	return ""
}
