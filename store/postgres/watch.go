package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"stq/engine"
)

// Notices travel by LISTEN/NOTIFY on the channel "stq_<schema>", so
// installations sharing a database do not wake each other.
//
// They are sent after the change commits, not inside its transaction: a
// transaction that has run NOTIFY takes a database-wide lock at commit and
// holds it through its WAL flush, so every enqueue that notified would wait
// for every other one's fsync (16 concurrent enqueuers fell from about
// 1,600 to 360 jobs/s). Instead the store's notifier goroutine sends what
// has accumulated since its last send in one short transaction that does
// not wait for its flush (a lost notice costs a poll interval, nothing
// else): under load one NOTIFY carries many changes, idle it goes out
// within a round trip of the commit (see notifyGap). A crash between a
// commit and its notice loses the notice; the watchers' polling covers it.

// notice is the wire form of an engine.Notice (NOTIFY payloads are text,
// at most 8,000 bytes).
type notice struct {
	Kind   engine.NoticeKind `json:"k"`
	Queue  string            `json:"q,omitempty"`
	ID     string            `json:"id,omitempty"`
	Origin string            `json:"o"`
	// Due is engine.Notice.Due in Unix nanoseconds, 0 for none. A daemon
	// of an older version ignores it and wakes as before.
	Due int64 `json:"d,omitempty"`
}

// notifyGap is the least time between two sends of the notifier. Each
// send is a transaction on the server, and one per group commit of
// enqueues cost the server about as much as the inserts it announced: 16
// clients enqueuing through one daemon went from about 3,600 to 4,800
// jobs/s with the gap. A notice that finds the notifier idle for longer
// than the gap still goes out at once; under load one waits at most this
// long for the next send.
const notifyGap = 2 * time.Millisecond

// maxPayload keeps a notice under PostgreSQL's 8,000-byte limit; a longer
// one is sent without its queue and id, which reads as "any queue".
const maxPayload = 7900

// notifier collects the notices of committed changes for runNotifier.
type notifier struct {
	mu sync.Mutex
	// pending maps each notice, its Due cleared, to the earliest Due of
	// its merged copies (zero: now), so that an enqueue of many jobs
	// due at different times still sends one notice per queue.
	pending map[engine.Notice]time.Time
	signal  chan struct{} // capacity 1: "pending is not empty"
}

func newNotifier() *notifier {
	return &notifier{pending: map[engine.Notice]time.Time{}, signal: make(chan struct{}, 1)}
}

// announce queues notices of a change that has committed. It never
// blocks: identical notices merge until the notifier sends them.
func (s *Store) announce(ns ...engine.Notice) {
	if len(ns) == 0 {
		return
	}
	n := s.notes
	n.mu.Lock()
	for _, x := range ns {
		due := x.Due
		x.Due = time.Time{}
		if prev, ok := n.pending[x]; ok {
			due = earliestDue(prev, due)
		}
		n.pending[x] = due
	}
	n.mu.Unlock()
	select {
	case n.signal <- struct{}{}:
	default:
	}
}

// runNotifier sends the queued notices until Close. Owned by the Store:
// Close stops it and waits for it.
func (s *Store) runNotifier(ctx context.Context) {
	defer close(s.notifierEnd)
	gap := time.NewTimer(notifyGap)
	defer gap.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.notes.signal:
		}
		s.notes.mu.Lock()
		batch := make([]engine.Notice, 0, len(s.notes.pending))
		for x, due := range s.notes.pending {
			x.Due = due
			batch = append(batch, x)
		}
		clear(s.notes.pending)
		s.notes.mu.Unlock()
		// A failed send is dropped: the watchers' polling is the net.
		_ = s.send(ctx, batch)
		// Under load a send would follow every commit; the gap lets the
		// notices of the next ones merge into one.
		gap.Reset(notifyGap)
		select {
		case <-ctx.Done():
			return
		case <-gap.C:
		}
	}
}

// send NOTIFYs the notices in one transaction that does not wait for its
// WAL flush.
func (s *Store) send(ctx context.Context, ns []engine.Notice) error {
	payloads := make([]string, 0, len(ns))
	for _, x := range ns {
		w := notice{Kind: x.Kind, Queue: x.Queue, ID: x.ID, Origin: s.origin}
		if !x.Due.IsZero() {
			w.Due = x.Due.UnixNano()
		}
		p, err := json.Marshal(w)
		if err != nil {
			return err
		}
		if len(p) > maxPayload {
			if p, err = json.Marshal(notice{Kind: x.Kind, Origin: s.origin}); err != nil {
				return err
			}
		}
		payloads = append(payloads, string(p))
	}
	// One round trip: the four statements go as one pipeline.
	b := &pgx.Batch{}
	b.Queue(`BEGIN`)
	b.Queue(`SET LOCAL synchronous_commit = off`)
	b.Queue(`SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, s.channel(), payloads)
	b.Queue(`COMMIT`)
	return s.pool.SendBatch(ctx, b).Close()
}

// channel is the schema's notification channel.
func (s *Store) channel() string { return "stq_" + s.schema }

// Announce sends notices to every watcher of the schema now, its own
// included (see engine.Watcher).
func (s *Store) Announce(ctx context.Context, ns ...engine.Notice) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	if err := s.send(ctx, ns); err != nil {
		return fmt.Errorf("announce: %w", err)
	}
	return nil
}

// Watch listens on the schema's channel on a connection of its own (a
// pooled one would be handed to other work between notifications) and
// calls wake for each notice until ctx ends or the connection fails (see
// engine.Watcher). The caller owns the goroutine it runs on, and calls
// Watch again after a failure, after a pause of its choosing.
func (s *Store) Watch(ctx context.Context, wake func(engine.Notice)) error {
	if s.closed.Load() {
		return engine.ErrClosed
	}
	// Close ends the watch too: the store owns the connection's lifetime.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.closing, cancel)
	defer stop()
	conn, err := pgx.ConnectConfig(ctx, s.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("watch: connect: %w", err)
	}
	defer func() {
		closeCtx, done := context.WithTimeout(context.Background(), time.Second)
		defer done()
		_ = conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{s.channel()}.Sanitize()); err != nil {
		return fmt.Errorf("watch: listen: %w", err)
	}
	wake(engine.Notice{Kind: engine.NoticeResync})
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("watch: %w", err)
		}
		var x notice
		if err := json.Unmarshal([]byte(n.Payload), &x); err != nil {
			// Not ours to read (someone NOTIFYing by hand): wake as for a
			// resync rather than drop what may be a real change.
			wake(engine.Notice{Kind: engine.NoticeResync})
			continue
		}
		wn := engine.Notice{Kind: x.Kind, Queue: x.Queue, ID: x.ID, Self: x.Origin == s.origin}
		if x.Due != 0 {
			wn.Due = fromNanos(x.Due)
		}
		wake(wn)
	}
}

// newOrigin names a store instance in its notices.
func newOrigin() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// earliestDue merges two notices' Due: the earlier, and zero ("now") if
// either is.
func earliestDue(a, b time.Time) time.Time {
	if a.IsZero() || b.IsZero() {
		return time.Time{}
	}
	if b.Before(a) {
		return b
	}
	return a
}
