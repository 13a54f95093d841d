package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestFlagsGoAnywhere: editor hooks and agents write flags last. Flags
// after arguments are flags, global flags work after the subcommand, and
// `--` still ends flag parsing.
func TestFlagsGoAnywhere(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--subject", "x", "--", "sh", "-c", `echo "$@"`, "sh", "-j4", "--json")
	j := e.waitState(id, "DONE")
	if strings.Join(j.Command, " ") != `sh -c echo "$@" sh -j4 --json` {
		t.Fatalf("the arguments after -- were read as flags: %q", j.Command)
	}
	var shown job
	if err := json.Unmarshal([]byte(e.ok("show", id, "--json")), &shown); err != nil || shown.ID != id {
		t.Fatalf("show ID --json: %v", err)
	}
	if out := e.ok("wait", id, "--timeout", "5s"); !strings.HasPrefix(out, id+"\tDONE") {
		t.Fatalf("wait ID --timeout: %q", out)
	}
	other := e.ok("enqueue", "--in", "1h", "--", "true")
	var cancelled []job
	if err := json.Unmarshal([]byte(e.ok("cancel", other, "--json")), &cancelled); err != nil || len(cancelled) != 1 {
		t.Fatalf("cancel ID --json: %v %+v", err, cancelled)
	}
	// The global --home after the subcommand, with STQ_HOME pointing
	// elsewhere: the flag wins.
	c := e.cmd("stats", "--json", "--home", e.home)
	c.Env = append(c.Env, "STQ_HOME=/nonexistent/stq")
	if out, err := c.Output(); err != nil || !strings.Contains(string(out), e.home) {
		t.Fatalf("stats --home after the subcommand: %v %s", err, out)
	}
}

// TestUsageErrorsNameWhatWasTyped: a bad flag is named as typed, the hint
// names the typed command's help, an unknown command gets a suggestion,
// and help shows one default per flag.
func TestUsageErrorsNameWhatWasTyped(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, tc := range []struct {
		args       []string
		stderr     string
		hint       string
		stdoutWant string
	}{
		{[]string{"enqueue", "--priority", "high", "--", "true"}, `stq: invalid value "high" for --priority: want a whole number`, "hint: see 'stq enqueue --help'", ""},
		{[]string{"enqueue", "-p", "high", "--", "true"}, `stq: invalid value "high" for -p: want a whole number`, "hint: see 'stq enqueue --help'", ""},
		{[]string{"list", "--colour"}, "stq: unknown flag --colour", "hint: see 'stq list --help'", ""},
		{[]string{"list", "--limit"}, "stq: --limit needs a value", "hint: see 'stq list --help'", ""},
		{[]string{"enqeue"}, `stq: unknown command "enqeue"`, "hint: did you mean 'stq enqueue'? (see 'stq --help')", ""},
		{[]string{"status"}, `stq: unknown command "status"`, "hint: did you mean 'stq stats'? (see 'stq --help')", ""},
	} {
		r := e.run(tc.args...)
		lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
		if r.code != 2 || len(lines) != 2 || lines[0] != tc.stderr || lines[1] != tc.hint || r.stdout != "" {
			t.Errorf("stq %v: exit %d\nstderr %q\nwant %q and %q", tc.args, r.code, r.stderr, tc.stderr, tc.hint)
		}
	}
	for _, cmd := range []string{"enqueue", "daemon", "list", "wait", "tail"} {
		help := e.ok(cmd, "--help")
		for _, line := range strings.Split(help, "\n") {
			if strings.Count(line, "(default") > 1 {
				t.Errorf("stq %s --help shows two defaults: %q", cmd, line)
			}
			if strings.Contains(line, "(default: 0)") {
				t.Errorf("stq %s --help shows a meaningless zero default: %q", cmd, line)
			}
		}
	}
}
