package sqlite

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/ncruces/go-sqlite3"

	"stq/engine"
)

// Captured environments (engine.BaseEnv) live in the envs table, one row
// per distinct environment with a count of the jobs that reference it (see
// migration 6). Rows are never changed once written, and ids are never
// used twice, so a connection may cache them by id for good.

// envCacheSize bounds a connection's cache of environments; when it is
// full the cache starts over. A daemon sees a handful of distinct
// environments (one per shell or tool that enqueues), so it rarely is.
const envCacheSize = 256

// encodeEnv fills in the job's environment for the writer; the
// environment itself is shared, not copied: an engine.BaseEnv is never
// changed once made.
func encodeEnv(in *newJob, env *engine.BaseEnv) error {
	if env == nil {
		return nil
	}
	hash, err := hex.DecodeString(env.SHA256)
	if err != nil || len(hash) != 32 || (len(env.Encoded) == 0) != (env.Vars == 0) {
		return fmt.Errorf("%w: base environment without its encoding or digest (make it with engine.EncodeBaseEnv)", engine.ErrInvalid)
	}
	in.base, in.baseHash = env, hash
	return nil
}

// refEnv adds n references to the environment in.env, storing it first if
// it is new, and returns its id.
func (c *conn) refEnv(in *newJob, n int64) (int64, error) {
	var id int64
	_, err := c.queryOne(qEnvRef, func(b *binder) {
		b.optBytes(in.baseHash)
		b.int64(n)
	}, func(st *sqlite3.Stmt) { id = st.ColumnInt64(0) })
	if err != nil {
		return 0, fmt.Errorf("count environment reference: %w", err)
	}
	if id != 0 {
		return id, nil
	}
	err = c.run(qEnvInsert, func(b *binder) {
		b.optBytes(in.baseHash)
		b.blob(in.base.Encoded)
		b.int64(int64(in.base.Vars))
		b.int64(n)
	})
	if err != nil {
		return 0, fmt.Errorf("store environment: %w", err)
	}
	return c.db.LastInsertRowID(), nil
}

// refEnvs adds the references of a run of jobs to their environments, one
// statement per distinct environment, and sets each job's envID.
func (c *conn) refEnvs(ins []newJob) error {
	type ref struct {
		in    *newJob
		n, id int64
	}
	var refs []ref
next:
	for k := range ins {
		if ins[k].base == nil {
			continue
		}
		for i := range refs {
			if refs[i].in.base.SHA256 == ins[k].base.SHA256 {
				refs[i].n++
				continue next
			}
		}
		refs = append(refs, ref{in: &ins[k], n: 1})
	}
	for i := range refs {
		id, err := c.refEnv(refs[i].in, refs[i].n)
		if err != nil {
			return err
		}
		refs[i].id = id
	}
	for k := range ins {
		if ins[k].base == nil {
			continue
		}
		for _, r := range refs {
			if r.in.base.SHA256 == ins[k].base.SHA256 {
				ins[k].baseID = r.id
				break
			}
		}
	}
	return nil
}

// unrefEnvs takes n references off each environment of refs (id -> n),
// deleting the ones nothing references any more.
func (c *conn) unrefEnvs(refs map[int64]int64) error {
	for id, n := range refs {
		left := int64(1)
		_, err := c.queryOne(qEnvUnref, func(b *binder) {
			b.int64(id)
			b.int64(n)
		}, func(st *sqlite3.Stmt) { left = st.ColumnInt64(0) })
		if err != nil {
			return fmt.Errorf("drop environment reference: %w", err)
		}
		if left > 0 {
			continue
		}
		if err := c.run(qEnvDelete, func(b *binder) { b.int64(id) }); err != nil {
			return fmt.Errorf("delete environment: %w", err)
		}
		delete(c.envs, id)
	}
	return nil
}

// envMeta returns environment id's digest and count, without the
// variables: what a job read for show or list carries. A row that is
// missing (counted references should never let that happen) reads as an
// environment with neither, so that the job can still be read; a claim
// refuses to run it (see envFull).
func (c *conn) envMeta(id int64) (*engine.BaseEnv, error) {
	if env, ok := c.envs[id]; ok {
		return env, nil
	}
	env := &engine.BaseEnv{}
	_, err := c.queryOne(qEnvMeta, func(b *binder) { b.int64(id) }, func(st *sqlite3.Stmt) {
		env.SHA256 = hex.EncodeToString(st.ColumnRawBlob(0))
		env.Vars = st.ColumnInt(1)
	})
	if err != nil {
		return nil, err
	}
	if env.SHA256 != "" {
		c.cacheEnv(id, env)
	}
	return env, nil
}

// envFull returns environment id with its variables (List), for a job
// about to run. A missing row gives an environment without List, which
// the engine refuses to run with.
func (c *conn) envFull(id int64) (*engine.BaseEnv, error) {
	if env, ok := c.envs[id]; ok && env.List != nil {
		return env, nil
	}
	var body []byte
	found, err := c.queryOne(qEnvBody, func(b *binder) { b.int64(id) }, func(st *sqlite3.Stmt) { body = st.ColumnBlob(0, nil) })
	if err != nil {
		return nil, err
	}
	if !found {
		return &engine.BaseEnv{}, nil
	}
	env, err := engine.DecodeBaseEnv(body)
	if err != nil {
		return nil, err
	}
	c.cacheEnv(id, env)
	return env, nil
}

func (c *conn) cacheEnv(id int64, env *engine.BaseEnv) {
	if c.envs == nil || len(c.envs) >= envCacheSize {
		c.envs = make(map[int64]*engine.BaseEnv)
	}
	c.envs[id] = env
}

// StoredEnvs counts the distinct captured environments stored. Each is
// stored once however many jobs carry it, and goes when the last of them
// is pruned; tests and diagnostics use this to see it.
func (s *Store) StoredEnvs(ctx context.Context) (int, error) {
	var n int
	err := s.read(ctx, func(c *conn) error {
		_, err := c.queryOne(qEnvCount, nil, func(st *sqlite3.Stmt) { n = st.ColumnInt(0) })
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("count environments: %w", err)
	}
	return n, nil
}
