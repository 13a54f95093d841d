package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

// batchReply reads one reply line that must be a JSON-RPC batch answer (an
// array of responses).
func (r *rpc) recvBatch() []rpcReply {
	r.t.Helper()
	line, err := r.r.ReadBytes('\n')
	if err != nil {
		r.t.Fatalf("read batch answer: %v", err)
	}
	var reps []rpcReply
	if err := json.Unmarshal(line, &reps); err != nil {
		r.t.Fatalf("batch answer %q is not an array of responses: %v", line, err)
	}
	return reps
}

// nextIs sends a marker request and checks that the next reply is its
// answer: whatever was sent before it got no reply of its own.
func (r *rpc) nextIs(what string) {
	r.t.Helper()
	r.send(`{"jsonrpc":"2.0","id":"marker","method":"admin.stats.v1"}`)
	rep, ok := r.recv()
	if !ok || string(rep.ID) != `"marker"` {
		r.t.Fatalf("%s was answered: next reply has id %s, want the marker's", what, rep.ID)
	}
}

// TestJSONRPCSpecExamples runs the examples of the JSON-RPC 2.0
// specification (its section 7), with stq's methods in place of the
// spec's, against a real daemon after authentication.
func TestJSONRPCSpecExamples(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	id := e.ok("enqueue", "--type", "noop")
	c := e.dialRaw()
	c.auth(e.token())

	single := []struct {
		name, line string
		id         string // want this id; "" for "no reply at all"
		code       int    // want this error code; 0 for a result
	}{
		{"positional params (stq takes named ones)", `{"jsonrpc":"2.0","method":"dev.get.v1","params":["` + id + `"],"id":1}`, "1", -32602},
		{"named params", `{"jsonrpc":"2.0","method":"dev.get.v1","params":{"id":"` + id + `"},"id":3}`, "3", 0},
		{"named params in another order", `{"jsonrpc":"2.0","params":{"id":"` + id + `"},"method":"dev.get.v1","id":4}`, "4", 0},
		{"a notification", `{"jsonrpc":"2.0","method":"dev.enqueue.v1","params":{"type":"noop","subject":"notified"}}`, "", 0},
		{"a notification of a method that does not exist", `{"jsonrpc":"2.0","method":"foobar"}`, "", 0},
		{"a notification with bad params", `{"jsonrpc":"2.0","method":"dev.get.v1","params":{"nope":1}}`, "", 0},
		{"a method that does not exist", `{"jsonrpc":"2.0","method":"foobar","id":"1"}`, `"1"`, -32601},
		{"invalid JSON", `{"jsonrpc":"2.0","method":"foobar, "params":"bar", "baz]`, "null", -32700},
		{"an invalid request object", `{"jsonrpc":"2.0","method":1,"params":"bar"}`, "null", -32600},
		{"a batch that is invalid JSON", `[{"jsonrpc":"2.0","method":"admin.stats.v1","id":"1"},{"jsonrpc":"2.0","method"]`, "null", -32700},
		{"an empty batch", `[]`, "null", -32600},
		{"an explicit null id is answered with it", `{"jsonrpc":"2.0","method":"admin.stats.v1","id":null}`, "null", 0},
	}
	for _, tc := range single {
		c.send(tc.line)
		if tc.id == "" {
			c.nextIs(tc.name)
			continue
		}
		rep, ok := c.recv()
		if !ok {
			t.Fatalf("%s: connection closed", tc.name)
		}
		if string(rep.ID) != tc.id || (tc.code == 0) != (rep.Error == nil) || (rep.Error != nil && rep.Error.Code != tc.code) {
			t.Errorf("%s: got id %s error %+v result %.80s; want id %s code %d", tc.name, rep.ID, rep.Error, rep.Result, tc.id, tc.code)
		}
	}
	// The notification was executed though not answered. Requests on one
	// connection run concurrently (docs/API.md, Requests in flight), so the
	// replies above may come before it is stored: wait for its effect.
	waitFor(t, "the enqueue notification to store its one job", 30*time.Second, func() bool {
		return len(e.list("--subject", "notified")) == 1
	})
	if jobs := e.list("--subject", "notified"); len(jobs) != 1 {
		t.Errorf("the enqueue notification stored %d jobs, want 1", len(jobs))
	}

	batches := []struct {
		name, line string
		want       []struct {
			id   string
			code int
		}
	}{
		{"an invalid batch of one", `[1]`, []struct {
			id   string
			code int
		}{{"null", -32600}}},
		{"an invalid batch", `[1,2,3]`, []struct {
			id   string
			code int
		}{{"null", -32600}, {"null", -32600}, {"null", -32600}}},
		{"a mixed batch", `[
			{"jsonrpc":"2.0","method":"dev.enqueue.v1","params":{"type":"noop"},"id":"1"},
			{"jsonrpc":"2.0","method":"dev.enqueue.v1","params":{"type":"noop","subject":"hello"}},
			{"jsonrpc":"2.0","method":"dev.get.v1","params":{"id":"` + id + `"},"id":"2"},
			{"foo":"boo"},
			{"jsonrpc":"2.0","method":"foo.get","params":{"name":"myself"},"id":"5"},
			{"jsonrpc":"2.0","method":"admin.stats.v1","id":"9"}]`, []struct {
			id   string
			code int
		}{{`"1"`, 0}, {`"2"`, 0}, {"null", -32600}, {`"5"`, -32601}, {`"9"`, 0}}},
	}
	for _, tc := range batches {
		c.send(strings.Join(strings.Fields(tc.line), " "))
		reps := c.recvBatch()
		if len(reps) != len(tc.want) {
			t.Fatalf("%s: %d responses, want %d: %+v", tc.name, len(reps), len(tc.want), reps)
		}
		// The spec lets responses come in any order; match them by id and
		// code as a multiset.
		for _, w := range tc.want {
			found := -1
			for i, r := range reps {
				code := 0
				if r.Error != nil {
					code = r.Error.Code
				}
				if string(r.ID) == w.id && code == w.code {
					found = i
					break
				}
			}
			if found < 0 {
				t.Errorf("%s: no response with id %s and code %d in %+v", tc.name, w.id, w.code, reps)
				continue
			}
			reps = append(reps[:found], reps[found+1:]...)
		}
	}
	if jobs := e.list("--subject", "hello"); len(jobs) != 1 {
		t.Errorf("the enqueue notification inside a batch stored %d jobs, want 1", len(jobs))
	}

	// A batch of notifications only gets no answer at all.
	c.send(`[{"jsonrpc":"2.0","method":"dev.enqueue.v1","params":{"type":"noop","subject":"quiet"}},{"jsonrpc":"2.0","method":"admin.stats.v1"}]`)
	c.nextIs("a batch of notifications")
	if jobs := e.list("--subject", "quiet"); len(jobs) != 1 {
		t.Errorf("a batch of notifications stored %d jobs, want 1", len(jobs))
	}
}

