package engine

import (
	"slices"
	"strings"
	"testing"
)

// The variables a captured environment drops are exactly the ones every
// attempt gets, and they come after the job's own env so that they win.
func TestJobEnvSetsTheJobEnvNamesLast(t *testing.T) {
	t.Parallel()
	env := jobEnv(&Job{ID: "j1", Queue: "q", Type: "t", Env: map[string]string{"ZZ": "1", "AA": "2"}})
	var names []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		names = append(names, name)
	}
	if want := append([]string{"AA", "ZZ"}, jobEnvNames...); !slices.Equal(names, want) {
		t.Fatalf("jobEnv names %v, want %v", names, want)
	}
}
