package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// example returns the code block that follows `<!-- example: NAME -->` in
// docs/EXAMPLES.md.
func example(t *testing.T, name string) string {
	t.Helper()
	doc, err := os.ReadFile("../docs/EXAMPLES.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "<!-- example: "+name+" -->\n```")
	if !ok {
		t.Fatalf("docs/EXAMPLES.md has no example %q", name)
	}
	_, rest, _ = strings.Cut(rest, "\n") // the fence's language
	block, _, ok := strings.Cut(rest, "\n```")
	if !ok {
		t.Fatalf("example %q has no closing fence", name)
	}
	return block
}

// examplesEnv starts a daemon whose jobs, like the recipes' shells, find
// stq and stand-ins for the tools the recipes call (cargo, go, ctags,
// ruff) on PATH. A stand-in prints its arguments; ruff fails on bad.py.
func examplesEnv(t *testing.T) (*testEnv, []string) {
	t.Helper()
	bin := t.TempDir()
	if err := os.Symlink(stqBin, filepath.Join(bin, "stq")); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"cargo": `echo cargo "$@"`,
		"go":    `echo go "$@"`,
		"ctags": `echo ctags "$@"`,
		"ruff":  `case "$*" in *bad.py*) echo "bad.py:1:1: E999"; exit 1;; esac; echo ruff ok`,
	} {
		if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	e := newEnv(t)
	e.startDaemon()
	env := append(os.Environ(), "STQ_HOME="+e.home, "GORACE=atexit_sleep_ms=0")
	return e, env
}

func TestExampleNeovimAutocmd(t *testing.T) {
	e, env := examplesEnv(t)
	lua := example(t, "neovim")
	call := regexp.MustCompile(`jobstart\(\{([^}]*)\}`).FindStringSubmatch(lua)
	if call == nil {
		t.Fatalf("no jobstart call in:\n%s", lua)
	}
	var argv []string
	for _, tok := range regexp.MustCompile(`"([^"]*)"|ev\.file`).FindAllStringSubmatch(call[1], -1) {
		if tok[0] == "ev.file" {
			argv = append(argv, "/src/project/src/main.rs")
			continue
		}
		argv = append(argv, tok[1])
	}
	if argv[0] != "stq" {
		t.Fatalf("argv %q", argv)
	}
	// Five quick saves: one check runs, the newest.
	for range 5 {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = env
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%q: %v\n%s", argv, err, out)
		}
	}
	waitFor(t, "the debounced check", 15*time.Second, func() bool {
		return len(e.list("--queue", "check", "--state", "DONE")) == 1
	})
	if n := len(e.list("--queue", "check", "--state", "SUPERSEDED")); n != 4 {
		t.Errorf("%d saves superseded, want 4", n)
	}
}

func TestExampleVSCodeTask(t *testing.T) {
	e, env := examplesEnv(t)
	var tasks struct {
		Tasks []struct {
			Command string   `json:"command"`
			Args    []string `json:"args"`
		} `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(example(t, "vscode")), &tasks); err != nil {
		t.Fatalf("the tasks.json example is not JSON: %v", err)
	}
	ws := t.TempDir()
	task := tasks.Tasks[0]
	args := make([]string, len(task.Args))
	for i, a := range task.Args {
		args[i] = strings.ReplaceAll(a, "${workspaceFolder}", ws)
	}
	cmd := exec.Command(task.Command, args...)
	cmd.Env, cmd.Dir = env, ws
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v", task.Command, args, err)
	}
	j := e.waitState(strings.TrimSpace(string(out)), "DONE")
	if j.Queue != "test" || j.Subject != ws {
		t.Errorf("job %+v", j)
	}
}

func TestExampleGitPostCommitHook(t *testing.T) {
	e, env := examplesEnv(t)
	repo := t.TempDir()
	hook := filepath.Join(repo, ".git", "hooks", "post-commit")
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir, cmd.Env = repo, append(env, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	git("init", "-q", ".")
	if err := os.WriteFile(hook, []byte(example(t, "git-hook")+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(repo, "a.c"), []byte("int a;\n"), 0o644)
	git("add", ".")
	git("commit", "-q", "-m", "first")
	var jobs []job
	waitFor(t, "the hook's job", 15*time.Second, func() bool {
		jobs = e.list("--queue", "index", "--state", "DONE")
		return len(jobs) == 1
	})
	real, _ := filepath.EvalSymlinks(repo)
	if j := e.show(jobs[0].ID); j.Subject != real || !strings.Contains(string(j.Payload), `"commit"`) {
		t.Errorf("hook job %+v", j)
	}
}

func TestExampleWatchexecLine(t *testing.T) {
	e, env := examplesEnv(t)
	line := example(t, "watchexec")
	_, stqLine, ok := strings.Cut(line, " -- ")
	if !ok || !strings.HasPrefix(stqLine, "stq enqueue ") {
		t.Fatalf("no stq command after watchexec's --: %q", line)
	}
	// watchexec runs the command line through a shell on every change.
	for range 3 {
		cmd := exec.Command("sh", "-c", stqLine)
		cmd.Env, cmd.Dir = env, t.TempDir()
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", stqLine, err, out)
		}
	}
	waitFor(t, "one build", 15*time.Second, func() bool { return len(e.list("--queue", "build", "--state", "DONE")) == 1 })
}

func TestExampleAgentLoop(t *testing.T) {
	e, env := examplesEnv(t)
	repo := t.TempDir()
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir, cmd.Env = repo, append(env, "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@t", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@t")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("git", "init", "-q", ".")
	for _, f := range []string{"good.py", "bad.py", "notes.txt"} {
		os.WriteFile(filepath.Join(repo, f), []byte("x = 1\n"), 0o644)
	}
	run("git", "add", ".")
	run("git", "commit", "-q", "-m", "base")
	for _, f := range []string{"good.py", "bad.py", "notes.txt"} {
		os.WriteFile(filepath.Join(repo, f), []byte("x = 2\n"), 0o644)
	}
	out := run("sh", "-e", "-c", example(t, "agent-loop"))
	if !strings.Contains(out, "bad.py") || strings.Contains(out, "good.py") {
		t.Errorf("the loop's output should list the failed bad.py only:\n%s", out)
	}
	if n := len(e.list("--queue", "lint")); n != 2 {
		t.Errorf("%d lint jobs, want 2 (the .py files)", n)
	}
}
