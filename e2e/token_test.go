package e2e

// Fault class 6 of docs/RELIABILITY.md: the token never leaks.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func authLine(params string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":` + params + `}`
}

func tokenParams(tok string) string {
	b, _ := json.Marshal(map[string]string{"token": tok})
	return string(b)
}

func TestReliabilityTokenNeverLeaks(t *testing.T) {
	t.Parallel()
	needProc(t)
	e := newEnv(t)
	d := e.startDaemon() // with --log-level debug
	tok := e.token()
	if len(tok) != 64 {
		t.Fatalf("token is %d characters", len(tok))
	}
	// Secrets that must not show up: the token and any long piece of it
	// (a one-character-off guess shares 63 characters with it).
	leaks := func(b []byte) string {
		for _, s := range []string{tok, tok[:32], tok[32:]} {
			if bytes.Contains(b, []byte(s)) {
				return s
			}
		}
		return ""
	}

	// Wrong tokens. Every variant gets the same bytes back and a closed
	// connection; the reply says nothing about how close the guess was.
	off := []byte(tok)
	off[63] = "01"[boolInt(off[63] == '0')]
	first := []byte(tok)
	first[0] = "01"[boolInt(first[0] == '0')]
	variants := map[string]string{
		"no token member":         authLine(`{}`),
		"no params":               `{"jsonrpc":"2.0","id":1,"method":"auth.v1"}`,
		"null token":              authLine(`{"token":null}`),
		"empty token":             authLine(tokenParams("")),
		"last character off":      authLine(tokenParams(string(off))),
		"first character off":     authLine(tokenParams(string(first))),
		"63 characters":           authLine(tokenParams(tok[:63])),
		"65 characters":           authLine(tokenParams(tok + "0")),
		"upper case":              authLine(tokenParams(strings.ToUpper(tok))),
		"with a trailing newline": authLine(tokenParams(tok + "\n")),
		"3 KiB (token + padding)": authLine(tokenParams(tok + strings.Repeat("a", 3<<10))),
		"random 64 hex":           authLine(tokenParams(strings.Repeat("0123456789abcdef", 4))),
		"a number":                authLine(`{"token":12345}`),
		"another method first":    `{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1","params":{}}`,
	}
	var want []byte
	names := make([]string, 0, len(variants))
	for name := range variants {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		got, closed, err := e.rawReply(variants[name])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if want == nil {
			want = got
			var rep rpcReply
			if err := json.Unmarshal(got, &rep); err != nil || rep.Error == nil || rep.Error.Code != -32000 || string(rep.ID) != "1" {
				t.Fatalf("%s: reply %s, want -32000 with id 1", name, got)
			}
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: reply %q differs from %q", name, got, want)
		}
		if !closed {
			t.Errorf("%s: connection left open after a failed auth", name)
		}
	}
	// Over the 4 KiB pre-auth line limit the documented answer is -32005
	// (id null), whatever the line holds: the same for a 10 KiB token that
	// starts with the real one as for 10 KiB of junk.
	var long []byte
	for _, name := range []string{"real token + 10 KiB", "10 KiB of junk"} {
		v := tok + strings.Repeat("a", 10<<10)
		if name == "10 KiB of junk" {
			v = strings.Repeat("b", len(v))
		}
		got, closed, err := e.rawReply(authLine(tokenParams(v)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var rep rpcReply
		if err := json.Unmarshal(got, &rep); err != nil || rep.Error == nil || rep.Error.Code != -32005 || string(rep.ID) != "null" || !closed {
			t.Fatalf("%s: reply %s (closed %v), want -32005 with id null and a closed connection", name, got, closed)
		}
		if long != nil && !bytes.Equal(got, long) {
			t.Errorf("%s: reply %q differs from %q", name, got, long)
		}
		long = got
	}

	// Brute force: 50 quick wrong-token connections, 10 at a time.
	const guesses = 50
	var refused atomic.Int64
	var bad errLog
	var wg sync.WaitGroup
	startBF := time.Now()
	for g := 0; g < 10; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < guesses/10; i++ {
				guess := fmt.Sprintf("%016x%016x%016x%016x", rand.Uint64(), rand.Uint64(), rand.Uint64(), rand.Uint64())
				got, closed, err := e.rawReply(authLine(tokenParams(guess)))
				switch {
				case err != nil:
					bad.add("guess %d/%d: %v", g, i, err)
				case !bytes.Equal(got, want) || !closed:
					bad.add("guess %d/%d: reply %q, closed %v", g, i, got, closed)
				default:
					refused.Add(1)
				}
			}
		}(g)
	}
	wg.Wait()
	bfTook := time.Since(startBF)
	if refused.Load() != guesses || bad.n != 0 {
		t.Errorf("%d of %d guesses refused; problems: %q", refused.Load(), guesses, bad.samples)
	}
	// The right token still works, on the socket and through the CLI.
	e.dialRaw().auth(tok)
	e.ok("stats")

	// The job environment: a job that prints its whole environment.
	envJob := e.ok("enqueue", "--env", "EXTRA=1", "--", "env")
	e.ok("wait", envJob)
	envLog := e.ok("tail", envJob)
	if !strings.Contains(envLog, "STQ_JOB_ID="+envJob) || !strings.Contains(envLog, "EXTRA=1") {
		t.Fatalf("the env job did not print its environment:\n%s", envLog)
	}
	if s := leaks([]byte(envLog)); s != "" {
		t.Errorf("a job's environment holds the token (%q)", s)
	}

	// Every process's command line and environment, while a job runs and
	// CLI clients are connected to it (tail -f, wait).
	dir := t.TempDir()
	sleeper := e.ok("enqueue", "--", "sh", "-c", "echo $$ > "+dir+"/pid; sleep 300")
	readPID(t, dir+"/pid")
	var clients []*exec.Cmd
	for _, args := range [][]string{{"tail", "-f", "--job", sleeper}, {"wait", sleeper}} {
		c := e.cmd(args...)
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	defer func() {
		for _, c := range clients {
			_ = c.Process.Kill()
			_ = c.Wait()
		}
	}()
	waitFor(t, "the CLI clients to be running", 10*time.Second, func() bool {
		for _, c := range clients {
			if !processAlive(c.Process.Pid) {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // let them connect and authenticate
	scanned := 0
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		for _, f := range []string{"cmdline", "environ"} {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", pid, f))
			if err != nil {
				continue
			}
			if f == "cmdline" {
				scanned++
			}
			if s := leaks(b); s != "" {
				cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
				t.Errorf("process %d (%q) has the token in its %s", pid, bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}), f)
			}
		}
	}
	for _, c := range clients {
		if !processAlive(c.Process.Pid) {
			t.Errorf("CLI client %v ended early", c.Args)
		}
	}
	e.ok("cancel", sleeper)

	// The daemon's own log, at debug level, after all of the above; and the
	// database files, which hold every job's environment and output.
	if s := leaks([]byte(d.output())); s != "" {
		t.Errorf("the daemon's log holds the token (%q)", s)
	}
	authFailures := strings.Count(d.output(), "authentication failed")
	dbFiles := 0
	for _, f := range []string{"stq.db", "stq.db-wal"} {
		b, err := os.ReadFile(e.path(f))
		if err != nil {
			continue
		}
		dbFiles++
		if s := leaks(b); s != "" {
			t.Errorf("%s holds the token (%q)", f, s)
		}
	}
	report(t, "%d wrong-token variants got one identical reply %s; over 4 KiB a documented -32005 (same bytes with or without the real token inside); %d/%d brute-force guesses refused in %v, the right token still served; token absent from %d processes' cmdline and environ, the job environment dump, %d database files, and %d KiB of debug log (%d auth failures logged)",
		len(variants), bytes.TrimSpace(want), refused.Load(), guesses, bfTook.Round(time.Millisecond), scanned, dbFiles, len(d.output())>>10, authFailures)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