// TestBatchLimitsAndAuth: a batch over the entry limit is refused whole
// and runs nothing; a batch before authentication is refused and the
// connection closed, as any other first line that is not auth.v1.
func TestBatchLimitsAndAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	c := e.dialRaw()
	c.auth(e.token())
	entry := `{"jsonrpc":"2.0","method":"dev.enqueue.v1","params":{"type":"noop"}}`
	c.send("[" + strings.Repeat(entry+",", 10000) + entry + "]")
	rep, ok := c.recv()
	if !ok || rep.Error == nil || rep.Error.Code != -32005 || string(rep.ID) != "null" {
		t.Fatalf("a batch of 10001: %+v, want one -32005 error", rep.Error)
	}
	if n := len(e.list("--limit", "10000")); n != 0 {
		t.Fatalf("a refused batch stored %d jobs", n)
	}
	c.nextIs("nothing else")

	u := e.dialRaw()
	u.send(`[{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"` + e.token() + `"}}]`)
	rep, ok = u.recv()
	if !ok || rep.Error == nil || rep.Error.Code != -32000 {
		t.Fatalf("unauthenticated batch: %+v, want -32000", rep.Error)
	}
	if !u.closed() {
		t.Fatal("the connection stayed open after an unauthenticated batch")
	}
}

