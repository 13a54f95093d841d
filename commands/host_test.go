package commands

import (
	"os"
	"strings"
	"testing"
)

func TestDaemonHost(t *testing.T) {
	hostname, _ := os.Hostname()
	for _, tc := range []struct{ env, want, err string }{
		{"", hostname, ""},
		{"  ", hostname, ""},
		{"builder-7", "builder-7", ""},
		{"a/b", "", `STQ_HOST: "a/b" must not contain "/"`},
	} {
		got, err := daemonHost(func(k string) string {
			if k == hostEnv {
				return tc.env
			}
			return ""
		})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("STQ_HOST=%q: error %v, want %q", tc.env, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("STQ_HOST=%q: %q %v, want %q", tc.env, got, err, tc.want)
		}
	}
}
