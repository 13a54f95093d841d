package storetest

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"stq/engine"
)

func testClaimOrder(f *fx) {
	prios := []int{0, 5, 0, 10, 5, -3, 10}
	var all []*engine.Job
	for _, p := range prios {
		j := f.job("q", "t", "")
		j.Priority = p
		f.enqueue(j, false)
		all = append(all, j)
	}
	want := []string{all[3].ID, all[6].ID, all[1].ID, all[4].ID, all[0].ID, all[2].ID, all[5].ID}
	var got []string
	// Claim in small batches: order holds across claims, not just within.
	for _, n := range []int{2, 3, 10} {
		got = append(got, ids(f.claim(t0, n))...)
	}
	if !slices.Equal(got, want) {
		f.Fatalf("claim order %v, want %v", got, want)
	}
}

func testClaimFields(f *fx) {
	j := f.job("q", "t", "s")
	j.Priority = 3
	f.enqueue(j, false)
	now := t0.Add(5 * time.Second)
	got, err := f.s.Claim(f.ctx, engine.ClaimRequest{Owner: "host-a/42", Now: now, Limit: 5})
	if err != nil || len(got) != 1 {
		f.Fatalf("claim: %v %v", ids(got), err)
	}
	want := *j
	want.Generation, want.State, want.Attempt, want.Owner = 1, engine.StateRunning, 1, "host-a/42"
	want.StartedAt = &now
	want.Attempts = []engine.Attempt{{N: 1, StartedAt: now, Outcome: engine.OutcomeRunning}}
	f.wantJob("claimed job", got[0], &want)
	f.wantJob("claimed job read back", f.get(j.ID), &want)
	if again := f.claim(now, 5); len(again) != 0 {
		f.Fatalf("a second claim returned %v", ids(again))
	}
}

func testRunningBlocksKey(f *fx) {
	g1 := f.add("q", "t", "s")
	run := f.claimOne(t0)
	g2 := f.add("q", "t", "s")
	f.wantState(g1.ID, engine.StateRunning)
	if got := f.claim(t0.Add(time.Minute), 10); len(got) != 0 {
		f.Fatalf("claim while generation 1 runs got %v", ids(got))
	}
	f.complete(succeeded(run, t0.Add(time.Minute)))
	if got := f.claimOne(t0.Add(time.Minute)); got.ID != g2.ID {
		f.Fatalf("claim after completion got %s, want %s", got.ID, g2.ID)
	}
}

func testNewerPending(f *fx) {
	// Generation 1 runs and fails while 2 waits: the retry of 1 must never
	// run again, only 2.
	g1 := f.add("q", "t", "s")
	run := f.claimOne(t0)
	g2 := f.add("q", "t", "s")
	f.complete(retry(run, t0.Add(time.Second), t0.Add(time.Second)))
	got := f.claim(t0.Add(time.Hour), 10)
	if !slices.Equal(ids(got), []string{g2.ID}) {
		f.Fatalf("claim got %v, want only %s", ids(got), g2.ID)
	}
	f.wantState(g1.ID, engine.StateSuperseded)
	// An explicit old generation arriving later never runs either.
	old := f.job("q", "t", "s")
	old.Generation = 1
	f.enqueue(old, true)
	f.complete(succeeded(got[0], t0.Add(time.Hour)))
	if got := f.claim(t0.Add(2*time.Hour), 10); len(got) != 0 {
		f.Fatalf("claim got %v, want nothing", ids(got))
	}
}

func testClaimKeys(f *fx) {
	blocked := f.add("q", "t", "b")
	f.claimOne(t0)               // b generation 1 runs
	next := f.add("q", "t", "b") // b generation 2 waits for it
	a := f.add("q", "t", "a")    // free key
	c := f.add("q", "u", "b")    // same subject, other type: other key
	plain := f.add("q", "t", "") // no key
	got := ids(f.claim(t0, 10))
	want := []string{a.ID, c.ID, plain.ID}
	if !slices.Equal(got, want) {
		f.Fatalf("claim got %v, want %v (key of %s busy with %s)", got, want, next.ID, blocked.ID)
	}
}

func testClaimLimit(f *fx) {
	for range 5 {
		f.add("q", "t", "")
	}
	if got := f.claim(t0, 0); len(got) != 0 {
		f.Fatalf("limit 0 claimed %v", ids(got))
	}
	for _, tc := range []struct{ limit, want int }{{2, 2}, {2, 2}, {2, 1}, {2, 0}} {
		if got := f.claim(t0, tc.limit); len(got) != tc.want {
			f.Fatalf("claim limit %d got %d jobs, want %d", tc.limit, len(got), tc.want)
		}
	}
}

func testConcurrentClaim(f *fx) {
	const jobs, workers = 500, 8
	for i := range jobs {
		subject := ""
		if i%3 == 0 {
			subject = fmt.Sprintf("s%d", i) // one job per key
		}
		f.add("q", "t", subject)
	}
	var mu sync.Mutex
	seen := make(map[string]int)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				got, err := f.s.Claim(f.ctx, engine.ClaimRequest{Owner: fmt.Sprintf("w%d", w), Now: t0, Limit: 1 + w%4})
				if err != nil {
					f.Errorf("worker %d: claim: %v", w, err)
					return
				}
				if len(got) == 0 {
					return
				}
				mu.Lock()
				for _, j := range got {
					seen[j.ID]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(seen) != jobs {
		f.Errorf("%d distinct jobs claimed, want %d", len(seen), jobs)
	}
	for id, n := range seen {
		if n != 1 {
			f.Errorf("job %s claimed %d times", id, n)
		}
	}
}
