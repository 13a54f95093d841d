package ipc

import (
	"context"
	"maps"
	"testing"

	"stq/engine"
)

// manyCapture records the requests of dev.enqueue_many.v1 as the backend
// gets them.
type manyCapture struct {
	*fakeBackend
	got []engine.EnqueueRequest
}

func (m *manyCapture) EnqueueMany(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, error) {
	m.got = reqs
	return m.fakeBackend.EnqueueMany(ctx, reqs)
}

func TestEnqueueManyBaseEnvFillsTheJobsWithoutOne(t *testing.T) {
	t.Parallel()
	be := &manyCapture{fakeBackend: newFake()}
	ts := startServerWith(t, be, ServerOptions{})
	cl := dialClient(t, ts.path)
	shared := map[string]string{"PATH": "/caller/bin", "MY_VAR": "x"}
	own := map[string]string{"PATH": "/own/bin"}
	_, err := cl.EnqueueManyEnv(testCtx(t), shared, []engine.EnqueueRequest{{Type: "a"}, {Type: "b", BaseEnv: own}, {Type: "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(be.got) != 3 || !maps.Equal(be.got[0].BaseEnv, shared) || !maps.Equal(be.got[1].BaseEnv, own) || !maps.Equal(be.got[2].BaseEnv, shared) {
		t.Fatalf("backend got %+v", be.got)
	}
	// Without it, the requests keep what they say: nothing.
	if _, err := cl.EnqueueMany(testCtx(t), []engine.EnqueueRequest{{Type: "a"}}); err != nil {
		t.Fatal(err)
	}
	if be.got[0].BaseEnv != nil {
		t.Fatalf("a batch without base_env gave a job %v", be.got[0].BaseEnv)
	}
}
