package bench

import (
	"fmt"
	"math"
	"slices"
	"strings"
)

// Row is one measured quantity: the median of its repetitions and the
// spread around it. The JSON form is what `stq bench --json` prints.
type Row struct {
	Name   string    `json:"name"`
	Unit   string    `json:"unit"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	Values []float64 `json:"values"`
	Note   string    `json:"note,omitempty"`
}

func newRow(name, unit, note string, vals []float64) Row {
	s := slices.Clone(vals)
	slices.Sort(s)
	r := Row{Name: name, Unit: unit, Note: note, Values: vals}
	if len(s) > 0 {
		r.Median, r.Min, r.Max = percentile(s, 0.5), s[0], s[len(s)-1]
	}
	return r
}

// Table lays rows out as the columns of the report `stq bench` prints.
func Table(rows []Row) (headers []string, cells [][]string) {
	cells = make([][]string, 0, len(rows))
	for _, r := range rows {
		cells = append(cells, []string{r.Name, fmt.Sprintf("%.1f", r.Median), fmt.Sprintf("%.1f-%.1f", r.Min, r.Max), r.Unit, r.Note})
	}
	return []string{"WHAT", "MEDIAN", "SPREAD", "UNIT", "NOTE"}, cells
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func p50(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return percentile(s, 0.5)
}

// ratio is 100 * num[i] / den[i] for each repetition i: the percentage
// rows that compare two measurements of the same repetition.
func ratio(num, den []float64) []float64 {
	out := make([]float64, len(num))
	for i := range num {
		out[i] = 100 * num[i] / den[i]
	}
	return out
}

// thousands formats n with comma separators: 1000000 -> "1,000,000".
func thousands(n int) string {
	s := fmt.Sprint(n)
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	return b.String()
}