// TestEnqueueManyIsAllOrNothing drives dev.enqueue_many.v1 on the wire.
func TestEnqueueManyIsAllOrNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	c := e.dialRaw()
	c.auth(e.token())
	c.send(`{"jsonrpc":"2.0","id":1,"method":"dev.enqueue_many.v1","params":{"jobs":[` +
		`{"type":"noop","subject":"a","delay":"1h"},{"type":"noop","subject":"b","delay":"1h"},{"type":"noop","subject":"a","delay":"1h"}]}}`)
	rep, _ := c.recv()
	var res struct {
		Results []struct {
			Job struct {
				ID         string `json:"id"`
				State      string `json:"state"`
				Generation int64  `json:"generation"`
			} `json:"job"`
			Superseded []string `json:"superseded"`
		} `json:"results"`
	}
	if rep.Error != nil || json.Unmarshal(rep.Result, &res) != nil || len(res.Results) != 3 {
		t.Fatalf("enqueue_many: %+v %s", rep.Error, rep.Result)
	}
	first, last := res.Results[0].Job, res.Results[2].Job
	if last.Generation != 2 || len(res.Results[2].Superseded) != 1 || res.Results[2].Superseded[0] != first.ID {
		t.Errorf("the last generation of a subject in the batch did not win: %+v", res.Results)
	}
	if got := e.show(first.ID).State; got != "SUPERSEDED" {
		t.Errorf("first generation is %s, want SUPERSEDED", got)
	}

	before := len(e.list("--limit", "10000"))
	c.send(`{"jsonrpc":"2.0","id":2,"method":"dev.enqueue_many.v1","params":{"jobs":[` +
		`{"type":"noop","subject":"a"},{"type":"noop","after":["no-such-job"]},{"type":"noop"}]}}`)
	rep, _ = c.recv()
	if rep.Error == nil || rep.Error.Code != -32602 || !strings.Contains(rep.Error.Message, "jobs[1]") {
		t.Fatalf("a batch with a bad entry: %+v, want -32602 naming jobs[1]", rep.Error)
	}
	if after := len(e.list("--limit", "10000")); after != before {
		t.Errorf("a refused batch changed the job count from %d to %d", before, after)
	}
	if got := e.show(last.ID).State; got != "QUEUED" {
		t.Errorf("a refused batch superseded %s (now %s)", last.ID, got)
	}
}

// TestEnqueueBatchFromLines: `stq enqueue --batch` prints one id per line
// in input order, and a bad line stops before anything of its chunk is
// stored, naming the line.
func TestEnqueueBatchFromLines(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	var in strings.Builder
	for i := range 2500 {
		fmt.Fprintf(&in, `{"type":"noop","subject":"f%d.go","payload":{"path":"f%d.go"},"delay":"1h"}`+"\n", i, i)
	}
	r := e.runStdin(in.String(), "enqueue", "--batch", "-")
	ids := strings.Fields(r.stdout)
	if r.code != 0 || len(ids) != 2500 {
		t.Fatalf("--batch of 2500: exit %d, %d ids, stderr %s", r.code, len(ids), r.stderr)
	}
	for _, i := range []int{0, 1234, 2499} {
		if j := e.show(ids[i]); j.Subject != fmt.Sprintf("f%d.go", i) {
			t.Errorf("id %d names subject %q: ids are not in input order", i, j.Subject)
		}
	}
	// --json prints each whole result, as dev.enqueue_many.v1 answers it.
	r = e.runStdin(`{"type":"noop","subject":"f7.go","delay":"1h"}`+"\n", "enqueue", "--batch", "-", "--json")
	var res engine.EnqueueResult
	if err := json.Unmarshal([]byte(r.stdout), &res); r.code != 0 || err != nil || res.Job == nil ||
		res.Job.Subject != "f7.go" || res.Job.Generation != 2 || !slices.Equal(res.Superseded, []string{ids[7]}) {
		t.Errorf("--batch --json: exit %d, stdout %q (%v); want the job as stored, superseding %s", r.code, r.stdout, err, ids[7])
	}

	// Line 1002 is bad: the first chunk (lines 1-1000) is stored, the
	// second (from 1001) is not.
	e2 := newEnv(t)
	e2.startDaemon()
	var bad strings.Builder
	for i := range 1500 {
		if i == 1001 {
			bad.WriteString(`{"type":"noop","after":["nope"]}` + "\n")
			continue
		}
		bad.WriteString(`{"type":"noop","delay":"1h"}` + "\n")
	}
	r = e2.runStdin(bad.String(), "enqueue", "--batch", "-")
	if r.code != 1 || !strings.Contains(r.stderr, "line 1002") || strings.Count(r.stderr, "\n") != 1 {
		t.Errorf("bad line 1002: exit %d, stderr %q; want exit 1 and one line naming line 1002", r.code, r.stderr)
	}
	if n := len(strings.Fields(r.stdout)); n != 1000 {
		t.Errorf("printed %d ids, want the 1000 of the stored chunk", n)
	}
	if n := len(e2.list("--limit", "10000")); n != 1000 {
		t.Errorf("%d jobs stored, want 1000", n)
	}
	for _, tc := range []struct{ input, want string }{
		{"{\"type\":\"noop\"}\n{\"type\":\"noop\",\"colour\":\"red\"}\n", `line 2: unknown field "colour"`},
		{"{\"type\":\"noop\"}\n\n{nope\n", "line 3: not valid JSON"},
		{"[1,2]\n", "line 1: want a JSON object"},
		{"{\"type\":\"noop\",\"priority\":\"high\"}\n", "line 1: priority has the wrong type"},
	} {
		r := e2.runStdin(tc.input, "enqueue", "--batch", "-")
		if r.code != 1 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
			t.Errorf("input %q: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.input, r.code, r.stdout, r.stderr, tc.want)
		}
	}
	if n := len(e2.list("--limit", "10000")); n != 1000 {
		t.Errorf("bad inputs stored jobs: %d, want still 1000", n)
	}
	if r := e2.run("enqueue", "--batch", "-", "--queue", "x"); r.code != 2 {
		t.Errorf("--batch with --queue: exit %d, want 2", r.code)
	}
}

