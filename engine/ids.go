package engine

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"
)

// Job ids: newID makes them IDLen characters long. A person may give any
// unique prefix of at least MinIDPrefix characters wherever an id is taken.
const (
	IDLen       = 26
	MinIDPrefix = 4
	// maxCandidates bounds the ids an ambiguous prefix error lists.
	maxCandidates = 10
)

// resolveID turns an id prefix into the id of the one stored job it
// starts. A whole id, a string too short to be a prefix, or one that
// matches nothing comes back unchanged, so the caller's lookup reports it
// as not found; a prefix of several ids is an error that lists them.
func (e *Engine) resolveID(ctx context.Context, id string) (string, error) {
	if len(id) >= IDLen || len(id) < MinIDPrefix {
		return id, nil
	}
	ids, err := e.store.MatchIDs(ctx, id, maxCandidates+1)
	if err != nil {
		return "", fmt.Errorf("resolve id %s: %w", id, err)
	}
	switch {
	case len(ids) == 0:
		return id, nil
	case len(ids) == 1 || ids[0] == id:
		return ids[0], nil
	}
	more := ""
	if len(ids) > maxCandidates {
		ids, more = ids[:maxCandidates], ", …"
	}
	return "", fmt.Errorf("%w: id prefix %s is ambiguous: it starts %s%s", ErrInvalid, id, strings.Join(ids, ", "), more)
}

// callerID checks an id a caller gave and resolves it if it is a prefix.
func (e *Engine) callerID(ctx context.Context, id string) (string, error) {
	if err := checkName("id", id); err != nil {
		return "", err
	}
	return e.resolveID(ctx, id)
}

// resolveIDs resolves every id of a list in place.
func (e *Engine) resolveIDs(ctx context.Context, ids []string) error {
	for i, id := range ids {
		full, err := e.resolveID(ctx, id)
		if err != nil {
			return err
		}
		ids[i] = full
	}
	return nil
}

// fillShortIDs sets ShortID on each job: the shortest prefix of its id, at
// least MinIDPrefix long, that no other stored job's id starts with now.
func (e *Engine) fillShortIDs(ctx context.Context, jobs []*Job) error {
	if len(jobs) == 0 {
		return nil
	}
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	adj, err := e.store.AdjacentIDs(ctx, ids)
	if err != nil {
		return err
	}
	for i, j := range jobs {
		n := max(MinIDPrefix, commonPrefix(j.ID, adj[i][0])+1, commonPrefix(j.ID, adj[i][1])+1)
		j.ShortID = j.ID[:min(n, len(j.ID))]
	}
	return nil
}

func commonPrefix(a, b string) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// idEncoding is base32 in Crockford's alphabet, lower case: no i, l, o or
// u, so an id read aloud or copied by hand survives.
var idEncoding = base32.NewEncoding("0123456789abcdefghjkmnpqrstvwxyz").WithPadding(base32.NoPadding)

// FormatID writes the 16 bytes of an id (48 bits of milliseconds, 80
// random bits) as stq writes every job id; tools that make ids outside the
// engine (history loaders, benchmarks) use it so theirs look the same.
func FormatID(b [16]byte) string { return idEncoding.EncodeToString(b[:]) }

// newID returns a 26-character id that sorts by creation time to the
// millisecond: 48 bits of milliseconds, then 80 random bits. The random
// part is fresh for every id, not counted up within a millisecond, so jobs
// enqueued together differ early in their ids: the short unique prefixes
// that tables show and people type stay about ten characters long even
// for a batch (see fillShortIDs). Two ids of one millisecond collide with
// odds of 2^-80.
func (e *Engine) newID(now time.Time) string {
	var b [16]byte
	ms := uint64(now.UnixMilli())
	b[0], b[1], b[2], b[3], b[4], b[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	_, _ = rand.Read(b[6:])
	return idEncoding.EncodeToString(b[:])
}

func newInstanceID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return idEncoding.EncodeToString(b[:])
}
