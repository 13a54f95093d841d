package exec

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"testing"
)

// A job that brought its caller's environment finds its programs in the
// caller's PATH, with and without the start gate, and sees the caller's
// variables instead of the daemon's.
func TestSubprocessUsesTheJobsPATHAndEnvironment(t *testing.T) {
	t.Parallel()
	tools := t.TempDir()
	tool := filepath.Join(tools, "stq-test-tool")
	if err := os.WriteFile(tool, []byte("#!/bin/sh\necho \"tool MY_VAR=$MY_VAR DAEMON_ONLY=${PATH_TEST_DAEMON_ONLY:-unset}\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, gate := range []bool{false, true} {
		run, out := newRun("stq-test-tool")
		run.BaseEnv = []string{"PATH=" + tools + ":/usr/bin:/bin", "MY_VAR=caller"}
		res := Subprocess{Gate: gate}.Execute(context.Background(), run)
		if res.Err != nil || res.ExitCode == nil || *res.ExitCode != 0 {
			t.Fatalf("gate %v: %+v", gate, res)
		}
		if got, want := out.stream("stdout"), []string{"tool MY_VAR=caller DAEMON_ONLY=unset"}; !slices.Equal(got, want) {
			t.Errorf("gate %v: stdout %q, want %q", gate, got, want)
		}
	}
	// Without the caller's PATH the program is not found: the daemon's
	// PATH does not have it.
	run, _ := newRun("stq-test-tool")
	res := Subprocess{}.Execute(context.Background(), run)
	if !errors.Is(res.Err, osexec.ErrNotFound) {
		t.Fatalf("without the tool dir in PATH: %+v, want not found", res)
	}
}

func TestLookPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(filepath.Join(bin, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, mode := range map[string]os.FileMode{"prog": 0o755, "plain": 0o644} {
		if err := os.WriteFile(filepath.Join(bin, name), nil, mode); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name, prog, path string
		want             string
		wantErr          error
	}{
		{"found in the PATH given", "prog", "/nonexistent:" + bin, filepath.Join(bin, "prog"), nil},
		{"the last PATH entry of the environment counts", "prog", bin, filepath.Join(bin, "prog"), nil},
		{"a file that is not executable is skipped", "plain", bin, "", osexec.ErrNotFound},
		{"a directory is skipped", "adir", bin, "", osexec.ErrNotFound},
		{"a name with a slash is taken as it is", "./x/y", "", "./x/y", nil},
		{"a match through a relative entry is refused", "prog", "bin", "", osexec.ErrDot},
		{"no PATH finds nothing", "prog", "", "", osexec.ErrNotFound},
	}
	for _, tc := range tests {
		env := []string{"PATH=/elsewhere", "PATH=" + tc.path}
		got, err := lookPath(tc.prog, env, dir)
		if got != tc.want || !errors.Is(err, tc.wantErr) {
			t.Errorf("%s: lookPath(%q, PATH=%q) = %q, %v; want %q, %v", tc.name, tc.prog, tc.path, got, err, tc.want, tc.wantErr)
		}
	}
}