// TestEnqueueBatchFromGitAndJq is the README's example, run as written:
//
//	git ls-files '*.go' | jq -Rc '{type:"lint", subject:., payload:{path:.}}' | stq enqueue --batch -
//
// jq needs -R (raw input): git prints file names, not JSON strings.
func TestEnqueueBatchFromGitAndJq(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"git", "jq", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	e := newEnv(t)
	if err := os.MkdirAll(e.home, 0o700); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(e.path("config.toml"), []byte("[handlers.lint]\ncommand = [\"true\"]\n"), 0o600)
	e.startDaemon()
	repo := t.TempDir()
	for _, f := range []string{"a.go", "b.go", "sub/c.go", "README.md"} {
		os.MkdirAll(filepath.Join(repo, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(repo, f), []byte("package x\n"), 0o644)
	}
	sh := exec.Command("sh", "-c", `git init -q . && git add . && git ls-files '*.go' | jq -Rc '{type:"lint", subject:., payload:{path:.}}' | "$STQ" enqueue --batch -`)
	sh.Dir = repo
	sh.Env = append(os.Environ(), "STQ="+stqBin, "STQ_HOME="+e.home, "GORACE=atexit_sleep_ms=0")
	out, err := sh.CombinedOutput()
	if err != nil {
		t.Fatalf("the pipeline failed: %v\n%s", err, out)
	}
	ids := strings.Fields(string(out))
	if len(ids) != 3 {
		t.Fatalf("got %q, want 3 ids", out)
	}
	if j := e.show(ids[2]); j.Subject != "sub/c.go" || j.Type != "lint" {
		t.Errorf("third job: %+v", j)
	}
}

// TestListAllPages: `stq list --all` streams every match however many
// pages it takes, one JSON object per line with --json, tab-separated rows
// otherwise.
func TestListAllPages(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	var in strings.Builder
	for i := range 250 {
		fmt.Fprintf(&in, `{"type":"noop","queue":"paged","subject":"s%d","delay":"1h"}`+"\n", i)
	}
	e.runStdin(in.String(), "enqueue", "--batch", "-")
	r := e.run("list", "--all", "--limit", "100", "--queue", "paged", "--json")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 250 {
		t.Fatalf("list --all --json: exit %d, %d lines", r.code, len(lines))
	}
	seen := map[string]bool{}
	for _, l := range lines {
		var j job
		if err := json.Unmarshal([]byte(l), &j); err != nil || j.Queue != "paged" || seen[j.ID] {
			t.Fatalf("line %q: %v (or a repeat)", l, err)
		}
		seen[j.ID] = true
	}
	var first job
	json.Unmarshal([]byte(lines[0]), &first)
	if first.Subject != "s249" {
		t.Errorf("first line is %s, want the newest job (s249)", first.Subject)
	}
	r = e.run("list", "--all", "--limit", "7", "--queue", "paged")
	rows := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(rows) != 251 || !strings.HasPrefix(rows[0], "ID\tSTATE\tQUEUE") || len(strings.Split(rows[1], "\t")) != 7 {
		t.Fatalf("list --all: exit %d, %d rows, first %q", r.code, len(rows), rows[0])
	}
	if n := len(e.list("--queue", "paged", "--limit", "60")); n != 60 {
		t.Errorf("list --limit 60 gave %d jobs", n)
	}
}
