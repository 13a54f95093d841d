package engine_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"stq/engine"
)

// envOf turns a process environment into a map, failing on a name given
// twice: the process must see one value per name.
func envOf(t *testing.T, env []string) map[string]string {
	t.Helper()
	m := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		if _, dup := m[k]; dup {
			t.Fatalf("%s appears twice in %v", k, env)
		}
		m[k] = v
	}
	return m
}

func TestProcessEnvComposition(t *testing.T) {
	t.Parallel()
	daemon := []string{"PATH=/daemon/bin", "HOME=/daemon", "ONLY_DAEMON=1", "STQ_HOME=/daemon/home"}
	job := []string{"MY_VAR=from-env", "STQ_JOB_ID=j1", "STQ_ATTEMPT=2"} // as jobEnv makes it: env, then STQ_*
	tests := []struct {
		name string
		base []string
		want map[string]string
	}{
		{
			name: "without a base environment the daemon's is the base",
			want: map[string]string{"PATH": "/daemon/bin", "HOME": "/daemon", "ONLY_DAEMON": "1", "STQ_HOME": "/daemon/home", "MY_VAR": "from-env", "STQ_JOB_ID": "j1", "STQ_ATTEMPT": "2"},
		},
		{
			name: "a base environment replaces the daemon's whole",
			base: []string{"PATH=/tools/bin:/usr/bin", "MY_VAR=from-caller", "CALLER=1"},
			want: map[string]string{"PATH": "/tools/bin:/usr/bin", "MY_VAR": "from-env", "CALLER": "1", "STQ_JOB_ID": "j1", "STQ_ATTEMPT": "2"},
		},
		{
			name: "the STQ variables win over the base environment",
			base: []string{"STQ_JOB_ID=outer", "STQ_ATTEMPT=9", "STQ_HOME=/caller/home"},
			want: map[string]string{"STQ_JOB_ID": "j1", "STQ_ATTEMPT": "2", "STQ_HOME": "/caller/home", "MY_VAR": "from-env"},
		},
		{
			name: "an empty base environment is empty, not the daemon's",
			base: []string{},
			want: map[string]string{"MY_VAR": "from-env", "STQ_JOB_ID": "j1", "STQ_ATTEMPT": "2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			run := &engine.Run{Env: job, BaseEnv: tc.base}
			got := envOf(t, run.ProcessEnv(daemon))
			if len(got) != len(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (env %v)", k, got[k], v, got)
				}
			}
		})
	}
}

func TestEncodeBaseEnvIsCanonicalAndDropsTheJobVariables(t *testing.T) {
	t.Parallel()
	a := engine.EncodeBaseEnv(map[string]string{"B": "2", "A": "1", "STQ_JOB_ID": "outer", "STQ_ATTEMPT": "3", "STQ_HOME": "/h"})
	b := engine.EncodeBaseEnv(map[string]string{"STQ_HOME": "/h", "A": "1", "B": "2"})
	if a.SHA256 != b.SHA256 || string(a.Encoded) != string(b.Encoded) || a.Vars != 3 {
		t.Fatalf("same variables, different encodings: %+v / %+v", a, b)
	}
	if want := "A=1\x00B=2\x00STQ_HOME=/h\x00"; string(a.Encoded) != want {
		t.Fatalf("encoded %s, want %s", a.Encoded, want)
	}
	d, err := engine.DecodeBaseEnv(a.Encoded)
	if err != nil {
		t.Fatal(err)
	}
	if d.SHA256 != a.SHA256 || d.Vars != 3 || !slices.Equal(d.List, []string{"A=1", "B=2", "STQ_HOME=/h"}) {
		t.Fatalf("decoded %+v", d)
	}
	if c := engine.EncodeBaseEnv(map[string]string{"A": "1", "B": "3"}); c.SHA256 == a.SHA256 {
		t.Fatal("different variables, same digest")
	}
}

