package exec

// StartTime is the package's StartTime, so that the engine can record
// its own daemon's process in its lease (engine.ProcessStarts).
func (Processes) StartTime(pid int) (int64, error) { return StartTime(pid) }

// Alive reports whether the process recorded as (pid, pidStart) still
// runs. A PID that exists but whose start time cannot be read counts as
// alive: a daemon is declared dead only when that is certain.
func (Processes) Alive(pid int, pidStart int64) bool {
	if pid <= 0 {
		return false
	}
	start, err := StartTime(pid)
	if err != nil {
		return exists(pid)
	}
	return sameStart(start, pidStart)
}
