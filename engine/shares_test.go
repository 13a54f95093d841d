package engine

import "testing"

func TestSharesSplitFreeWorkersByWeight(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		queues map[string]QueueConfig
		free   int
		ok     bool
		quota  map[string]int
		def    int
	}{
		{"no weights: one plain claim", map[string]QueueConfig{"a": {Concurrency: 2}}, 8, false, nil, 0},
		{"one free worker: nothing to share", map[string]QueueConfig{"a": {Weight: 3}}, 1, false, nil, 0},
		// a weighs 2, b 1, the other queues 1 together: 8 free -> 4, 2, 2.
		{"weights split the free workers", map[string]QueueConfig{"a": {Weight: 2}, "b": {Weight: 1}}, 8, true, map[string]int{"a": 4, "b": 2}, 2},
		// A configured queue without a weight counts as 1.
		{"an unweighted queue weighs one", map[string]QueueConfig{"a": {Weight: 4}, "b": {Concurrency: 1}}, 6, true, map[string]int{"a": 4, "b": 1}, 1},
		{"every queue gets at least one", map[string]QueueConfig{"a": {Weight: 100}}, 2, true, map[string]int{"a": 1}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := &Engine{}
			e.live.Store(&settings{Config: Config{Queues: tt.queues}})
			quota, def, ok := e.shares(tt.free)
			if ok != tt.ok || def != tt.def || len(quota) != len(tt.quota) {
				t.Fatalf("shares(%d) = %v, %d, %v; want %v, %d, %v", tt.free, quota, def, ok, tt.quota, tt.def, tt.ok)
			}
			for q, n := range tt.quota {
				if quota[q] != n {
					t.Fatalf("quota[%s] = %d, want %d (all: %v)", q, quota[q], n, quota)
				}
			}
		})
	}
}
