package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadCommandLinesChangeNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	big := filepath.Join(t.TempDir(), "big.json")
	if err := os.WriteFile(big, []byte(`"`+strings.Repeat("x", 1<<20+10)+`"`), 0o600); err != nil {
		t.Fatal(err)
	}
	nul := filepath.Join(t.TempDir(), "nul.json")
	if err := os.WriteFile(nul, []byte(`{"a":"\u0000"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("q", 1025)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"payload that is not JSON", []string{"enqueue", "--payload", "{bad", "--", "true"}, 2, "payload is not valid JSON"},
		{"payload over the limit", []string{"enqueue", "--payload-file", big, "--", "true"}, 1, "over the limit"},
		{"payload with a NUL character", []string{"enqueue", "--payload-file", nul, "--", "true"}, 1, "NUL"},
		{"missing payload file", []string{"enqueue", "--payload-file", "/nonexistent/x", "--", "true"}, 2, "no such file"},
		{"empty queue", []string{"enqueue", "--queue", "", "--", "true"}, 2, "--queue must not be empty"},
		{"empty type", []string{"enqueue", "--type", "", "--", "true"}, 2, "--type must not be empty"},
		{"over-long queue", []string{"enqueue", "--queue", long, "--", "true"}, 1, "over the limit of 1024"},
		{"over-long type", []string{"enqueue", "--type", long, "--", "true"}, 1, "over the limit of 1024"},
		{"over-long subject", []string{"enqueue", "--subject", long, "--", "true"}, 1, "over the limit of 1024"},
		{"empty subject", []string{"enqueue", "--subject", "", "--", "true"}, 2, "--subject must not be empty"},
		{"negative generation", []string{"enqueue", "--subject", "s", "--gen", "-1", "--", "true"}, 1, "generation must not be negative"},
		{"unparsable deadline", []string{"enqueue", "--deadline", "5x", "--", "true"}, 2, "--deadline"},
		{"unparsable ttl", []string{"enqueue", "--ttl", "soon", "--", "true"}, 2, "--ttl"},
		{"unparsable backoff", []string{"enqueue", "--backoff", "-1s", "--", "true"}, 2, "--backoff"},
		{"unparsable delay", []string{"enqueue", "--in", "later", "--", "true"}, 2, "--in"},
		{"unparsable time", []string{"enqueue", "--at", "tomorrowish", "--", "true"}, 2, "--at"},
		{"bad env pair", []string{"enqueue", "--env", "NOEQUALS", "--", "true"}, 2, "KEY=VALUE"},
		{"zero max attempts", []string{"enqueue", "--max-attempts", "0", "--", "true"}, 1, "max_attempts"},
		{"unknown flag", []string{"enqueue", "--bogus", "--", "true"}, 2, "bogus"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"unknown global flag", []string{"--nope", "stats"}, 2, "nope"},
		{"unknown job id for show", []string{"show", "0000000000000000000000nope"}, 1, "not found"},
		{"unknown job id for wait", []string{"wait", "0000000000000000000000nope"}, 1, "not found"},
		{"unknown job id for cancel", []string{"cancel", "0000000000000000000000nope"}, 1, "not found"},
		{"unknown state for list", []string{"list", "--state", "SLEEPING"}, 2, "unknown state"},
		{"show without an id", []string{"show"}, 2, "exactly one job id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.run(tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.msg) {
				t.Fatalf("stq %s: exit %d, stderr %q; want exit %d and %q", strings.Join(tt.args, " ")[:min(80, len(strings.Join(tt.args, " ")))], r.code, r.stderr, tt.code, tt.msg)
			}
			if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); !strings.HasPrefix(lines[0], "stq: ") || len(lines) > 2 {
				t.Fatalf("error is not one line (plus an optional hint): %q", r.stderr)
			}
			if r.stdout != "" {
				t.Fatalf("a failed command printed to stdout: %q", r.stdout)
			}
		})
	}
	if js := e.list(); len(js) != 0 {
		t.Fatalf("bad input stored %d jobs", len(js))
	}
}

func TestHostileSocketInputLeavesTheDaemonServing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.startDaemon()
	tok := e.token()
	bystander := e.dialRaw()
	bystander.auth(tok)

	tests := []struct {
		name  string
		auth  bool
		line  string
		code  int
		close bool
	}{
		{"a request before auth", false, `{"jsonrpc":"2.0","id":1,"method":"dev.list.v1","params":{}}`, -32000, true},
		{"a wrong token", false, `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"` + strings.Repeat("0", 64) + `"}}`, -32000, true},
		{"an empty token", false, `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":""}}`, -32000, true},
		{"a token one character off", false, `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"` + tok[:63] + "x" + `"}}`, -32000, true},
		{"invalid JSON", true, `{"jsonrpc":"2.0",`, -32700, false},
		{"invalid UTF-8", true, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"dev.get.v1\",\"params\":{\"id\":\"\xff\"}}", -32700, false},
		{"an empty batch", true, `[]`, -32600, false},
		{"a batch that is not JSON", true, `[{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1"},`, -32700, false},
		{"an unknown method", true, `{"jsonrpc":"2.0","id":1,"method":"dev.explode.v1","params":{}}`, -32601, false},
		{"an id that is an object", true, `{"jsonrpc":"2.0","id":{"a":1},"method":"admin.stats.v1","params":{}}`, -32600, false},
		{"wrong param types", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"queue":5}}`, -32602, false},
		{"unknown params", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"colour":"red"}}`, -32602, false},
		{"a NUL in the subject", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"subject":"a\u0000b","command":["true"]}}`, -32602, false},
		{"a negative generation", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"subject":"s","generation":-4,"command":["true"]}}`, -32602, false},
		{"a huge number", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"priority":1e400,"command":["true"]}}`, -32602, false},
		{"an unknown job", true, `{"jsonrpc":"2.0","id":1,"method":"dev.get.v1","params":{"id":"nope"}}`, -32001, false},
		{"deeply nested JSON", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"command":["true"],"payload":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `}}`, -32700, false},
		{"a raw NUL byte", true, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"admin.stats.v1\x00\"}", -32700, false},
		{"an old protocol version", true, `{"jsonrpc":"1.0","id":1,"method":"admin.stats.v1","params":{}}`, -32600, false},
		{"a method that is not a string", true, `{"jsonrpc":"2.0","id":1,"method":7,"params":{}}`, -32600, false},
		{"an empty object", true, `{}`, -32600, false},
		{"params that are an array", true, `{"jsonrpc":"2.0","id":1,"method":"dev.list.v1","params":[1,2]}`, -32602, false},
		{"auth a second time", true, `{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"x"}}`, -32600, false},
		{"a huge generation", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"subject":"s","generation":1e30,"command":["true"]}}`, -32602, false},
		{"cancel by id and subject at once", true, `{"jsonrpc":"2.0","id":1,"method":"dev.cancel.v1","params":{"id":"a","subject":"s"}}`, -32602, false},
		{"a negative list limit", true, `{"jsonrpc":"2.0","id":1,"method":"dev.list.v1","params":{"limit":-1}}`, -32602, false},
		{"a negative tail position", true, `{"jsonrpc":"2.0","id":1,"method":"logs.tail.v1","params":{"job_id":"a","after_seq":-5}}`, -32602, false},
		{"a wait for nothing", true, `{"jsonrpc":"2.0","id":1,"method":"dev.wait.v1","params":{"ids":[]}}`, -32602, false},
		{"an empty program name", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"command":[""]}}`, -32602, false},
		{"a reserved environment variable", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"command":["true"],"env":{"STQ_JOB_ID":"x"}}}`, -32602, false},
		{"a payload over the limit", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"command":["true"],"payload":"` + strings.Repeat("x", 1<<20+1) + `"}}`, -32602, false},
		{"an unknown dependency", true, `{"jsonrpc":"2.0","id":1,"method":"dev.enqueue.v1","params":{"command":["true"],"after":["nope"]}}`, -32602, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := e.dialRaw()
			if tt.auth {
				c.auth(tok)
			}
			c.send(tt.line)
			rep, ok := c.recv()
			if !ok || rep.Error == nil || rep.Error.Code != tt.code {
				t.Fatalf("reply %+v (ok=%v), want error %d", rep.Error, ok, tt.code)
			}
			if tt.close {
				if !c.closed() {
					t.Fatal("connection left open")
				}
				return
			}
			c.send(`{"jsonrpc":"2.0","id":2,"method":"admin.stats.v1","params":{}}`)
			if rep, ok := c.recv(); !ok || rep.Error != nil {
				t.Fatalf("connection unusable after a bad line: %+v", rep.Error)
			}
		})
	}
	t.Run("a 100 MiB line closes only that connection", func(t *testing.T) {
		c := e.dialRaw()
		c.auth(tok)
		go func() {
			chunk := []byte(strings.Repeat("a", 1<<20))
			_, _ = c.conn.Write([]byte(`{"jsonrpc":"2.0","id":1,"method":"admin.stats.v1","params":{"x":"`))
			for i := 0; i < 100; i++ { // a 100 MiB line; the server stops reading at 2 MiB
				if _, err := c.conn.Write(chunk); err != nil {
					return
				}
			}
		}()
		rep, ok := c.recv()
		if !ok || rep.Error == nil || rep.Error.Code != -32005 {
			t.Fatalf("over-long line: %+v ok=%v", rep.Error, ok)
		}
	})
	bystander.send(`{"jsonrpc":"2.0","id":9,"method":"admin.stats.v1","params":{}}`)
	if rep, ok := bystander.recv(); !ok || rep.Error != nil {
		t.Fatal("another client was disturbed")
	}
	if js := e.list(); len(js) != 0 {
		t.Fatalf("hostile input stored %d jobs", len(js))
	}
	e.ok("stats")
}
