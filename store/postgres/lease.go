package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// Leases (engine.Leaser): one row per daemon in "daemons", its times on
// the database's clock (now()), so no host's clock decides who is alive.

var _ engine.Leaser = (*Store)(nil)

// migrationDaemons is migration 2: the daemons' leases.
const migrationDaemons = `
CREATE TABLE daemons (
	owner     text COLLATE "C" PRIMARY KEY,  -- jobs.owner of its claims
	host      text        NOT NULL,
	pid       integer     NOT NULL,
	pid_start bigint      NOT NULL,          -- the process's start time; 0: unknown
	version   text        NOT NULL,
	started   bigint      NOT NULL,          -- unix ns, the daemon's clock
	-- The database's clock: the last renewal, and when the lease runs out.
	heartbeat timestamptz NOT NULL,
	expires   timestamptz NOT NULL
);
`

// Join takes a lease for a new owner (see engine.Leaser).
func (s *Store) Join(ctx context.Context, d engine.DaemonInfo, ttl time.Duration) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO daemons (owner, host, pid, pid_start, version, started, heartbeat, expires)
			VALUES ($1, $2, $3, $4, $5, $6, now(), now() + $7 * interval '1 microsecond')`,
			d.Owner, d.Host, d.PID, d.PIDStart, d.Version, d.Started.UnixNano(), ttl.Microseconds())
		return err
	})
	if isUnique(err) {
		return fmt.Errorf("join as %s: %w: the owner already holds a lease", d.Owner, engine.ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("join as %s: %w", d.Owner, err)
	}
	return nil
}

// Renew extends an unexpired lease; an expired or removed one is lost.
func (s *Store) Renew(ctx context.Context, owner string, ttl time.Duration) error {
	var n int64
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE daemons SET heartbeat = now(), expires = now() + $2 * interval '1 microsecond'
			WHERE owner = $1 AND expires > now()`, owner, ttl.Microseconds())
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("renew lease of %s: %w", owner, err)
	}
	if n == 0 {
		return fmt.Errorf("renew lease of %s: %w", owner, engine.ErrLeaseLost)
	}
	return nil
}

// Leave removes owner's lease.
func (s *Store) Leave(ctx context.Context, owner string) error {
	err := s.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `DELETE FROM daemons WHERE owner = $1`, owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("leave as %s: %w", owner, err)
	}
	return nil
}

// Daemons lists the unexpired leases by host, then owner.
func (s *Store) Daemons(ctx context.Context) ([]engine.DaemonInfo, error) {
	var ds []engine.DaemonInfo
	err := s.read(ctx, func(tx pgx.Tx) error {
		ds = ds[:0]
		rows, err := tx.Query(ctx, `SELECT owner, host, pid, pid_start, version, started, heartbeat, expires
			FROM daemons WHERE expires > now() ORDER BY host, owner`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var d engine.DaemonInfo
			var started int64
			if err := rows.Scan(&d.Owner, &d.Host, &d.PID, &d.PIDStart, &d.Version, &started, &d.Heartbeat, &d.Expires); err != nil {
				return err
			}
			d.Started = time.Unix(0, started).UTC()
			d.Heartbeat, d.Expires = d.Heartbeat.UTC(), d.Expires.UTC()
			ds = append(ds, d)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("list daemons: %w", err)
	}
	return ds, nil
}

// ForgetExpired removes expired leases whose owners no longer hold a
// RUNNING job: their jobs have been recovered. An expired lease can never
// be renewed, so removing it cannot race its owner.
func (s *Store) ForgetExpired(ctx context.Context) (int, error) {
	var n int64
	err := s.write(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM daemons d WHERE d.expires <= now()
			AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.state = 'RUNNING' AND j.owner = d.owner)`)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("forget expired leases: %w", err)
	}
	return int(n), nil
}
