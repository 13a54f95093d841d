package commands

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		text   string
		errHas string
		check  func(t *testing.T, c Config)
	}{
		{"an empty file takes every default", "", "", func(t *testing.T, c Config) {
			if c.Durability != "full" || c.Workers != 0 || len(c.Types) != 0 {
				t.Fatalf("defaults: %+v", c)
			}
		}},
		{"daemon settings are read", "[daemon]\nworkers = 3\ngrace = \"2s\"\nkill_grace = \"1s\"\ndefault_deadline = \"0\"\nlog_limit = 4096\ndurability = \"normal\"\n", "", func(t *testing.T, c Config) {
			if c.Workers != 3 || c.Grace != 2*time.Second || c.KillGrace != time.Second || c.DefaultDeadline >= 0 || c.LogLimit != 4096 || c.Durability != "normal" {
				t.Fatalf("daemon: %+v", c)
			}
		}},
		{"a handler with a command and defaults", "[handlers.INDEX_FILE]\ncommand = [\"idx\", \"--stdin\"]\ndeadline = \"30s\"\nmax_attempts = 5\nbackoff = \"2s\"\n", "", func(t *testing.T, c Config) {
			h := c.Types["INDEX_FILE"]
			if strings.Join(h.Command, " ") != "idx --stdin" || *h.Deadline != 30*time.Second || *h.MaxAttempts != 5 || *h.Backoff != 2*time.Second {
				t.Fatalf("handler: %+v", h)
			}
		}},
		{"an in-process handler needs no command", "[handlers.ping]\nmode = \"inprocess\"\nhandler = \"noop\"\n", "", func(t *testing.T, c Config) {
			if c.Types["ping"].Handler != "noop" {
				t.Fatalf("handler: %+v", c.Types["ping"])
			}
		}},
		{"an unknown key is an error", "[daemon]\nworkerz = 3\n", "unknown config key daemon.workerz", nil},
		{"a handler without a command is an error", "[handlers.x]\ndeadline = \"1s\"\n", "needs a command", nil},
		{"a bad duration names its key", "[handlers.x]\ncommand = [\"a\"]\nbackoff = \"fast\"\n", "handlers.x.backoff", nil},
		{"a bad durability is an error", "[daemon]\ndurability = \"yolo\"\n", "daemon.durability", nil},
		{"negative numbers are errors", "[daemon]\nworkers = -1\n", "must not be negative", nil},
		{"out-of-range attempts are errors", "[handlers.x]\ncommand = [\"a\"]\nmax_attempts = 0\n", "between 1 and 1000", nil},
		{"broken TOML is an error", "[daemon\n", "parse config", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.text)
			if tt.errHas != "" {
				if err == nil || !strings.Contains(err.Error(), tt.errHas) {
					t.Fatalf("parseConfig = %v, want error containing %q", err, tt.errHas)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestParseTime(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("X", 3600)
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, loc)
	tests := []struct {
		in   string
		want time.Time
		ok   bool
	}{
		{"2026-11-25T18:00:00Z", time.Date(2026, 11, 25, 18, 0, 0, 0, time.UTC), true},
		{"2026-11-25 18:30", time.Date(2026, 11, 25, 18, 30, 0, 0, loc), true},
		{"18:30", time.Date(2026, 11, 25, 18, 30, 0, 0, loc), true},
		{"18:30:15", time.Date(2026, 11, 25, 18, 30, 15, 0, loc), true},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, loc), true},
		{"tomorrow", time.Time{}, false},
		{"25:00", time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseTime(tt.in, now)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestResolvePaths(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	t.Setenv("XDG_STATE_HOME", "/state")
	p, err := resolvePaths("/h")
	if err != nil || p.DB != "/h/stq.db" || p.Socket != "/h/stq.sock" || p.Token != "/h/token" || p.Config != "/h/config.toml" || p.Lock != "/h/stq.lock" {
		t.Fatalf("explicit home: %+v %v", p, err)
	}
	p, err = resolvePaths("")
	if err != nil || p.Home != "/state/stq" || p.Socket != "/run/user/1000/stq/stq.sock" {
		t.Fatalf("default paths: %+v %v", p, err)
	}
	if _, err := resolvePaths("/" + strings.Repeat("x", 120)); exitCode(err) != ExitUsage {
		t.Fatalf("over-long socket path: %v", err)
	}
}

// TestUsageErrorsExitTwo runs the real command line in-process.
func TestUsageErrorsExitTwo(t *testing.T) {
	t.Setenv("STQ_HOME", t.TempDir())
	tests := [][]string{
		{"stq", "frobnicate"},
		{"stq", "--bogus"},
		{"stq", "enqueue", "--bogus"},
		{"stq", "list", "--limit", "0"},
		{"stq", "enqueue", "--deadline", "soon", "--", "true"},
		{"stq", "wait"},
		{"stq", "daemon", "--workers", "0"},
		{"stq", "bench", "--only", "enqueue,bogus"},
	}
	for _, args := range tests {
		var out, errb bytes.Buffer
		code := Main(context.Background(), args, "test", strings.NewReader(""), &out, &errb)
		if code != ExitUsage || !strings.HasPrefix(errb.String(), "stq: ") || out.Len() != 0 {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args[1:], code, out.String(), errb.String())
		}
	}
}

func TestNoDaemonExitsThree(t *testing.T) {
	t.Setenv("STQ_HOME", t.TempDir())
	var out, errb bytes.Buffer
	code := Main(context.Background(), []string{"stq", "stats"}, "test", strings.NewReader(""), &out, &errb)
	if code != ExitNoDaemon || !strings.Contains(errb.String(), "start one with `stq daemon`") {
		t.Fatalf("exit %d, %q", code, errb.String())
	}
}

func TestTablesArePlainOnAPipeAndColourlessUnderNoColor(t *testing.T) {
	t.Parallel()
	rows := [][]string{{"j1", "DONE"}, {"j2", "FAILED"}}
	var pipe bytes.Buffer
	newStyles(&pipe, false, false).writeTable(&pipe, []string{"ID", "STATE"}, rows, 1)
	if got := pipe.String(); got != "ID\tSTATE\nj1\tDONE\nj2\tFAILED\n" {
		t.Fatalf("plain table:\n%q", got)
	}
	var term bytes.Buffer
	newStyles(&term, true, true).writeTable(&term, []string{"ID", "STATE"}, rows, 1)
	got := term.String()
	if !strings.Contains(got, "╭") || !strings.Contains(got, "FAILED") || strings.Contains(got, "\x1b[") {
		t.Fatalf("terminal table under NO_COLOR should be drawn, without escape codes:\n%q", got)
	}
}
