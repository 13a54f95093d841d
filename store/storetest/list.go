package storetest

import (
	"errors"
	"fmt"
	"slices"

	"stq/engine"
)

func testList(f *fx) {
	// Jobs in enqueue order; List returns newest first.
	a1 := f.add("qa", "build", "x")
	a2 := f.add("qa", "build", "y")
	a3 := f.add("qa", "test", "x")
	b1 := f.add("qb", "build", "x")
	b2 := f.add("qb", "build", "")
	f.claimOne(t0)                  // a1 runs
	a4 := f.add("qa", "build", "x") // waits behind a1
	rev := func(js ...*engine.Job) []string { return ids(js) }
	for _, tc := range []struct {
		name   string
		filter engine.ListFilter
		want   []string
	}{
		{"everything", engine.ListFilter{}, rev(a4, b2, b1, a3, a2, a1)},
		{"by queue", engine.ListFilter{Queue: "qa"}, rev(a4, a3, a2, a1)},
		{"by type", engine.ListFilter{Type: "build"}, rev(a4, b2, b1, a2, a1)},
		{"by subject", engine.ListFilter{Subject: "x"}, rev(a4, b1, a3, a1)},
		{"by full key", engine.ListFilter{Queue: "qa", Type: "build", Subject: "x"}, rev(a4, a1)},
		{"by state", engine.ListFilter{States: []engine.State{engine.StateRunning}}, rev(a1)},
		{"by states", engine.ListFilter{States: []engine.State{engine.StateRunning, engine.StateQueued}, Queue: "qa", Type: "build"}, rev(a4, a2, a1)},
		{"by key and state", engine.ListFilter{Queue: "qa", Type: "build", Subject: "x", States: []engine.State{engine.StateQueued}}, rev(a4)},
		{"with a limit", engine.ListFilter{Limit: 2}, rev(a4, b2)},
		{"matching nothing", engine.ListFilter{Queue: "none"}, nil},
	} {
		got := f.list(tc.filter)
		if !slices.Equal(ids(got), tc.want) {
			f.Errorf("%s: got %v, want %v", tc.name, ids(got), tc.want)
		}
	}
	for i := range 105 {
		f.add("bulk", "t", fmt.Sprint(i))
	}
	if n := len(f.list(engine.ListFilter{})); n != 100 {
		f.Errorf("default limit returned %d jobs, want 100", n)
	}
}

func testGetUnknown(f *fx) {
	_, err := f.s.Get(f.ctx, "no-such-job")
	if !errors.Is(err, engine.ErrNotFound) {
		f.Fatalf("get of an unknown id: %v, want ErrNotFound", err)
	}
}

func testListPaging(f *fx) {
	var all []*engine.Job
	for i := range 25 {
		all = append(all, f.add("q", "t", fmt.Sprint(i%7)))
	}
	slices.Reverse(all) // newest first
	var got []string
	filter := engine.ListFilter{Queue: "q", Limit: 10}
	for pages := 0; ; pages++ {
		if pages > 5 {
			f.Fatalf("paging does not end: %v", got)
		}
		page, err := f.s.List(f.ctx, filter)
		if err != nil {
			f.Fatalf("list: %v", err)
		}
		got = append(got, ids(page.Jobs)...)
		if pages == 0 {
			// Jobs arriving between pages are newer: they belong before
			// the first page and must not shift the later ones.
			f.add("q", "t", "late")
		}
		if page.Next == "" {
			if len(page.Jobs) != 5 {
				f.Errorf("last page has %d jobs, want 5", len(page.Jobs))
			}
			break
		}
		if len(page.Jobs) != 10 {
			f.Errorf("a page before the last has %d jobs, want 10", len(page.Jobs))
		}
		filter.Cursor = page.Next
	}
	if !slices.Equal(got, ids(all)) {
		f.Errorf("pages gave %v, want %v", got, ids(all))
	}
	// A page that ends exactly at the last match says there is no more.
	page, err := f.s.List(f.ctx, engine.ListFilter{Queue: "q", Limit: 26})
	if err != nil || len(page.Jobs) != 26 || page.Next != "" {
		f.Errorf("exact page: %d jobs, next %q, err %v; want 26 jobs and no next", len(page.Jobs), page.Next, err)
	}
	// Filters and cursors combine.
	page, err = f.s.List(f.ctx, engine.ListFilter{Queue: "q", Type: "t", Subject: "3", Limit: 2})
	if err != nil || len(page.Jobs) != 2 || page.Next == "" {
		f.Fatalf("key page: %d jobs, next %q, err %v", len(page.Jobs), page.Next, err)
	}
	rest, err := f.s.List(f.ctx, engine.ListFilter{Queue: "q", Type: "t", Subject: "3", Limit: 10, Cursor: page.Next})
	if err != nil || len(rest.Jobs) != 2 || rest.Next != "" {
		f.Errorf("key rest: %d jobs, next %q, err %v; want the 2 older jobs of subject 3", len(rest.Jobs), rest.Next, err)
	}
	for _, c := range []string{"garbage", "not a cursor"} {
		if _, err := f.s.List(f.ctx, engine.ListFilter{Cursor: c}); !errors.Is(err, engine.ErrInvalid) {
			f.Errorf("cursor %q: got %v, want ErrInvalid", c, err)
		}
	}
}

func testMatchAndAdjacentIDs(f *fx) {
	for _, id := range []string{"abc1", "abc2", "abd1", "b"} {
		j := f.job("q", "t", "")
		j.ID = id
		f.enqueue(j, false)
	}
	for _, tc := range []struct {
		prefix string
		limit  int
		want   []string
	}{
		{"abc", 10, []string{"abc1", "abc2"}},
		{"ab", 10, []string{"abc1", "abc2", "abd1"}},
		{"ab", 2, []string{"abc1", "abc2"}},
		{"abc2", 10, []string{"abc2"}},
		{"abc20", 10, nil},
		{"c", 10, nil},
	} {
		got, err := f.s.MatchIDs(f.ctx, tc.prefix, tc.limit)
		if err != nil || !slices.Equal(got, tc.want) {
			f.Errorf("MatchIDs(%q, %d) = %v, %v; want %v", tc.prefix, tc.limit, got, err, tc.want)
		}
	}
	adj, err := f.s.AdjacentIDs(f.ctx, []string{"abc1", "abc2", "b", "abc15"})
	if err != nil {
		f.Fatal(err)
	}
	want := [][2]string{{"", "abc2"}, {"abc1", "abd1"}, {"abd1", ""}, {"abc1", "abc2"}}
	if !slices.Equal(adj, want) {
		f.Errorf("AdjacentIDs = %v, want %v", adj, want)
	}
}
