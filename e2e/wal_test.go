package e2e

// Fault class 5 of docs/RELIABILITY.md: WAL growth behind an outside reader.

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stq/engine"

	"github.com/ncruces/go-sqlite3"
)

func TestReliabilityWALShrinksAfterAReaderLetsGo(t *testing.T) {
	// Not parallel: it times the WAL's shrinking after a burst.
	const walBound = 8 << 20 // bytes: what a burst may leave behind for good
	jobs := scaled(1200, 5000)
	settle := scaled(5*time.Second, 30*time.Second)
	e := newEnv(t)
	e.startDaemon("--workers", "4")
	wal := e.path("stq.db-wal")

	// An outside reader holds a snapshot: no checkpoint can pass it, so
	// the WAL must grow while it is open.
	db, err := sqlite3.OpenFlags(e.path("stq.db"), sqlite3.OPEN_READONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.BusyTimeout(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := db.Exec("BEGIN"); err != nil {
		t.Fatal(err)
	}
	stmt, _, err := db.Prepare("SELECT count(*) FROM jobs")
	if err != nil {
		t.Fatal(err)
	}
	if !stmt.Step() {
		t.Fatalf("read: %v", stmt.Err())
	}
	before := stmt.ColumnInt64(0)
	stmt.Close()

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
		errs errLog
		next atomic.Int64
	)
	start := time.Now()
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := e.dial()
			if err != nil {
				errs.add("dial: %v", err)
				return
			}
			defer cl.Close()
			for next.Add(1) <= int64(jobs) {
				id, err := enqueueRPC(cl, engine.EnqueueRequest{Type: "noop"})
				if err != nil {
					errs.add("enqueue: %v", err)
					return
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if errs.n != 0 {
		t.Fatalf("%d enqueue errors: %q", errs.n, errs.samples)
	}
	c := e.mustDial()
	waitAll(t, c, ids, 3*time.Minute)
	burst := time.Since(start)
	peak := fileSize(wal)

	// The snapshot still shows the world before the burst.
	stmt, _, err = db.Prepare("SELECT count(*) FROM jobs")
	if err != nil {
		t.Fatal(err)
	}
	if !stmt.Step() || stmt.ColumnInt64(0) != before {
		t.Fatalf("the reader's snapshot moved: %d jobs, was %d (%v)", stmt.ColumnInt64(0), before, stmt.Err())
	}
	stmt.Close()
	if err := db.Exec("COMMIT"); err != nil {
		t.Fatal(err)
	}

	// A light load keeps the writer committing, which is what gives SQLite
	// its chances to checkpoint and restart the WAL.
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl, err := e.dial()
		if err != nil {
			errs.add("dial: %v", err)
			return
		}
		defer cl.Close()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			if _, err := enqueueRPC(cl, engine.EnqueueRequest{Type: "noop"}); err != nil {
				errs.add("enqueue: %v", err)
				return
			}
		}
	}()
	released := time.Now()
	size, low, high := peak, peak, peak
	for time.Since(released) < settle {
		time.Sleep(100 * time.Millisecond)
		size = fileSize(wal)
		low, high = min(low, size), max(high, size)
		if size <= walBound {
			break
		}
	}
	took := time.Since(released)
	close(stop)
	wg.Wait()
	if errs.n != 0 {
		t.Errorf("%d enqueue errors under light load: %q", errs.n, errs.samples)
	}
	report(t, "%d noop jobs enqueued and run in %v behind an open read transaction: WAL peaked at %.1f MiB (database %.1f MiB); after the reader let go, with one enqueue every 50ms, the WAL was %.1f MiB after %v (range %.1f-%.1f MiB; bound %.0f MiB)",
		jobs, burst.Round(100*time.Millisecond), mb(peak), mb(fileSize(e.path("stq.db"))), mb(size), took.Round(100*time.Millisecond), mb(low), mb(high), mb(walBound))
	if peak <= walBound {
		t.Fatalf("the WAL only grew to %.1f MiB: the burst is too small to test shrinking under %.0f MiB", mb(peak), mb(walBound))
	}
	// Checkpoints must resume once the reader is gone: a WAL still growing
	// under a light load is checkpoint starvation.
	if high > peak+(1<<20) {
		t.Errorf("the WAL kept growing after the reader let go: %.1f MiB, peak under the reader %.1f MiB", mb(high), mb(peak))
	}
	if size > walBound && !t.Failed() {
		knownIssue(t, knownIssueWALLeftLarge, "the WAL stayed at %.1f MiB (peak %.1f MiB) for %v after the reader let go, over the %.0f MiB bound: the store truncates the WAL only down to journal_size_limit = 64 MiB, so a burst leaves up to 64 MiB behind for good",
			mb(size), mb(peak), settle, mb(walBound))
	}
}
