package engine

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"
)

func TestCheckTime(t *testing.T) {
	t.Parallel()
	ok := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name     string
		t        time.Time
		required bool
		invalid  bool
	}{
		{"a time in range passes", ok, true, false},
		{"the zero time passes where optional", time.Time{}, false, false},
		{"the zero time fails where required", time.Time{}, true, true},
		{"a time before 1678 fails", time.Date(1600, 1, 1, 0, 0, 0, 0, time.UTC), false, true},
		{"a time after 2262 fails", time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC), false, true},
		{"the last representable nanosecond passes", maxTime, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := CheckTime("at", tc.t, tc.required)
			if got := errors.Is(err, ErrInvalid); got != tc.invalid || (err != nil) != tc.invalid {
				t.Fatalf("CheckTime(%v, %v) = %v, want invalid %v", tc.t, tc.required, err, tc.invalid)
			}
		})
	}
}

func TestCompletionCheck(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		c       Completion
		invalid bool
	}{
		{"a failure with its time passes", Completion{State: StateFailed, Outcome: OutcomeFailed, FinishedAt: now}, false},
		{"a retry with its run_at passes", Completion{State: StateQueued, Outcome: OutcomeFailed, FinishedAt: now, RunAt: now}, false},
		{"a retry without run_at fails", Completion{State: StateQueued, Outcome: OutcomeFailed, FinishedAt: now}, true},
		{"no finished_at fails", Completion{State: StateDone, Outcome: OutcomeSucceeded}, true},
		{"no outcome fails", Completion{State: StateDone, FinishedAt: now}, true},
		{"the running outcome fails", Completion{State: StateDone, Outcome: OutcomeRunning, FinishedAt: now}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.c.Check(); errors.Is(err, ErrInvalid) != tc.invalid || (err != nil) != tc.invalid {
				t.Fatalf("Check() = %v, want invalid %v", err, tc.invalid)
			}
		})
	}
}