func TestTheJobRunsWithItsCallersEnvironment(t *testing.T) {
	b := setup(t, engine.Config{Workers: 2})
	daemon := []string{"PATH=/daemon/bin", "ONLY_DAEMON=1"}

	caller := map[string]string{"PATH": "/tools/bin:/usr/bin", "MY_VAR": "caller", "STQ_JOB_ID": "outer"}
	j := b.enqueue(t, engine.EnqueueRequest{BaseEnv: caller, Env: map[string]string{"MY_VAR": "added"}})
	if j.BaseEnv == nil || j.BaseEnv.Vars != 2 || len(j.BaseEnv.SHA256) != 64 {
		t.Fatalf("enqueued job's base environment is %+v, want 2 variables and a digest", j.BaseEnv)
	}
	c := b.next(t)
	got := envOf(t, c.run.ProcessEnv(daemon))
	want := map[string]string{"PATH": "/tools/bin:/usr/bin", "MY_VAR": "added", "STQ_JOB_ID": j.ID}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q (env %v)", k, got[k], v, got)
		}
	}
	if _, ok := got["ONLY_DAEMON"]; ok {
		t.Errorf("the daemon's environment leaked into a job that brought its own: %v", got)
	}
	c.result <- exit(0)

	plain := b.enqueue(t, engine.EnqueueRequest{Env: map[string]string{"MY_VAR": "added"}})
	if plain.BaseEnv != nil {
		t.Fatalf("a job without base_env has %+v", plain.BaseEnv)
	}
	c = b.next(t)
	if c.run.BaseEnv != nil {
		t.Fatalf("run of a job without base_env has BaseEnv %v", c.run.BaseEnv)
	}
	got = envOf(t, c.run.ProcessEnv(daemon))
	if got["PATH"] != "/daemon/bin" || got["ONLY_DAEMON"] != "1" || got["MY_VAR"] != "added" || got["STQ_JOB_ID"] != plain.ID {
		t.Errorf("job without base_env runs with %v, want the daemon's environment plus its own", got)
	}
	c.result <- exit(0)
}

func TestBaseEnvValidation(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	big := make(map[string]string, engine.MaxBaseEnvVars+1)
	for i := range engine.MaxBaseEnvVars + 1 {
		big["V"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+strings.Repeat("y", i/26)] = ""
	}
	for _, tc := range []struct {
		name   string
		env    map[string]string
		errHas string
	}{
		{"an empty name", map[string]string{"": "x"}, "invalid environment variable name"},
		{"a name with =", map[string]string{"A=B": "x"}, "invalid environment variable name"},
		{"a NUL in a value", map[string]string{"A": "x\x00"}, "NUL"},
		{"too many variables", big, "over the limit of 4096"},
		{"too many bytes", map[string]string{"A": strings.Repeat("x", engine.MaxBaseEnvBytes)}, "over the limit of 1048576"},
	} {
		_, err := b.eng.Enqueue(context.Background(), engine.EnqueueRequest{Command: []string{"true"}, BaseEnv: tc.env})
		if !errors.Is(err, engine.ErrInvalid) || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: %v, want ErrInvalid with %q", tc.name, err, tc.errHas)
		}
	}
}

// The requests of a batch that share one base environment map share one
// encoding, and jobs with different ones get theirs.
func TestEnqueueManySharesTheBaseEnvOfItsRequests(t *testing.T) {
	b := setup(t, engine.Config{Workers: 1})
	shared := map[string]string{"PATH": "/a"}
	later := t0.Add(time.Hour) // none of them runs
	reqs := []engine.EnqueueRequest{
		{Command: []string{"x"}, BaseEnv: shared, RunAt: &later},
		{Command: []string{"x"}, BaseEnv: shared, RunAt: &later},
		{Command: []string{"x"}, BaseEnv: map[string]string{"PATH": "/b"}, RunAt: &later},
		{Command: []string{"x"}, RunAt: &later},
	}
	res, err := b.eng.EnqueueMany(context.Background(), reqs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Job.BaseEnv != res[1].Job.BaseEnv {
		t.Error("two requests with one map got two encodings")
	}
	if res[2].Job.BaseEnv.SHA256 == res[0].Job.BaseEnv.SHA256 || res[3].Job.BaseEnv != nil {
		t.Errorf("base environments %+v %+v", res[2].Job.BaseEnv, res[3].Job.BaseEnv)
	}
	if n, err := b.store.StoredEnvs(context.Background()); err != nil || n != 2 {
		t.Fatalf("stored environments: %d, %v; want 2", n, err)
	}
}
