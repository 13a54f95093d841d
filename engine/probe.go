package engine

// Probe reports the machine conditions that conditional jobs wait for. The
// engine asks it before every claim, so implementations answer from a cache
// (a background sampler), never by measuring on the caller's time.
type Probe interface {
	// Idle reports whether system CPU use is below the idle threshold.
	Idle() bool
	// Power reports whether the machine runs on AC power. A machine without
	// a battery is on AC; where the power state cannot be read, Known is
	// false and the engine treats the machine as on AC (documented).
	Power() PowerState
}

// PowerState is what a Probe knows about the power supply.
type PowerState struct {
	OnAC  bool   `json:"on_ac"`
	Known bool   `json:"known"`
	Note  string `json:"note,omitempty"`
}

// alwaysReady is the Probe used when none is given: idle and on AC.
type alwaysReady struct{}

func (alwaysReady) Idle() bool        { return true }
func (alwaysReady) Power() PowerState { return PowerState{OnAC: true, Known: false, Note: "no probe"} }
