package commands

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestBenchFlagErrorsKeepTheirWords: the checks moved into package bench,
// the lines and exit codes people see did not change.
func TestBenchFlagErrorsKeepTheirWords(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--jobs", "0"}, "stq: --jobs, --reps and --samples must be at least 1\n"},
		{[]string{"--only", "baseline,bogus"}, "stq: --only: unknown row group \"bogus\" (have enqueue, baseline, bulk, noop, subprocess, storm, rss, latency, process, flat, cluster)\n"},
		{[]string{"--only", "cluster"}, "stq: --only cluster needs --store URL: several daemons share only a PostgreSQL store\n"},
		{[]string{"--store", "mysql://db/stq"}, "stq: --store must be a postgres:// or postgresql:// URL\n"},
		// The baseline row needs no daemon, so this reaches the bench.
		{[]string{"--only", "baseline", "--durability", "fast"}, "stq: --durability must be \"full\" or \"normal\"\n"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), append([]string{"stq", "bench"}, tt.args...), "test", strings.NewReader(""), &out, &errb)
			if code != ExitUsage || errb.String() != tt.want || out.Len() != 0 {
				t.Fatalf("exit %d, stdout %q, stderr %q; want exit 2 and %q", code, out.String(), errb.String(), tt.want)
			}
		})
	}
}