func TestCompletionTarget(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		c           Completion
		gen, maxGen int64
		want        State
		wantErr     string
	}{
		{"done clears the reason", Completion{State: StateDone, Reason: "x"}, 1, 1, StateDone, ""},
		{"a failure keeps its reason", Completion{State: StateFailed, Reason: "exit 1"}, 1, 2, StateFailed, "exit 1"},
		{"a retry of the newest generation queues", Completion{State: StateQueued, Reason: "exit 1"}, 2, 2, StateQueued, "exit 1"},
		{"a retry without a key queues", Completion{State: StateQueued}, 1, 0, StateQueued, ""},
		{"a retry behind a newer generation is superseded", Completion{State: StateQueued, Reason: "exit 1"}, 1, 3, StateSuperseded,
			"superseded by generation 3 before its retry (last attempt: exit 1)"},
		{"a superseded retry without a reason says only why", Completion{State: StateQueued}, 1, 3, StateSuperseded,
			"superseded by generation 3 before its retry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, errText := tc.c.Target(tc.gen, tc.maxGen)
			if got != tc.want || errText != tc.wantErr {
				t.Fatalf("Target(%d, %d) = %s %q, want %s %q", tc.gen, tc.maxGen, got, errText, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCheckRetryable(t *testing.T) {
	t.Parallel()
	for _, st := range States {
		err := CheckRetryable(st)
		want := st == StateFailed || st == StateCancelled || st == StateExpired
		if (err == nil) != want {
			t.Errorf("CheckRetryable(%s) = %v, want retryable %v", st, err, want)
		}
		if err != nil && !errors.Is(err, ErrInvalidTransition) {
			t.Errorf("CheckRetryable(%s) = %v, want ErrInvalidTransition", st, err)
		}
	}
}

func TestClaimRequestOwn(t *testing.T) {
	t.Parallel()
	limits, quota := map[string]int{"a": 1}, map[string]int{"b": 2}
	r := ClaimRequest{Now: time.Unix(1, 0), QueueLimits: limits, Quota: quota}
	if err := r.Own(); err != nil {
		t.Fatal(err)
	}
	limits["a"], quota["b"] = 9, 9
	if r.QueueLimits["a"] != 1 || r.Quota["b"] != 2 {
		t.Fatalf("request shares the caller's maps: %v %v", r.QueueLimits, r.Quota)
	}
	if err := (&ClaimRequest{}).Own(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("Own() without Now = %v, want ErrInvalid", err)
	}
}

func TestJobCheckNew(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		j       Job
		invalid bool
	}{
		{"a job with id and times passes", Job{ID: "j1", CreatedAt: now, RunAt: now}, false},
		{"no id fails", Job{CreatedAt: now, RunAt: now}, true},
		{"a time out of range fails", Job{ID: "j1", CreatedAt: now, RunAt: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}, true},
		{"no created_at fails", Job{ID: "j1", RunAt: now}, true},
		{"no run_at fails", Job{ID: "j1", CreatedAt: now}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.j.CheckNew(); errors.Is(err, ErrInvalid) != tc.invalid || (err != nil) != tc.invalid {
				t.Fatalf("CheckNew() = %v, want invalid %v", err, tc.invalid)
			}
		})
	}
}

func TestNoJobIsInvalid(t *testing.T) {
	t.Parallel()
	var j *Job
	if err := j.CheckNew(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("nil job: CheckNew() = %v, want ErrInvalid", err)
	}
}

func TestEnqueueBatchCheck(t *testing.T) {
	t.Parallel()
	two := []*Job{{ID: "a"}, {ID: "b"}}
	for _, tc := range []struct {
		name    string
		b       EnqueueBatch
		invalid bool
	}{
		{"no flags passes", EnqueueBatch{Jobs: two}, false},
		{"a flag a job passes", EnqueueBatch{Jobs: two, ExplicitGen: []bool{true, false}}, false},
		{"fewer flags than jobs fails", EnqueueBatch{Jobs: two, ExplicitGen: []bool{true}}, true},
		{"an empty, non-nil flag list fails", EnqueueBatch{Jobs: two, ExplicitGen: []bool{}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if err := tc.b.Check(); errors.Is(err, ErrInvalid) != tc.invalid || (err != nil) != tc.invalid {
				t.Fatalf("Check() = %v, want invalid %v", err, tc.invalid)
			}
		})
	}
}

func TestListFilterPageSize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		f       ListFilter
		want    int
		invalid bool
	}{
		{"no limit gets the default", ListFilter{}, DefaultListLimit, false},
		{"a negative limit gets the default", ListFilter{Limit: -1}, DefaultListLimit, false},
		{"a limit is kept", ListFilter{Limit: 7, States: []State{StateDone}}, 7, false},
		{"an unknown state fails", ListFilter{States: []State{StateDone, "NOPE"}}, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := tc.f.PageSize()
			if got != tc.want || errors.Is(err, ErrInvalid) != tc.invalid || (err != nil) != tc.invalid {
				t.Fatalf("PageSize() = %d, %v; want %d, invalid %v", got, err, tc.want, tc.invalid)
			}
		})
	}
}

func TestDependencyError(t *testing.T) {
	t.Parallel()
	if got, want := DependencyError("j1", StateFailed), "dependency j1 ended FAILED"; got != want {
		t.Fatalf("DependencyError = %q, want %q", got, want)
	}
}

func TestJobStored(t *testing.T) {
	t.Parallel()
	loc := time.FixedZone("X", 3600)
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, loc)
	def := &Job{ID: "j1", Queue: "q", Command: []string{"true"}, Env: map[string]string{"A": "1"},
		After: []string{"j0"}, CreatedAt: created, RunAt: created}
	got := def.Stored(json.RawMessage(`{}`), 4, StateQueued, "")
	if got.Generation != 4 || got.State != StateQueued || got.FinishedAt != nil || got.Attempts == nil {
		t.Fatalf("queued job stored as %+v", got)
	}
	if got.CreatedAt.Location() != time.UTC || !got.CreatedAt.Equal(created) {
		t.Fatalf("CreatedAt = %v, want %v in UTC", got.CreatedAt, created)
	}
	def.Command[0], def.Env["A"], def.After[0] = "x", "x", "x"
	if got.Command[0] != "true" || got.Env["A"] != "1" || got.After[0] != "j0" {
		t.Fatalf("stored job shares the definition's slices or maps: %+v", got)
	}
	ended := def.Stored(nil, 1, StateCancelled, "dependency j0 ended FAILED")
	if ended.FinishedAt == nil || !ended.FinishedAt.Equal(created) || ended.Error != "dependency j0 ended FAILED" {
		t.Fatalf("cancelled on arrival: FinishedAt %v, Error %q", ended.FinishedAt, ended.Error)
	}
	if none := (&Job{ID: "j2", After: []string{}}).Stored(nil, 1, StateQueued, ""); none.After != nil {
		t.Fatalf("no dependencies stored as %#v, want nil", none.After)
	}
}

