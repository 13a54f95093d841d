package engine

import (
	"context"
	"fmt"
	"strings"
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
