package exec

import (
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		in    string
		limit int
		want  []string
	}{
		{name: "lines are split at newlines", in: "a\nbc\n", limit: 16, want: []string{"a", "bc"}},
		{name: "a final line without a newline is kept", in: "a\nb", limit: 16, want: []string{"a", "b"}},
		{name: "no input gives no lines", in: "", limit: 16},
		{name: "a lone newline is one empty line", in: "\n", limit: 16, want: []string{""}},
		{name: "a line of exactly the limit stays whole", in: "12345678\n9", limit: 8, want: []string{"12345678", "9"}},
		{name: "a longer line is split at the limit", in: "1234567890123456789\n", limit: 8, want: []string{"12345678", "90123456", "789"}},
		{name: "two-byte runes are not cut", in: "ééééé\n", limit: 9, want: []string{"éééé", "é"}},
		{name: "four-byte runes are not cut", in: "a😀😀x", limit: 8, want: []string{"a😀", "😀x"}},
		{name: "invalid bytes are replaced", in: "a\xffb\n\xc3", limit: 16, want: []string{"a\uFFFDb", "\uFFFD"}},
		{name: "a limit below a rune's room is raised", in: "ééé", limit: 1, want: []string{"ééé"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, r := range []struct {
				how string
				r   io.Reader
			}{
				{"in one read", strings.NewReader(tt.in)},
				{"a byte at a time", iotest.OneByteReader(strings.NewReader(tt.in))},
			} {
				var got []string
				readLines(r.r, tt.limit, func(s string) { got = append(got, s) })
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s: got %q, want %q", r.how, got, tt.want)
				}
			}
		})
	}
}
