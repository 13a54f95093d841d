package exec

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shirou/gopsutil/v4/cpu"
)

func writeSupply(t *testing.T, dir, name string, files map[string]string) {
	t.Helper()
	d := filepath.Join(dir, name)
	if err := os.MkdirAll(d, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range files {
		if err := os.WriteFile(filepath.Join(d, k), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLinuxPower(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		supplies map[string]map[string]string
		onAC     bool
		known    bool
	}{
		{"a machine without a battery is on AC", map[string]map[string]string{}, true, true},
		{"a plugged-in laptop is on AC", map[string]map[string]string{
			"BAT0": {"type": "Battery", "status": "Charging"},
			"AC":   {"type": "Mains", "online": "1"},
		}, true, true},
		{"an unplugged laptop is on battery", map[string]map[string]string{
			"BAT0": {"type": "Battery", "status": "Discharging"},
			"AC":   {"type": "Mains", "online": "0"},
		}, false, true},
		{"a battery without a mains entry is judged by its status", map[string]map[string]string{
			"BAT1": {"type": "Battery", "status": "Discharging"},
		}, false, true},
		{"a full battery without a mains entry counts as on AC", map[string]map[string]string{
			"BAT1": {"type": "Battery", "status": "Full"},
		}, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			for n, f := range tt.supplies {
				writeSupply(t, dir, n, f)
			}
			got := linuxPower(dir)
			if got.OnAC != tt.onAC || got.Known != tt.known {
				t.Fatalf("linuxPower = %+v, want on_ac=%v known=%v", got, tt.onAC, tt.known)
			}
		})
	}
	if got := linuxPower(filepath.Join(t.TempDir(), "missing")); !got.OnAC || got.Known {
		t.Fatalf("unreadable power state = %+v, want on AC and unknown", got)
	}
}

func TestDarwinPower(t *testing.T) {
	t.Parallel()
	for out, want := range map[string]bool{
		"Now drawing from 'AC Power'\n -InternalBattery-0 (id=1)\t100%; charged;":         true,
		"Now drawing from 'Battery Power'\n -InternalBattery-0 (id=1)\t80%; discharging;": false,
	} {
		if got := darwinPower(out); got.OnAC != want || !got.Known {
			t.Errorf("darwinPower(%q) = %+v", out, got)
		}
	}
	if got := darwinPower("garbage"); !got.OnAC || got.Known {
		t.Errorf("unknown pmset output = %+v", got)
	}
}

func TestBusyPercent(t *testing.T) {
	t.Parallel()
	a := cpu.TimesStat{User: 10, System: 10, Idle: 80}
	b := cpu.TimesStat{User: 40, System: 20, Idle: 140}
	// 100 units passed, 60 idle: 40% busy.
	if got := busyPercent(a, b); got < 39.99 || got > 40.01 {
		t.Fatalf("busyPercent = %v, want 40", got)
	}
	if got := busyPercent(a, a); got != 0 {
		t.Fatalf("no time passed: %v", got)
	}
}

func TestProbeIsBusyUntilMeasuredThenReadsItsCache(t *testing.T) {
	t.Parallel()
	p := NewSystemProbe(30)
	if p.Idle() {
		t.Fatal("idle before any measurement")
	}
	p.setBusy(10)
	if !p.Idle() {
		t.Fatal("10% busy is not idle under a 30% threshold")
	}
	p.setBusy(50)
	if p.Idle() {
		t.Fatal("50% busy counted as idle")
	}
	p.Interval = 20 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if v, ok := p.CPUBusy(); ok && v != 50 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sampler never measured")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
}
