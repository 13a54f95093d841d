package postgres

import (
	"context"
	"encoding/hex"
	"fmt"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// envCacheSize bounds the cache of environments; when it is full the
// cache starts over. A cluster sees a handful of distinct environments.
const envCacheSize = 256

// checkEnv checks a job's base environment and returns its digest.
func checkEnv(env *engine.BaseEnv) ([]byte, error) {
	if env == nil {
		return nil, nil
	}
	hash, err := hex.DecodeString(env.SHA256)
	if err != nil || len(hash) != 32 || (len(env.Encoded) == 0) != (env.Vars == 0) {
		return nil, fmt.Errorf("%w: base environment without its encoding or digest (make it with engine.EncodeBaseEnv)", engine.ErrInvalid)
	}
	return hash, nil
}

// refEnv adds n references to an environment, storing it first if it is
// new, and returns its id. The row lock the update takes orders it with a
// concurrent Prune deleting the row: the prune either sees the reference
// or runs first, and then the insert stores the row again.
func refEnv(ctx context.Context, tx pgx.Tx, env *engine.BaseEnv, hash []byte, n int64) (int64, error) {
	var id int64
	body := env.Encoded
	if body == nil {
		body = []byte{}
	}
	err := tx.QueryRow(ctx, `INSERT INTO envs (hash, body, vars, refs) VALUES ($1, $2, $3, $4)
		ON CONFLICT (hash) DO UPDATE SET refs = envs.refs + excluded.refs RETURNING id`,
		hash, body, env.Vars, n).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("count environment reference: %w", err)
	}
	return id, nil
}

// unrefEnvs takes n references off each environment of refs (id -> n) and
// deletes the ones nothing references any more.
func (s *Store) unrefEnvs(ctx context.Context, tx pgx.Tx, refs map[int64]int64) error {
	for id, n := range refs {
		var left int64
		err := tx.QueryRow(ctx, `UPDATE envs SET refs = refs - $2 WHERE id = $1 RETURNING refs`, id, n).Scan(&left)
		if err == pgx.ErrNoRows {
			continue
		}
		if err != nil {
			return fmt.Errorf("drop environment reference: %w", err)
		}
		if left > 0 {
			continue
		}
		if _, err := tx.Exec(ctx, `DELETE FROM envs WHERE id = $1 AND refs <= 0`, id); err != nil {
			return fmt.Errorf("delete environment: %w", err)
		}
		s.envMu.Lock()
		delete(s.envs, id)
		s.envMu.Unlock()
	}
	return nil
}

// env returns environment id: its digest and count, and its variables
// too when full (a job about to run). A row that is missing reads as an
// environment with neither, which the engine refuses to run with.
func (s *Store) env(ctx context.Context, tx querier, id int64, full bool) (*engine.BaseEnv, error) {
	s.envMu.Lock()
	cached, ok := s.envs[id]
	s.envMu.Unlock()
	if ok && (!full || cached.List != nil) {
		return cached, nil
	}
	var (
		hash, body []byte
		vars       int32
	)
	q := `SELECT hash, NULL::bytea, vars FROM envs WHERE id = $1`
	if full {
		q = `SELECT hash, body, vars FROM envs WHERE id = $1`
	}
	err := tx.QueryRow(ctx, q, id).Scan(&hash, &body, &vars)
	if err == pgx.ErrNoRows {
		return &engine.BaseEnv{}, nil
	}
	if err != nil {
		return nil, err
	}
	env := &engine.BaseEnv{SHA256: hex.EncodeToString(hash), Vars: int(vars)}
	if full {
		if env, err = engine.DecodeBaseEnv(body); err != nil {
			return nil, err
		}
	}
	s.envMu.Lock()
	if s.envs == nil || len(s.envs) >= envCacheSize {
		s.envs = make(map[int64]*engine.BaseEnv)
	}
	s.envs[id] = env
	s.envMu.Unlock()
	return env, nil
}

// StoredEnvs counts the distinct captured environments stored (see
// storetest.EnvCounter).
func (s *Store) StoredEnvs(ctx context.Context) (int, error) {
	var n int
	err := s.read(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `SELECT count(*) FROM envs`).Scan(&n)
	})
	if err != nil {
		return 0, fmt.Errorf("count environments: %w", err)
	}
	return n, nil
}
