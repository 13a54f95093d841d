package e2e

// Fault class 7 of docs/RELIABILITY.md: a connection flood past the limit, and slowloris.

import (
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// heldConn is a raw connection that never authenticates.
type heldConn struct {
	conn   net.Conn
	dialed time.Time
}

// firstLine waits up to d for one line from the server. timedOut means the
// server said nothing (the connection is still open and waiting for auth).
func (h *heldConn) firstLine(d time.Duration) (line []byte, timedOut bool, err error) {
	_ = h.conn.SetReadDeadline(time.Now().Add(d))
	var buf []byte
	one := make([]byte, 1)
	for {
		n, err := h.conn.Read(one)
		if n == 1 {
			if one[0] == '\n' {
				return buf, false, nil
			}
			buf = append(buf, one[0])
			continue
		}
		if err != nil {
			if isTimeout(err) && len(buf) == 0 {
				return nil, true, nil
			}
			return buf, false, err
		}
	}
}

func TestReliabilityConnectionFloodAndSlowloris(t *testing.T) {
	// Not parallel: it times idle connections against the 5s auth timeout.
	e := newEnv(t)
	const limit, flood = 8, 20
	e.configure(fmt.Sprintf("[daemon]\nmax_connections = %d\n", limit))
	e.startDaemon()

	dialAll := func() []*heldConn {
		conns := make([]*heldConn, 0, flood)
		for i := 0; i < flood; i++ {
			c, err := net.Dial("unix", e.path("stq.sock"))
			if err != nil {
				t.Fatalf("dial %d: %v", i, err)
			}
			t.Cleanup(func() { c.Close() })
			conns = append(conns, &heldConn{conn: c, dialed: time.Now()})
		}
		return conns
	}
	// classify reads every connection at once: the ones over the limit get
	// -32005 with a null id and are closed; the others hear nothing yet.
	classify := func(conns []*heldConn) (held []*heldConn, rejected int) {
		type res struct {
			h        *heldConn
			line     []byte
			timedOut bool
			closed   bool
			err      error
		}
		out := make([]res, len(conns))
		var wg sync.WaitGroup
		for i, h := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				line, timedOut, err := h.firstLine(2 * time.Second)
				r := res{h: h, line: line, timedOut: timedOut, err: err}
				if err == nil && !timedOut {
					_ = h.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
					_, rerr := h.conn.Read(make([]byte, 1))
					r.closed = rerr != nil && !isTimeout(rerr)
				}
				out[i] = r
			}()
		}
		wg.Wait()
		for i, r := range out {
			switch {
			case r.err != nil:
				t.Fatalf("connection %d: %v", i, r.err)
			case r.timedOut:
				held = append(held, r.h)
			default:
				var rep rpcReply
				if err := json.Unmarshal(r.line, &rep); err != nil || rep.Error == nil || rep.Error.Code != -32005 || string(rep.ID) != "null" || !strings.Contains(rep.Error.Message, "too many connections") {
					t.Fatalf("connection %d over the limit got %q, want -32005 \"too many connections\" with id null", i, r.line)
				}
				if !r.closed {
					t.Fatalf("connection %d over the limit was left open", i)
				}
				rejected++
			}
		}
		return held, rejected
	}
	closeAll := func(conns []*heldConn) {
		for _, h := range conns {
			h.conn.Close()
		}
	}

	// Phase 1: the flood; the client closes what it holds, and service
	// resumes. The CLI readiness probe's connection may take a moment to be
	// reaped, so a first round with fewer than the limit held is retried.
	var held []*heldConn
	var rejected int
	waitFor(t, fmt.Sprintf("exactly %d of %d connections to be held", limit, flood), 30*time.Second, func() bool {
		conns := dialAll()
		held, rejected = classify(conns)
		if len(held) > limit {
			t.Fatalf("%d connections held, over max_connections = %d", len(held), limit)
		}
		if len(held) < limit {
			closeAll(conns)
			time.Sleep(200 * time.Millisecond)
			return false
		}
		return true
	})
	if rejected != flood-limit {
		t.Fatalf("%d rejected, want %d", rejected, flood-limit)
	}
	r := e.run("stats")
	if r.code == 0 || !strings.Contains(r.stderr, "too many connections") {
		t.Fatalf("stq stats with the limit reached: exit %d, %q; want a clear refusal", r.code, r.stderr)
	}
	closeAll(held)
	waitFor(t, "an authenticated client to be served after the flood closed", 10*time.Second, func() bool {
		return e.run("stats").code == 0
	})

	// Phase 2: slowloris. Hold the limit with connections that never
	// authenticate (half of them trickle a byte every 300ms); the server
	// must drop each about 5s after accepting it, without the client
	// doing anything, and then serve again.
	conns := dialAll()
	waitFor(t, "the limit to be held again", 30*time.Second, func() bool {
		held, rejected = classify(conns)
		if len(held) < limit {
			closeAll(conns)
			time.Sleep(200 * time.Millisecond)
			conns = dialAll()
			return false
		}
		return true
	})
	stopTrickle := make(chan struct{})
	var trickle sync.WaitGroup
	for i, h := range held {
		if i%2 == 1 {
			continue
		}
		trickle.Add(1)
		go func() {
			defer trickle.Done()
			partial := []byte(`{"jsonrpc":"2.0","id":1,"method":"auth.v1","params":{"token":"`)
			for j := 0; ; j++ {
				select {
				case <-stopTrickle:
					return
				case <-time.After(300 * time.Millisecond):
				}
				if _, err := h.conn.Write(partial[j%len(partial) : j%len(partial)+1]); err != nil {
					return
				}
			}
		}()
	}
	var lifetimes []time.Duration
	for i, h := range held {
		line, timedOut, err := h.firstLine(20 * time.Second)
		life := time.Since(h.dialed)
		lifetimes = append(lifetimes, life)
		var rep rpcReply
		if err != nil || timedOut || json.Unmarshal(line, &rep) != nil || rep.Error == nil || rep.Error.Code != -32000 || string(rep.ID) != "null" || !strings.Contains(rep.Error.Message, "within 5s") {
			t.Fatalf("idle connection %d: after %v got %q (timed out %v, err %v), want -32000 \"no auth.v1 request within 5s\"", i, life, line, timedOut, err)
		}
		if _, err := h.conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Fatalf("idle connection %d still open after the auth timeout", i)
		}
		if life < 4*time.Second {
			t.Errorf("idle connection %d closed after %v, before the 5s auth timeout", i, life)
		}
	}
	close(stopTrickle)
	trickle.Wait()
	waitFor(t, "an authenticated client to be served after the slowloris connections were dropped", 10*time.Second, func() bool {
		return e.run("stats").code == 0
	})
	sort.Slice(lifetimes, func(a, b int) bool { return lifetimes[a] < lifetimes[b] })
	report(t, "max_connections = %d: of %d raw connections %d were held and %d got -32005 and were closed; `stq stats` was refused clearly while full and served once they closed; %d idle/trickling unauthenticated connections were dropped by the server after %v to %v, after which clients were served again",
		limit, flood, limit, flood-limit, len(held), lifetimes[0].Round(10*time.Millisecond), lifetimes[len(lifetimes)-1].Round(10*time.Millisecond))
}
