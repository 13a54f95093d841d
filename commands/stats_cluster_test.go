package commands

import (
	"slices"
	"testing"
	"time"

	"stq/engine"
)

func TestDaemonRowsMarkTheAnsweringDaemonAndNeverShowANegativeAge(t *testing.T) {
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	st := engine.Stats{Owner: "b/2", Daemons: []engine.DaemonInfo{
		{Owner: "a/1", Host: "a", PID: 10, Version: "1.0", Started: now.Add(-90 * time.Second), Heartbeat: now.Add(-1250 * time.Millisecond)},
		// The database's clock runs ahead of this host's.
		{Owner: "b/2", Host: "b", PID: 20, Version: "1.1", Started: now.Add(-time.Hour), Heartbeat: now.Add(2 * time.Second)},
	}}
	got := daemonRows(st, now)
	want := [][]string{
		{"a/1", "a", "10", "1.0", "1m30s", "1.3s ago"},
		{"b/2 (this daemon)", "b", "20", "1.1", "1h0m0s", "0s ago"},
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("rows = %q, want %q", got, want)
	}
}