func TestLogDropNote(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		dropped, maxBytes int64
		want              string
	}{
		{1, 0, "1 line dropped"},
		{2, 0, "2 lines dropped"},
		{3, 100, "3 lines dropped: output over the 100-byte log limit"},
	} {
		if got := LogDropNote(tc.dropped, tc.maxBytes); got != tc.want {
			t.Errorf("LogDropNote(%d, %d) = %q, want %q", tc.dropped, tc.maxBytes, got, tc.want)
		}
		if got, want := LogDropNoteCost(tc.dropped, tc.maxBytes), int64(len(tc.want))+LogLineOverhead; got != want {
			t.Errorf("LogDropNoteCost(%d, %d) = %d, want %d", tc.dropped, tc.maxBytes, got, want)
		}
	}
}

func TestFreshLogLines(t *testing.T) {
	t.Parallel()
	l := func(seq int64, text string) LogLine { return LogLine{Seq: seq, Text: text} }
	for _, tc := range []struct {
		name       string
		lines      []LogLine
		last       int64
		want       []LogLine
		wantGapCut int64
	}{
		{"lines at or below last are left out", []LogLine{l(1, "a"), l(2, "b"), l(3, "c")}, 2, []LogLine{l(3, "c")}, 0},
		{"nothing new gives nothing", []LogLine{l(1, "a")}, 1, nil, 0},
		{"lines come back sorted", []LogLine{l(3, "c"), l(1, "a"), l(2, "b")}, 0, []LogLine{l(1, "a"), l(2, "b"), l(3, "c")}, 0},
		{"a seq given twice is kept the first time", []LogLine{l(2, "x"), l(1, "a"), l(2, "y")}, 0, []LogLine{l(1, "a"), l(2, "x")}, 0},
		{"a gap cuts up to the line before the first new one", []LogLine{l(7, "g")}, 2, []LogLine{l(7, "g")}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, gapCut := FreshLogLines(slices.Clone(tc.lines), tc.last)
			if !slices.Equal(got, tc.want) || gapCut != tc.wantGapCut {
				t.Fatalf("FreshLogLines(%v, %d) = %v, %d; want %v, %d", tc.lines, tc.last, got, gapCut, tc.want, tc.wantGapCut)
			}
		})
	}
}

func TestLogOver(t *testing.T) {
	t.Parallel()
	note := LogDropNoteCost(1, 1000)
	for _, tc := range []struct {
		name                     string
		total, dropped, maxBytes int64
		want                     bool
	}{
		{"no bound is never over", 1 << 40, 5, 0, false},
		{"output that fits is not over", 1000, 0, 1000, false},
		{"output past the bound is over", 1001, 0, 1000, true},
		{"the note's room counts once lines were dropped", 1000 - note + 1, 1, 1000, true},
		{"output and note that fit are not over", 1000 - note, 1, 1000, false},
	} {
		if got := LogOver(tc.total, tc.dropped, tc.maxBytes); got != tc.want {
			t.Errorf("%s: LogOver(%d, %d, %d) = %v, want %v", tc.name, tc.total, tc.dropped, tc.maxBytes, got, tc.want)
		}
	}
}

func TestPruneRequestCheck(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name    string
		req     PruneRequest
		none    bool
		invalid bool
	}{
		{"an age limit", PruneRequest{Before: at}, false, false},
		{"a count limit", PruneRequest{Keep: 10}, false, false},
		{"neither asks for nothing", PruneRequest{}, true, false},
		{"a negative keep", PruneRequest{Keep: -1, Before: at}, false, true},
		{"a negative limit", PruneRequest{Limit: -1, Keep: 1}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			none, err := tc.req.Check()
			if none != tc.none || errors.Is(err, ErrInvalid) != tc.invalid {
				t.Fatalf("Check() = %v, %v; want none %v, invalid %v", none, err, tc.none, tc.invalid)
			}
		})
	}
}
