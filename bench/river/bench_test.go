package main

import "testing"

// TestPercentileIsStqBenchs holds percentile to stq bench's nearest rank,
// ceil(p*n), where rounding p*n would pick another sample.
func TestPercentileIsStqBenchs(t *testing.T) {
	for _, tc := range []struct {
		n    int
		p    float64
		want float64 // the 1-based rank of the sample picked
	}{
		{60, 0.99, 60}, {300, 0.99, 297}, {300, 0.5, 150}, {3, 0.5, 2}, {4, 0.5, 2}, {10, 0.34, 4}, {1, 0.99, 1},
	} {
		sorted := make([]float64, tc.n)
		for i := range sorted {
			sorted[i] = float64(i + 1)
		}
		if got := percentile(sorted, tc.p); got != tc.want {
			t.Errorf("percentile of %d samples at %v: rank %v, want %v", tc.n, tc.p, got, tc.want)
		}
	}
}
