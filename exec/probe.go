package exec

import (
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"

	"stq/engine"
)

// Probe defaults.
const (
	DefaultIdleThreshold = 30.0 // percent of all CPUs
	DefaultProbeInterval = time.Second
)

// SystemProbe implements engine.Probe for the real machine. A sampler
// goroutine (Run) measures CPU use with gopsutil over each interval and reads
// the power state; Idle and Power only read the cached values, so a worker
// never waits for a measurement.
type SystemProbe struct {
	// IdleThreshold is the CPU use, in percent of all CPUs, below which the
	// machine counts as idle.
	IdleThreshold float64
	Interval      time.Duration
	// PowerSupplyDir is where Linux exposes power supplies; tests point it
	// at a fake tree.
	PowerSupplyDir string

	mu    sync.Mutex
	busy  float64
	known bool
	power engine.PowerState
}

// NewSystemProbe returns a probe with defaults; call Run to start sampling.
// Until the first sample the machine counts as busy, so idle-only jobs wait
// rather than start on a guess.
func NewSystemProbe(threshold float64) *SystemProbe {
	if threshold <= 0 {
		threshold = DefaultIdleThreshold
	}
	return &SystemProbe{IdleThreshold: threshold, Interval: DefaultProbeInterval, PowerSupplyDir: "/sys/class/power_supply"}
}

// Run samples until ctx ends. It owns no other goroutine.
func (p *SystemProbe) Run(ctx context.Context) {
	prev, _ := cpu.TimesWithContext(ctx, false)
	p.setPower(p.readPower(ctx))
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := cpu.TimesWithContext(ctx, false)
		if err == nil && len(cur) > 0 && len(prev) > 0 {
			p.setBusy(busyPercent(prev[0], cur[0]))
		}
		prev = cur
		p.setPower(p.readPower(ctx))
	}
}

// busyPercent is the share of CPU time between two samples not spent idle.
func busyPercent(a, b cpu.TimesStat) float64 {
	total := b.Total() - a.Total()
	idle := (b.Idle + b.Iowait) - (a.Idle + a.Iowait)
	if total <= 0 {
		return 0
	}
	return 100 * (total - idle) / total
}

func (p *SystemProbe) setBusy(v float64) {
	p.mu.Lock()
	p.busy, p.known = v, true
	p.mu.Unlock()
}

func (p *SystemProbe) setPower(s engine.PowerState) {
	p.mu.Lock()
	p.power = s
	p.mu.Unlock()
}

// Idle reports whether the last measured CPU use was under the threshold.
func (p *SystemProbe) Idle() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known && p.busy < p.IdleThreshold
}

// CPUBusy is the last measured CPU use in percent, and whether one exists.
func (p *SystemProbe) CPUBusy() (float64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.busy, p.known
}

// Power returns the last power reading.
func (p *SystemProbe) Power() engine.PowerState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.power
}

func (p *SystemProbe) readPower(ctx context.Context) engine.PowerState {
	switch runtime.GOOS {
	case "linux":
		return linuxPower(p.PowerSupplyDir)
	case "darwin":
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		out, err := osexec.CommandContext(ctx, "pmset", "-g", "batt").Output()
		if err != nil {
			return engine.PowerState{OnAC: true, Note: fmt.Sprintf("pmset failed: %v; treated as on AC", err)}
		}
		return darwinPower(string(out))
	}
	return engine.PowerState{OnAC: true, Note: "power state unknown on " + runtime.GOOS + "; treated as on AC"}
}

// linuxPower reads /sys/class/power_supply: on AC if any "Mains" supply is
// online, or if there is no battery at all.
func linuxPower(dir string) engine.PowerState {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return engine.PowerState{OnAC: true, Note: fmt.Sprintf("cannot read %s: treated as on AC", dir)}
	}
	batteries, mains, mainsOnline := 0, 0, false
	for _, e := range entries {
		typ := readTrim(filepath.Join(dir, e.Name(), "type"))
		switch typ {
		case "Battery":
			batteries++
		case "Mains", "USB":
			mains++
			if readTrim(filepath.Join(dir, e.Name(), "online")) == "1" {
				mainsOnline = true
			}
		}
	}
	switch {
	case batteries == 0:
		return engine.PowerState{OnAC: true, Known: true, Note: "no battery"}
	case mainsOnline:
		return engine.PowerState{OnAC: true, Known: true}
	case mains == 0:
		// A battery without a mains supply entry: judge by its status.
		for _, e := range entries {
			if readTrim(filepath.Join(dir, e.Name(), "type")) == "Battery" {
				st := readTrim(filepath.Join(dir, e.Name(), "status"))
				return engine.PowerState{OnAC: st != "Discharging", Known: st != "", Note: "battery status " + st}
			}
		}
	}
	return engine.PowerState{OnAC: false, Known: true}
}

func darwinPower(out string) engine.PowerState {
	switch {
	case strings.Contains(out, "'AC Power'"):
		return engine.PowerState{OnAC: true, Known: true}
	case strings.Contains(out, "'Battery Power'"):
		return engine.PowerState{OnAC: false, Known: true}
	}
	return engine.PowerState{OnAC: true, Note: "pmset output not understood; treated as on AC"}
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

var _ engine.Probe = (*SystemProbe)(nil)
