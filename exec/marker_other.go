//go:build !linux

package exec

// MarkerRecovery is true where Processes.KillJob can find an attempt's
// processes by the STQ_JOB_ID=<id> entry in their environment, so that the
// subprocess executor does not need the start gate. It is false here: on
// macOS gopsutil reads another process's environment from kern.procargs2,
// which for a restricted (hardened, cs_restricted) process comes back empty
// without an error, and whose end is found by a guess that an empty entry
// cuts short. A marked process could be missed silently, so the executor
// keeps the gate (Subprocess.Gate), which guarantees that every running
// attempt has its PID recorded.
const MarkerRecovery = false

// KillJob finds nothing here and reports (false, nil): with the start gate
// no attempt runs before its PID is recorded, so Processes.KillGroup alone
// finds whatever a crashed daemon left behind.
func (Processes) KillJob(jobID string) (bool, error) {
	return false, nil
}
