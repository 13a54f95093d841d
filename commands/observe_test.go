package commands

import (
	"slices"
	"strings"
	"testing"

	"stq/engine"
)

// noting is an Observer that notes what it hears, under its name.
type noting struct {
	name  string
	heard *[]string
}

func (n noting) Enqueued(engine.EnqueueResult) { *n.heard = append(*n.heard, n.name+" enqueued") }
func (n noting) AttemptStarting(*engine.Job) ([]string, func(engine.AttemptEnded)) {
	*n.heard = append(*n.heard, n.name+" starting")
	if n.name == "quiet" {
		return nil, nil // an observer that wants no end, and adds no env
	}
	return []string{n.name + "=1"}, func(engine.AttemptEnded) { *n.heard = append(*n.heard, n.name+" ended") }
}
func (n noting) Expired([]*engine.Job) { *n.heard = append(*n.heard, n.name+" expired") }
func (n noting) Recovered(*engine.Job) { *n.heard = append(*n.heard, n.name+" recovered") }
func (n noting) Pulse()                { *n.heard = append(*n.heard, n.name+" pulse") }

func TestObserversTellEachInOrder(t *testing.T) {
	t.Parallel()
	var heard []string
	obs := observers{noting{"a", &heard}, noting{"quiet", &heard}, noting{"b", &heard}}
	obs.Enqueued(engine.EnqueueResult{})
	env, done := obs.AttemptStarting(&engine.Job{})
	done(engine.AttemptEnded{})
	obs.Expired(nil)
	obs.Recovered(nil)
	obs.Pulse()
	if want := []string{"a=1", "b=1"}; !slices.Equal(env, want) {
		t.Errorf("env %q, want %q", env, want)
	}
	want := []string{"a enqueued", "quiet enqueued", "b enqueued", "a starting", "quiet starting", "b starting",
		"a ended", "b ended", "a expired", "quiet expired", "b expired", "a recovered", "quiet recovered", "b recovered",
		"a pulse", "quiet pulse", "b pulse"}
	if !slices.Equal(heard, want) {
		t.Errorf("heard %q\nwant  %q", heard, want)
	}
}

func TestNothingConfiguredObservesNothing(t *testing.T) {
	t.Parallel()
	o := &observability{}
	if o.observer() != nil || o.serverObserver() != nil || o.pulse() != 0 {
		t.Fatal("an observability with nothing on still hands out observers")
	}
}

func TestMetricsListenConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		text string
		want string // MetricsListen, or the error's start
		err  bool
	}{
		{"", "", false},
		{"[metrics]\nlisten = \"127.0.0.1:9464\"\n", "127.0.0.1:9464", false},
		{"[metrics]\nlisten = \"/run/stq/metrics.sock\"\n", "/run/stq/metrics.sock", false},
		{"[metrics]\nlisten = \"0.0.0.0:9464\"\n", "metrics.listen: ", true},
		{"[metrics]\nListen = \"127.0.0.1:9464\"\n", "unknown config key", true},
		{"[metrics]\nport = 9464\n", "unknown config key", true},
	}
	for _, tt := range tests {
		cfg, err := parseConfig(tt.text)
		switch {
		case tt.err && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
			t.Errorf("%q: err %v, want %q...", tt.text, err, tt.want)
		case !tt.err && (err != nil || cfg.MetricsListen != tt.want):
			t.Errorf("%q: %q, %v; want %q", tt.text, cfg.MetricsListen, err, tt.want)
		}
	}
}
