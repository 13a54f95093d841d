// Package storetest is a conformance suite for engine.Store implementations:
// every store (the embedded SQLite one, a shared PostgreSQL one) must pass
// the same rules for supersede, claim, completion, logs and counters.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"stq/engine"
)

// t0 is the suite's clock. Its nanoseconds check that times round-trip at
// full precision.
var t0 = time.Date(2031, 3, 4, 5, 6, 7, 123456789, time.UTC)

// Run runs the suite. open must return a new, empty store for each call and
// close it when the test ends (t.Cleanup).
func Run(t *testing.T, open func(t *testing.T) engine.Store) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(&fx{T: t, s: open(t), ctx: context.Background()})
		})
	}
}

var cases = []struct {
	name string
	fn   func(*fx)
}{
	{"enqueue stores every field and get reads them back", testRoundTrip},
	{"enqueue of an id that exists fails", testDuplicateID},
	{"generations count up per key and every key part counts", testAutoGeneration},
	{"an explicit generation at or below the highest seen is superseded on arrival", testExplicitOld},
	{"a newer generation supersedes the older queued jobs and reports their ids", testSupersede},
	{"jobs without a subject are never superseded", testNoSubject},
	{"claim takes higher priority first and then enqueue order", testClaimOrder},
	{"claim starts the attempt and records it", testClaimFields},
	{"claim leaves a job with a future run_at until it is due", testFutureRunAt},
	{"scheduled jobs become claimable exactly when due, in priority order with jobs that were already due", testScheduledBecomeDue},
	{"a job whose ttl passed is never claimed and expire_due expires it", testTTL},
	{"a retried job no longer expires because it has started", testTTLAfterStart},
	{"a running job blocks its key until it completes", testRunningBlocksKey},
	{"a job with a newer generation pending is never claimed", testNewerPending},
	{"claim takes one job per key and skips blocked keys", testClaimKeys},
	{"claim respects the limit", testClaimLimit},
	{"concurrent claimers get every job exactly once", testConcurrentClaim},
	{"concurrent enqueuers get unique consecutive generations per key", testConcurrentEnqueue},
	{"complete moves a running job to the state asked for", testComplete},
	{"complete with refund gives the attempt back", testRefund},
	{"complete of a stale or unknown attempt fails", testCompleteStale},
	{"a retry becomes superseded when a newer generation exists", testRetrySuperseded},
	{"cancel_queued cancels only queued jobs", testCancelQueued},
	{"mark_started records the process in the attempt", testMarkStarted},
	{"next_wake reports the earliest future run_at and the earliest expiry", testNextWake},
	{"stats counts follow every transition exactly", testStats},
	{"append_log keeps the newest lines within max bytes and marks the log truncated", testAppendLogTrim},
	{"append_log counts lines missing before a batch as dropped, with every older line, in one exact note", testAppendLogGap},
	{"log_seq_from_end finds the n-th newest line of a seq range", testLogSeqFromEnd},
	{"logs pages through lines after a sequence number", testLogsPaging},
	{"a job remembers its highest log sequence so the next attempt continues it", testLogSeq},
	{"list filters by state queue type and subject newest first up to the limit", testList},
	{"get of an unknown id is not found", testGetUnknown},
	{"the start conditions and dependencies round-trip through every read and claim", testQueueFieldsRoundTrip},
	{"enqueue after an unknown job fails and stores nothing", testAfterUnknown},
	{"a job enqueued after a job that already ended unsuccessfully is stored cancelled", testAfterAlreadyFailed},
	{"a dependent is not claimed until every dependency is done and then it is", testDependentWaits},
	{"a failed or cancelled job cancels its queued dependents transitively and reports them", testCascadeComplete},
	{"cancel_queued cancels the dependents too and reports them after the jobs it was given", testCascadeCancelQueued},
	{"expire_due cancels the dependents of the jobs it expires", testCascadeExpire},
	{"a superseded job cancels its dependents whether an enqueue or its own retry supersedes it", testCascadeSuperseded},
	{"a dependency pruned after it succeeded counts as satisfied", testPrunedDependency},
	{"claim skips a paused queue and takes its jobs again once it is resumed", testPause},
	{"jobs that wait for idleness or ac power are claimed only when the machine is idle or on ac", testIdleAndPower},
	{"queue limits count the running jobs of every owner", testQueueLimits},
	{"quota caps the jobs one claim takes per queue and default quota covers the unlisted ones", testQuota},
	{"jobs a claim filter skips never block the jobs behind them", testSkippedDoNotBlock},
	{"retry requeues a failed cancelled or expired job as a new attempt series", testRetry},
	{"attempt numbers in the history go on across retries and repeat only for a refund", testRetryNumbering},
	{"retry refuses other states unknown ids and outdated generations", testRetryRefused},
	{"retry revives no dependents and refuses a job whose dependency ended unsuccessfully", testRetryDependencies},
	{"prune deletes finished jobs older than the cutoff with their history and counts stay exact", testPruneByAge},
	{"prune keeps the newest finished jobs and deletes at most its limit per call", testPruneByCount},
	{"prune keeps each key's highest generation so numbering continues from it", testPruneKeepsGeneration},
	{"checkpoint succeeds on a store in use", testCheckpoint},
	{"enqueue many stores jobs in order in one step and the last generation of a subject wins", testEnqueueMany},
	{"an atomic enqueue many with a bad entry stores nothing and names the entry", testEnqueueManyAtomic},
	{"a non-atomic enqueue many stores the good entries and reports each bad one at its index", testEnqueueManyEach},
	{"list pages with a cursor and never repeats or skips a job when jobs arrive between pages", testListPaging},
	{"ids match by prefix in id order and each id knows its neighbours", testMatchAndAdjacentIDs},
	{"complete and claim records starts then completes then claims in one step and a bad entry fails alone", testCompleteAndClaim},
	{"a base environment reads back as its digest and count and every claim gets its variables", testBaseEnvRoundTrip},
	{"identical base environments are stored once and go when the last job carrying them is pruned", testBaseEnvStoredOnce},
}

// fx is one test's store and helpers. Helpers fail the test on error.
type fx struct {
	*testing.T
	s   engine.Store
	ctx context.Context
	n   int
}

// job returns a new job definition, due at t0, with a fresh id.
func (f *fx) job(queue, typ, subject string) *engine.Job {
	f.n++
	return &engine.Job{
		ID: fmt.Sprintf("job-%04d", f.n), Queue: queue, Type: typ, Subject: subject,
		MaxAttempts: 3, CreatedAt: t0, RunAt: t0,
		Deadline: engine.Duration(time.Minute), Backoff: engine.Duration(time.Second),
	}
}

func (f *fx) enqueue(j *engine.Job, explicitGen bool) engine.EnqueueResult {
	f.Helper()
	res, err := f.s.Enqueue(f.ctx, j, explicitGen)
	if err != nil {
		f.Fatalf("enqueue %s: %v", j.ID, err)
	}
	if res.Job == nil {
		f.Fatalf("enqueue %s: no job in the result", j.ID)
	}
	return res
}

// add enqueues a job of the key with automatic generation.
func (f *fx) add(queue, typ, subject string) *engine.Job {
	f.Helper()
	return f.enqueue(f.job(queue, typ, subject), false).Job
}

func (f *fx) claim(now time.Time, limit int) []*engine.Job {
	f.Helper()
	jobs, err := f.s.Claim(f.ctx, engine.ClaimRequest{Owner: "host/1", Now: now, Limit: limit})
	if err != nil {
		f.Fatalf("claim: %v", err)
	}
	return jobs
}

func (f *fx) claimOne(now time.Time) *engine.Job {
	f.Helper()
	jobs := f.claim(now, 1)
	if len(jobs) != 1 {
		f.Fatalf("claim at %s: got %v, want one job", now, ids(jobs))
	}
	return jobs[0]
}

func (f *fx) complete(c engine.Completion) *engine.Job {
	f.Helper()
	res, err := f.s.Complete(f.ctx, c)
	if err != nil {
		f.Fatalf("complete %s attempt %d: %v", c.ID, c.Attempt, err)
	}
	return res.Job
}

func (f *fx) get(id string) *engine.Job {
	f.Helper()
	j, err := f.s.Get(f.ctx, id)
	if err != nil {
		f.Fatalf("get %s: %v", id, err)
	}
	return j
}

func (f *fx) state(id string) engine.State {
	f.Helper()
	return f.get(id).State
}

func (f *fx) wantState(id string, want engine.State) {
	f.Helper()
	if got := f.state(id); got != want {
		f.Fatalf("job %s is %s, want %s", id, got, want)
	}
}

func (f *fx) list(filter engine.ListFilter) []*engine.Job {
	f.Helper()
	page, err := f.s.List(f.ctx, filter)
	if err != nil {
		f.Fatalf("list %+v: %v", filter, err)
	}
	return page.Jobs
}

func succeeded(j *engine.Job, at time.Time) engine.Completion {
	zero := 0
	return engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateDone,
		Outcome: engine.OutcomeSucceeded, ExitCode: &zero, FinishedAt: at}
}

func retry(j *engine.Job, at, runAt time.Time) engine.Completion {
	one := 1
	return engine.Completion{ID: j.ID, Attempt: j.Attempt, State: engine.StateQueued,
		Outcome: engine.OutcomeFailed, Reason: "exit status 1", ExitCode: &one,
		FinishedAt: at, RunAt: runAt}
}

func ids(jobs []*engine.Job) []string {
	out := make([]string, len(jobs))
	for i, j := range jobs {
		out[i] = j.ID
	}
	return out
}

func timeEq(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Equal(*b)
}

func intEq(a, b *int) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return *a == *b
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "nil"
	}
	return t.Format(time.RFC3339Nano)
}

func fmtInt(p *int) string {
	if p == nil {
		return "nil"
	}
	return fmt.Sprint(*p)
}

// diffJob lists the fields in which got differs from want. Attempts are
// compared only when want has them (non-nil). It is long because Job is
// wide: one plain comparison per field, in the struct's order, so that a
// field added to Job and missed here shows in review, and each field's
// equality (times by instant, pointers by value) is read where it is used.
func diffJob(got, want *engine.Job) []string {
	var d []string
	add := func(field string, g, w any) { d = append(d, fmt.Sprintf("%s = %v, want %v", field, g, w)) }
	if got.ID != want.ID {
		add("ID", got.ID, want.ID)
	}
	if got.Queue != want.Queue || got.Type != want.Type || got.Subject != want.Subject {
		add("key", got.Key(), want.Key())
	}
	if got.Generation != want.Generation {
		add("Generation", got.Generation, want.Generation)
	}
	if got.Priority != want.Priority {
		add("Priority", got.Priority, want.Priority)
	}
	if got.State != want.State {
		add("State", got.State, want.State)
	}
	if got.Attempt != want.Attempt {
		add("Attempt", got.Attempt, want.Attempt)
	}
	if got.MaxAttempts != want.MaxAttempts {
		add("MaxAttempts", got.MaxAttempts, want.MaxAttempts)
	}
	if string(got.Payload) != string(want.Payload) {
		add("Payload", string(got.Payload), string(want.Payload))
	}
	if !slices.Equal(got.Command, want.Command) {
		add("Command", got.Command, want.Command)
	}
	if got.Cwd != want.Cwd {
		add("Cwd", got.Cwd, want.Cwd)
	}
	if !maps.Equal(got.Env, want.Env) {
		add("Env", got.Env, want.Env)
	}
	if !baseEnvEq(got.BaseEnv, want.BaseEnv) {
		add("BaseEnv", got.BaseEnv, want.BaseEnv)
	}
	if !got.RunAt.Equal(want.RunAt) {
		add("RunAt", got.RunAt, want.RunAt)
	}
	if got.Deadline != want.Deadline || got.TTL != want.TTL || got.Backoff != want.Backoff {
		add("Deadline/TTL/Backoff", []engine.Duration{got.Deadline, got.TTL, got.Backoff}, []engine.Duration{want.Deadline, want.TTL, want.Backoff})
	}
	if !got.CreatedAt.Equal(want.CreatedAt) {
		add("CreatedAt", got.CreatedAt, want.CreatedAt)
	}
	if !timeEq(got.StartedAt, want.StartedAt) {
		add("StartedAt", fmtTime(got.StartedAt), fmtTime(want.StartedAt))
	}
	if !timeEq(got.FinishedAt, want.FinishedAt) {
		add("FinishedAt", fmtTime(got.FinishedAt), fmtTime(want.FinishedAt))
	}
	if !intEq(got.ExitCode, want.ExitCode) {
		add("ExitCode", fmtInt(got.ExitCode), fmtInt(want.ExitCode))
	}
	if got.Error != want.Error {
		add("Error", got.Error, want.Error)
	}
	if got.Owner != want.Owner {
		add("Owner", got.Owner, want.Owner)
	}
	if got.LogTruncated != want.LogTruncated {
		add("LogTruncated", got.LogTruncated, want.LogTruncated)
	}
	if got.WaitIdle != want.WaitIdle || got.RequireCharging != want.RequireCharging || got.Replace != want.Replace {
		add("WaitIdle/RequireCharging/Replace", []bool{got.WaitIdle, got.RequireCharging, got.Replace}, []bool{want.WaitIdle, want.RequireCharging, want.Replace})
	}
	if got.Debounce != want.Debounce {
		add("Debounce", got.Debounce, want.Debounce)
	}
	if !slices.Equal(got.After, want.After) {
		add("After", got.After, want.After)
	}
	if got.Waiting != "" {
		add("Waiting", got.Waiting, "(never stored)")
	}
	if want.Attempts != nil {
		if got.Attempts == nil {
			add("Attempts", "nil", "[]")
		}
		if len(got.Attempts) != len(want.Attempts) {
			add("len(Attempts)", len(got.Attempts), len(want.Attempts))
		} else {
			for i := range want.Attempts {
				if a := diffAttempt(got.Attempts[i], want.Attempts[i]); a != "" {
					add(fmt.Sprintf("Attempts[%d]", i), a, "")
				}
			}
		}
	}
	return d
}

func diffAttempt(g, w engine.Attempt) string {
	if g.N != w.N || !g.StartedAt.Equal(w.StartedAt) || !timeEq(g.FinishedAt, w.FinishedAt) ||
		g.Outcome != w.Outcome || g.Reason != w.Reason || !intEq(g.ExitCode, w.ExitCode) ||
		g.PID != w.PID || g.PIDStart != w.PIDStart {
		return fmt.Sprintf("{N:%d Started:%s Finished:%s Outcome:%s Reason:%q Exit:%s PID:%d PIDStart:%d} differs from {N:%d Started:%s Finished:%s Outcome:%s Reason:%q Exit:%s PID:%d PIDStart:%d}",
			g.N, g.StartedAt.Format(time.RFC3339Nano), fmtTime(g.FinishedAt), g.Outcome, g.Reason, fmtInt(g.ExitCode), g.PID, g.PIDStart,
			w.N, w.StartedAt.Format(time.RFC3339Nano), fmtTime(w.FinishedAt), w.Outcome, w.Reason, fmtInt(w.ExitCode), w.PID, w.PIDStart)
	}
	return ""
}

func (f *fx) wantJob(what string, got, want *engine.Job) {
	f.Helper()
	if d := diffJob(got, want); len(d) > 0 {
		f.Fatalf("%s:\n\t%s", what, strings.Join(d, "\n\t"))
	}
}

func ptr[T any](v T) *T { return &v }

func testRoundTrip(f *fx) {
	full := &engine.Job{
		ID: "full", Queue: "builds", Type: "compile", Subject: "repo/main",
		Priority: 7, MaxAttempts: 5,
		Payload: json.RawMessage(`{"ref":"abc123","flags":["-v","-race"],"n":1.5,"uni":"héllo ✓"}`),
		Command: []string{"/usr/bin/make", "all", "with space", "quote\"d", ""},
		Cwd:     "/srv/repo",
		Env:     map[string]string{"GOFLAGS": "-mod=mod", "EMPTY": "", "UNI": "ünï"},
		RunAt:   t0.Add(90 * time.Second), CreatedAt: t0,
		Deadline: engine.Duration(45 * time.Minute), TTL: engine.Duration(36 * time.Hour),
		Backoff:  engine.Duration(1500 * time.Millisecond),
		WaitIdle: true, RequireCharging: true, Replace: true,
		Debounce: engine.Duration(2500 * time.Millisecond),
	}
	bare := &engine.Job{ID: "bare", Queue: "q", Type: "t", CreatedAt: t0, RunAt: t0}
	for _, j := range []*engine.Job{full, bare} {
		in := *j
		res := f.enqueue(j, false)
		want := in
		want.State = engine.StateQueued
		want.Attempts = []engine.Attempt{}
		if j.Subject != "" {
			want.Generation = 1
		}
		f.wantJob("enqueue result of "+j.ID, res.Job, &want)
		if res.Job.Attempts == nil {
			f.Errorf("enqueue result of %s has nil Attempts, want an empty slice", j.ID)
		}
		if len(res.Superseded) != 0 {
			f.Errorf("enqueue of %s superseded %v", j.ID, res.Superseded)
		}
		f.wantJob("get of "+j.ID, f.get(j.ID), &want)
	}
	// The run-time fields of the job given to Enqueue are not taken over.
	dirty := f.job("q", "t", "")
	dirty.State, dirty.Attempt, dirty.Error, dirty.Owner = engine.StateDone, 2, "old", "someone"
	dirty.StartedAt, dirty.FinishedAt, dirty.ExitCode = ptr(t0), ptr(t0), ptr(3)
	dirty.Waiting = "idle" // computed on reads, never stored
	got := f.enqueue(dirty, false).Job
	want := *dirty
	want.State, want.Attempt, want.Error, want.Owner, want.Waiting = engine.StateQueued, 0, "", "", ""
	want.StartedAt, want.FinishedAt, want.ExitCode = nil, nil, nil
	want.Attempts = []engine.Attempt{}
	f.wantJob("job enqueued with run-time fields set", f.get(dirty.ID), &want)
	f.wantJob("enqueue result with run-time fields set", got, &want)
}

func testDuplicateID(f *fx) {
	j := f.job("q", "t", "")
	f.enqueue(j, false)
	again := *j
	if _, err := f.s.Enqueue(f.ctx, &again, false); err == nil {
		f.Fatal("second enqueue of the same id succeeded")
	}
	if n := len(f.list(engine.ListFilter{})); n != 1 {
		f.Fatalf("store holds %d jobs, want 1", n)
	}
}

func testAutoGeneration(f *fx) {
	steps := []struct {
		queue, typ, subject string
		want                int64
	}{
		{"q", "t", "a", 1},
		{"q", "t", "a", 2},
		{"q", "t", "b", 1}, // other subject
		{"q", "u", "a", 1}, // other type
		{"r", "t", "a", 1}, // other queue
		{"q", "t", "a", 3},
		{"q", "t", "b", 2},
		{"q", "t", "", 0}, // no subject: no generation
		{"q", "t", "", 0},
	}
	for i, st := range steps {
		got := f.add(st.queue, st.typ, st.subject)
		if got.Generation != st.want {
			f.Fatalf("step %d: job of key %q/%q/%q got generation %d, want %d", i, st.queue, st.typ, st.subject, got.Generation, st.want)
		}
		if g := f.get(got.ID).Generation; g != st.want {
			f.Fatalf("step %d: stored generation %d, want %d", i, g, st.want)
		}
	}
	// Automatic numbering continues above an explicit generation.
	j := f.job("q", "t", "a")
	j.Generation = 10
	f.enqueue(j, true)
	if g := f.add("q", "t", "a").Generation; g != 11 {
		f.Fatalf("generation after explicit 10 = %d, want 11", g)
	}
}

func testExplicitOld(f *fx) {
	first := f.job("q", "t", "s")
	first.Generation = 5
	if st := f.enqueue(first, true).Job.State; st != engine.StateQueued {
		f.Fatalf("explicit generation 5 on a new key stored %s, want QUEUED", st)
	}
	for _, gen := range []int64{3, 5, 0} {
		j := f.job("q", "t", "s")
		j.Generation = gen
		at := t0.Add(time.Duration(gen) * time.Second)
		j.CreatedAt, j.RunAt = at, at
		res := f.enqueue(j, true)
		got := res.Job
		if got.State != engine.StateSuperseded || got.Generation != gen || got.Error == "" ||
			got.FinishedAt == nil || !got.FinishedAt.Equal(at) || len(res.Superseded) != 0 {
			f.Fatalf("explicit generation %d after 5: got state %s gen %d error %q finished %s superseded %v; want SUPERSEDED, an error, finished at creation",
				gen, got.State, got.Generation, got.Error, fmtTime(got.FinishedAt), res.Superseded)
		}
		stored := f.get(j.ID)
		f.wantJob("stored job superseded on arrival", stored, got)
	}
	f.wantState(first.ID, engine.StateQueued)
	if jobs := f.claim(t0.Add(time.Hour), 10); !slices.Equal(ids(jobs), []string{first.ID}) {
		f.Fatalf("claim got %v, want only %s", ids(jobs), first.ID)
	}
}

func testSupersede(f *fx) {
	g1 := f.add("q", "t", "s")
	other := f.add("q", "t", "other")
	later := t0.Add(time.Minute)
	j2 := f.job("q", "t", "s")
	j2.CreatedAt = later
	res := f.enqueue(j2, false)
	if res.Job.Generation != 2 || res.Job.State != engine.StateQueued {
		f.Fatalf("second job: generation %d state %s, want 2 QUEUED", res.Job.Generation, res.Job.State)
	}
	if !slices.Equal(res.Superseded, []string{g1.ID}) {
		f.Fatalf("superseded %v, want [%s]", res.Superseded, g1.ID)
	}
	old := f.get(g1.ID)
	if old.State != engine.StateSuperseded || old.FinishedAt == nil || !old.FinishedAt.Equal(later) || old.Error == "" {
		f.Fatalf("old job: state %s finished %s error %q, want SUPERSEDED at %s with an error", old.State, fmtTime(old.FinishedAt), old.Error, later)
	}
	f.wantState(other.ID, engine.StateQueued)

	// An explicit higher generation supersedes too.
	j9 := f.job("q", "t", "s")
	j9.Generation = 9
	res = f.enqueue(j9, true)
	if !slices.Equal(res.Superseded, []string{j2.ID}) || res.Job.Generation != 9 {
		f.Fatalf("explicit 9: superseded %v generation %d, want [%s] 9", res.Superseded, res.Job.Generation, j2.ID)
	}
	// A running older generation is left to finish.
	if got := f.claim(t0, 10); !slices.Equal(ids(got), []string{other.ID, j9.ID}) {
		f.Fatalf("claim got %v, want %s and %s", ids(got), other.ID, j9.ID)
	}
	res = f.enqueue(f.job("q", "t", "s"), false)
	if len(res.Superseded) != 0 || res.Job.Generation != 10 {
		f.Fatalf("enqueue while generation 9 runs: superseded %v generation %d, want none and 10", res.Superseded, res.Job.Generation)
	}
	f.wantState(j9.ID, engine.StateRunning)
}

func testNoSubject(f *fx) {
	var jobs []*engine.Job
	for range 3 {
		res := f.enqueue(f.job("q", "t", ""), false)
		if len(res.Superseded) != 0 || res.Job.Generation != 0 {
			f.Fatalf("subject-less enqueue: superseded %v generation %d", res.Superseded, res.Job.Generation)
		}
		jobs = append(jobs, res.Job)
	}
	for _, j := range jobs {
		f.wantState(j.ID, engine.StateQueued)
	}
	if got := f.claim(t0, 10); len(got) != 3 {
		f.Fatalf("claimed %v, want all three", ids(got))
	}
}

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

func testFutureRunAt(f *fx) {
	j := f.job("q", "t", "")
	j.RunAt = t0.Add(time.Minute)
	f.enqueue(j, false)
	for _, at := range []time.Time{t0, t0.Add(time.Minute - time.Nanosecond)} {
		if got := f.claim(at, 10); len(got) != 0 {
			f.Fatalf("claim at %s took %v, due at %s", at, ids(got), j.RunAt)
		}
	}
	if got := f.claimOne(t0.Add(time.Minute)); got.ID != j.ID {
		f.Fatalf("claim at run_at got %s", got.ID)
	}
}

func testScheduledBecomeDue(f *fx) {
	mk := func(prio int, runIn, ttl time.Duration) *engine.Job {
		j := f.job("q", "t", "")
		j.Priority, j.RunAt, j.TTL = prio, t0.Add(runIn), engine.Duration(ttl)
		f.enqueue(j, false)
		return j
	}
	wantClaim := func(now time.Time, limit int, want ...*engine.Job) {
		f.Helper()
		if got := f.claim(now, limit); !slices.Equal(ids(got), ids(want)) {
			f.Fatalf("claim at t0+%s limit %d got %v, want %v", now.Sub(t0), limit, ids(got), ids(want))
		}
	}
	wantWake := func(now, want time.Time) {
		f.Helper()
		w, err := f.s.NextWake(f.ctx, now)
		if err != nil {
			f.Fatalf("next wake: %v", err)
		}
		if !w.NextRunAt.Equal(want) {
			f.Fatalf("next run at t0+%s is %s, want %s", now.Sub(t0), w.NextRunAt, want)
		}
	}
	a := mk(0, 0, 0)
	b := mk(5, time.Minute, 0)
	c := mk(5, 0, 0)
	d := mk(0, time.Minute, 0)
	e := mk(10, 2*time.Minute, 0)
	mk(0, time.Minute, 30*time.Second) // expires before it is due: never claimed
	g := mk(0, 0, 0)

	wantWake(t0, t0.Add(time.Minute))
	wantClaim(t0, 1, c)
	// A nanosecond early the priority-5 job b is not claimable, so the
	// claim falls through to the priority-0 jobs that are due.
	wantClaim(t0.Add(time.Minute-time.Nanosecond), 1, a)
	// On time, b and d take their places in (priority, enqueue order) among
	// the jobs that were due all along: d was enqueued before g.
	wantClaim(t0.Add(time.Minute), 2, b, d)
	wantWake(t0.Add(time.Minute), t0.Add(2*time.Minute))
	wantClaim(t0.Add(time.Minute), 10, g)
	wantClaim(t0.Add(2*time.Minute-time.Nanosecond), 10)
	wantClaim(t0.Add(2*time.Minute), 10, e)

	// A claim that finds two jobs due but may take one leaves the other
	// queued; if the clock then goes back, that job is not due any more:
	// it is not claimed before its run_at and still wakes the scheduler.
	h := mk(0, 3*time.Minute, 0)
	i := mk(0, 3*time.Minute, 0)
	wantClaim(t0.Add(3*time.Minute), 1, h)
	wantClaim(t0.Add(2*time.Minute), 10)
	wantWake(t0.Add(2*time.Minute), i.RunAt)
	wantClaim(t0.Add(3*time.Minute), 10, i)

	// The same holds for a job enqueued with a created_at later than the
	// now of the calls that follow, and for a retry finished later than
	// that: due by the clock that stored them, not by the earlier one.
	late := f.job("q", "t", "")
	late.CreatedAt, late.RunAt = t0.Add(5*time.Minute), t0.Add(4*time.Minute)
	f.enqueue(late, false)
	wantWake(t0.Add(3*time.Minute), late.RunAt)
	wantClaim(t0.Add(4*time.Minute-time.Nanosecond), 10)
	run := f.claimOne(t0.Add(4 * time.Minute))
	f.complete(retry(run, t0.Add(6*time.Minute), t0.Add(5*time.Minute)))
	wantWake(t0.Add(4*time.Minute), t0.Add(5*time.Minute))
	wantClaim(t0.Add(5*time.Minute-time.Nanosecond), 10)
	if got := f.claimOne(t0.Add(5 * time.Minute)); got.ID != late.ID || got.Attempt != 2 {
		f.Fatalf("claim of the retry got %s attempt %d, want %s attempt 2", got.ID, got.Attempt, late.ID)
	}
}

func testTTL(f *fx) {
	j := f.job("q", "t", "s")
	j.TTL = engine.Duration(time.Minute)
	keep := f.job("q", "t", "keep")
	keep.TTL = engine.Duration(time.Hour)
	f.enqueue(j, false)
	f.enqueue(keep, false)
	if got := f.claim(t0.Add(time.Minute), 1); len(got) != 1 || got[0].ID != keep.ID {
		f.Fatalf("claim at expiry got %v, want only %s", ids(got), keep.ID)
	}
	exp, err := f.s.ExpireDue(f.ctx, t0.Add(time.Minute-time.Nanosecond))
	if err != nil || len(exp) != 0 {
		f.Fatalf("expire before the ttl: %v %v", ids(exp), err)
	}
	now := t0.Add(time.Minute)
	exp, err = f.s.ExpireDue(f.ctx, now)
	if err != nil || len(exp) != 1 || exp[0].ID != j.ID {
		f.Fatalf("expire at the ttl: %v %v, want [%s]", ids(exp), err, j.ID)
	}
	if e := exp[0]; e.State != engine.StateExpired || e.FinishedAt == nil || !e.FinishedAt.Equal(now) || e.Error == "" {
		f.Fatalf("expired job: state %s finished %s error %q", e.State, fmtTime(e.FinishedAt), e.Error)
	}
	f.wantJob("expired job read back", f.get(j.ID), exp[0])
	if exp, _ := f.s.ExpireDue(f.ctx, now.Add(time.Hour)); len(exp) != 0 {
		f.Fatalf("second expire returned %v", ids(exp))
	}
}

func testTTLAfterStart(f *fx) {
	j := f.job("q", "t", "")
	j.TTL = engine.Duration(time.Minute)
	f.enqueue(j, false)
	run := f.claimOne(t0)
	f.complete(retry(run, t0.Add(time.Second), t0.Add(2*time.Minute)))
	if exp, err := f.s.ExpireDue(f.ctx, t0.Add(time.Hour)); err != nil || len(exp) != 0 {
		f.Fatalf("expire of a retried job: %v %v", ids(exp), err)
	}
	if got := f.claimOne(t0.Add(time.Hour)); got.ID != j.ID || got.Attempt != 2 {
		f.Fatalf("claim got %s attempt %d", got.ID, got.Attempt)
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

func testConcurrentEnqueue(f *fx) {
	const goroutines, each, keys = 16, 50, 5
	type result struct {
		id         string
		key        int
		gen        int64
		superseded []string
	}
	results := make([][]result, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				k := (g + i) % keys
				j := &engine.Job{ID: fmt.Sprintf("g%02d-%03d", g, i), Queue: "q", Type: "t",
					Subject: fmt.Sprintf("key%d", k), MaxAttempts: 1, CreatedAt: t0, RunAt: t0}
				res, err := f.s.Enqueue(f.ctx, j, false)
				if err != nil {
					f.Errorf("enqueue %s: %v", j.ID, err)
					return
				}
				results[g] = append(results[g], result{j.ID, k, res.Job.Generation, res.Superseded})
			}
		})
	}
	wg.Wait()
	if f.Failed() {
		return
	}
	gens := make([][]int64, keys)
	top := make([]string, keys)
	supersededBy := make(map[string]string)
	for _, rs := range results {
		for _, r := range rs {
			gens[r.key] = append(gens[r.key], r.gen)
			if r.gen == int64(goroutines*each/keys) {
				top[r.key] = r.id
			}
			for _, id := range r.superseded {
				if prev, dup := supersededBy[id]; dup {
					f.Errorf("job %s superseded twice, by %s and %s", id, prev, r.id)
				}
				supersededBy[id] = r.id
			}
		}
	}
	for k := range keys {
		slices.Sort(gens[k])
		for i, g := range gens[k] {
			if g != int64(i+1) {
				f.Fatalf("key %d generations %v, want 1..%d each once", k, gens[k], len(gens[k]))
			}
		}
		queued := f.list(engine.ListFilter{Queue: "q", Type: "t", Subject: fmt.Sprintf("key%d", k),
			States: []engine.State{engine.StateQueued}, Limit: 1000})
		if len(queued) != 1 || queued[0].ID != top[k] {
			f.Errorf("key %d: queued %v, want only its highest generation %s", k, ids(queued), top[k])
		}
	}
	if want := goroutines*each - keys; len(supersededBy) != want {
		f.Errorf("%d jobs reported superseded, want %d", len(supersededBy), want)
	}
}

func testComplete(f *fx) {
	exit := func(v int) *int { return &v }
	at := t0.Add(time.Minute)
	for _, tc := range []struct {
		name       string
		c          engine.Completion
		wantState  engine.State
		wantError  string
		wantRunAt  time.Time
		wantFinish bool
	}{
		{"done clears the error", engine.Completion{State: engine.StateDone, Outcome: engine.OutcomeSucceeded, Reason: "ignored", ExitCode: exit(0)},
			engine.StateDone, "", t0, true},
		{"failed keeps the reason", engine.Completion{State: engine.StateFailed, Outcome: engine.OutcomeFailed, Reason: "exit status 100 (permanent failure)", ExitCode: exit(100)},
			engine.StateFailed, "exit status 100 (permanent failure)", t0, true},
		{"cancelled", engine.Completion{State: engine.StateCancelled, Outcome: engine.OutcomeCancelled, Reason: "cancelled"},
			engine.StateCancelled, "cancelled", t0, true},
		{"a retry is queued at run_at", engine.Completion{State: engine.StateQueued, Outcome: engine.OutcomeFailed, Reason: "killed by signal KILL", RunAt: at.Add(time.Hour)},
			engine.StateQueued, "killed by signal KILL", at.Add(time.Hour), false},
	} {
		j := f.add("q", "t", "")
		run := f.claimOne(t0)
		c := tc.c
		c.ID, c.Attempt, c.FinishedAt = run.ID, run.Attempt, at
		got := f.complete(c)
		want := *j
		want.State, want.Attempt, want.Owner, want.StartedAt = tc.wantState, 1, "host/1", ptr(t0)
		want.Error, want.ExitCode, want.RunAt = tc.wantError, c.ExitCode, tc.wantRunAt
		if tc.wantFinish {
			want.FinishedAt = &at
		}
		want.Attempts = []engine.Attempt{{N: 1, StartedAt: t0, FinishedAt: &at, Outcome: c.Outcome, Reason: c.Reason, ExitCode: c.ExitCode}}
		f.wantJob(tc.name+": completed job", got, &want)
		f.wantJob(tc.name+": completed job read back", f.get(j.ID), &want)
		if tc.wantState != engine.StateQueued {
			continue
		}
		if early := f.claim(tc.wantRunAt.Add(-time.Nanosecond), 10); len(early) != 0 {
			f.Fatalf("%s: claimed %v before run_at", tc.name, ids(early))
		}
		again := f.claimOne(tc.wantRunAt)
		if again.ID != j.ID || again.Attempt != 2 || len(again.Attempts) != 2 || again.Attempts[1].N != 2 || again.ExitCode != nil {
			f.Fatalf("%s: second claim got %s attempt %d attempts %d exit %s", tc.name, again.ID, again.Attempt, len(again.Attempts), fmtInt(again.ExitCode))
		}
		f.complete(succeeded(again, tc.wantRunAt))
	}
}

func testRefund(f *fx) {
	j := f.add("q", "t", "s")
	run := f.claimOne(t0)
	at := t0.Add(time.Second)
	got := f.complete(engine.Completion{ID: j.ID, Attempt: 1, State: engine.StateQueued,
		Outcome: engine.OutcomeInterrupted, Reason: "interrupted by daemon shutdown",
		FinishedAt: at, RunAt: at, Refund: true})
	if got.State != engine.StateQueued || got.Attempt != 0 {
		f.Fatalf("after refund: state %s attempt %d, want QUEUED 0", got.State, got.Attempt)
	}
	again := f.claimOne(at)
	if again.ID != run.ID || again.Attempt != 1 {
		f.Fatalf("claim after refund: %s attempt %d, want attempt 1", again.ID, again.Attempt)
	}
	if len(again.Attempts) != 2 || again.Attempts[0].Outcome != engine.OutcomeInterrupted ||
		again.Attempts[0].N != 1 || again.Attempts[1].N != 1 || again.Attempts[1].Outcome != engine.OutcomeRunning {
		f.Fatalf("attempt history after refund: %+v", again.Attempts)
	}
	// The repeated attempt number is the current one.
	if err := f.s.MarkStarted(f.ctx, j.ID, 1, 77, 1); err != nil {
		f.Fatalf("mark started after refund: %v", err)
	}
	done := f.complete(succeeded(again, at.Add(time.Second)))
	if a := done.Attempts; a[0].PID != 0 || a[1].PID != 77 || a[1].Outcome != engine.OutcomeSucceeded || a[0].Outcome != engine.OutcomeInterrupted {
		f.Fatalf("attempt history after completion: %+v", a)
	}
}

func testCompleteStale(f *fx) {
	f.add("q", "t", "")
	queued := f.add("q", "t", "")
	running := f.claimOne(t0) // the first job; the second stays queued
	at := t0.Add(time.Second)
	c := succeeded(running, at)
	wrong := c
	wrong.Attempt = 2
	notRunning := succeeded(queued, at)
	notRunning.Attempt = 0
	unknown := c
	unknown.ID = "no-such-job"
	for _, tc := range []struct {
		name string
		c    engine.Completion
		want error
	}{
		{"wrong attempt", wrong, engine.ErrStale},
		{"job still queued", notRunning, engine.ErrStale},
		{"unknown id", unknown, engine.ErrNotFound},
	} {
		if _, err := f.s.Complete(f.ctx, tc.c); !errors.Is(err, tc.want) {
			f.Errorf("%s: complete returned %v, want %v", tc.name, err, tc.want)
		}
	}
	f.wantState(running.ID, engine.StateRunning)
	f.wantState(queued.ID, engine.StateQueued)
	f.complete(c)
	if _, err := f.s.Complete(f.ctx, c); !errors.Is(err, engine.ErrStale) {
		f.Errorf("second completion returned %v, want ErrStale", err)
	}
	f.wantState(running.ID, engine.StateDone)
}

func testRetrySuperseded(f *fx) {
	g1 := f.add("q", "t", "s")
	run := f.claimOne(t0)
	g2 := f.add("q", "t", "s")
	at := t0.Add(time.Second)
	got := f.complete(retry(run, at, at.Add(time.Minute)))
	if got.State != engine.StateSuperseded || got.FinishedAt == nil || !got.FinishedAt.Equal(at) || got.Error == "" {
		f.Fatalf("retry of generation 1: state %s finished %s error %q, want SUPERSEDED at %s", got.State, fmtTime(got.FinishedAt), got.Error, at)
	}
	if len(got.Attempts) != 1 || got.Attempts[0].Outcome != engine.OutcomeFailed {
		f.Fatalf("attempts %+v", got.Attempts)
	}
	f.wantState(g1.ID, engine.StateSuperseded)
	if next := f.claimOne(at.Add(time.Hour)); next.ID != g2.ID {
		f.Fatalf("claim got %s, want %s", next.ID, g2.ID)
	}
	// With no newer generation a retry stays queued.
	g3 := f.add("q", "t", "solo")
	run = f.claimOne(at)
	if run.ID != g3.ID {
		f.Fatalf("claimed %s", run.ID)
	}
	if st := f.complete(retry(run, at, at)).State; st != engine.StateQueued {
		f.Fatalf("retry without a newer generation is %s", st)
	}
}

func testCancelQueued(f *fx) {
	running := f.add("q", "t", "")
	f.claimOne(t0)
	done := f.add("q", "t", "")
	f.complete(succeeded(f.claimOne(t0), t0))
	queued := f.add("q", "t", "s")
	queued2 := f.add("r", "t", "")
	now := t0.Add(time.Minute)
	got, err := f.s.CancelQueued(f.ctx, []string{running.ID, done.ID, "unknown", queued.ID, queued2.ID, queued.ID}, "cancelled by user", now)
	if err != nil {
		f.Fatalf("cancel: %v", err)
	}
	slices.SortFunc(got, func(a, b *engine.Job) int { return strings.Compare(a.ID, b.ID) })
	if !slices.Equal(ids(got), []string{queued.ID, queued2.ID}) {
		f.Fatalf("cancelled %v, want %s and %s", ids(got), queued.ID, queued2.ID)
	}
	for _, j := range got {
		if j.State != engine.StateCancelled || j.Error != "cancelled by user" || j.FinishedAt == nil || !j.FinishedAt.Equal(now) {
			f.Fatalf("cancelled job %s: state %s error %q finished %s", j.ID, j.State, j.Error, fmtTime(j.FinishedAt))
		}
		f.wantJob("cancelled job read back", f.get(j.ID), j)
	}
	f.wantState(running.ID, engine.StateRunning)
	f.wantState(done.ID, engine.StateDone)
	if got, err := f.s.CancelQueued(f.ctx, []string{queued.ID}, "again", now); err != nil || len(got) != 0 {
		f.Fatalf("second cancel: %v %v", ids(got), err)
	}
}

func testMarkStarted(f *fx) {
	j := f.add("q", "t", "")
	run := f.claimOne(t0)
	const pid, pidStart = 4242, int64(1700000000123)
	if err := f.s.MarkStarted(f.ctx, j.ID, run.Attempt, pid, pidStart); err != nil {
		f.Fatalf("mark started: %v", err)
	}
	check := func(what string, got *engine.Job) {
		f.Helper()
		if len(got.Attempts) != 1 || got.Attempts[0].PID != pid || got.Attempts[0].PIDStart != pidStart {
			f.Fatalf("%s: attempts %+v, want pid %d started %d", what, got.Attempts, pid, pidStart)
		}
	}
	check("get", f.get(j.ID))
	rs, err := f.s.Running(f.ctx)
	if err != nil || len(rs) != 1 {
		f.Fatalf("running: %v %v", ids(rs), err)
	}
	check("running", rs[0])
	if err := f.s.MarkStarted(f.ctx, j.ID, 2, 1, 1); !errors.Is(err, engine.ErrStale) {
		f.Errorf("wrong attempt: %v, want ErrStale", err)
	}
	if err := f.s.MarkStarted(f.ctx, "unknown", 1, 1, 1); !errors.Is(err, engine.ErrNotFound) {
		f.Errorf("unknown job: %v, want ErrNotFound", err)
	}
	f.complete(succeeded(run, t0))
	if err := f.s.MarkStarted(f.ctx, j.ID, 1, 1, 1); !errors.Is(err, engine.ErrStale) {
		f.Errorf("finished job: %v, want ErrStale", err)
	}
	check("get after completion", f.get(j.ID))
}

func testNextWake(f *fx) {
	wake := func(now time.Time) engine.Wake {
		f.Helper()
		w, err := f.s.NextWake(f.ctx, now)
		if err != nil {
			f.Fatalf("next wake: %v", err)
		}
		return w
	}
	if w := wake(t0); !w.NextRunAt.IsZero() || !w.NextExpiry.IsZero() {
		f.Fatalf("empty store: %+v, want zero times", w)
	}
	at := func(j *engine.Job, runIn, ttl time.Duration) *engine.Job {
		j.RunAt, j.TTL = t0.Add(runIn), engine.Duration(ttl)
		f.enqueue(j, false)
		return j
	}
	at(f.job("q", "t", ""), 0, 0)                     // due now: not a future wake
	at(f.job("q", "t", ""), 5*time.Minute, 0)         // later
	late := at(f.job("q", "t", ""), 2*time.Minute, 0) // earliest future run
	ttl := at(f.job("q", "t", ""), 10*time.Minute, 7*time.Minute)
	at(f.job("q", "t", ""), 10*time.Minute, 9*time.Minute)
	w := wake(t0)
	if !w.NextRunAt.Equal(late.RunAt) || !w.NextExpiry.Equal(t0.Add(7*time.Minute)) {
		f.Fatalf("wake %+v, want run %s expiry %s", w, late.RunAt, t0.Add(7*time.Minute))
	}
	// At exactly a run_at that job is due, not in the future.
	if w := wake(late.RunAt); !w.NextRunAt.Equal(t0.Add(5 * time.Minute)) {
		f.Fatalf("wake at %s: run %s, want %s", late.RunAt, w.NextRunAt, t0.Add(5*time.Minute))
	}
	if _, err := f.s.CancelQueued(f.ctx, []string{ttl.ID}, "x", t0); err != nil {
		f.Fatal(err)
	}
	if w := wake(t0); !w.NextExpiry.Equal(t0.Add(9 * time.Minute)) {
		f.Fatalf("expiry after cancel %s, want %s", w.NextExpiry, t0.Add(9*time.Minute))
	}
	if w := wake(t0.Add(time.Hour)); !w.NextRunAt.IsZero() {
		f.Fatalf("nothing is due after an hour, got %s", w.NextRunAt)
	}
}

// oracle counts jobs by queue and state by listing them all.
func (f *fx) oracle() map[string]map[engine.State]int64 {
	f.Helper()
	m := make(map[string]map[engine.State]int64)
	for _, j := range f.list(engine.ListFilter{Limit: 1 << 20}) {
		if m[j.Queue] == nil {
			m[j.Queue] = make(map[engine.State]int64)
		}
		m[j.Queue][j.State]++
	}
	return m
}

func (f *fx) wantStats(step string) {
	f.Helper()
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.Fatalf("%s: stats: %v", step, err)
	}
	want := f.oracle()
	if !maps.EqualFunc(st.Queues, want, maps.Equal) {
		f.Fatalf("%s: stats %v, want %v", step, st.Queues, want)
	}
}

func testStats(f *fx) {
	f.wantStats("empty")
	a1 := f.add("a", "t", "k")
	f.wantStats("enqueue")
	f.add("a", "t", "k") // supersedes a1
	f.wantStats("supersede")
	old := f.job("a", "t", "k")
	old.Generation = 1
	f.enqueue(old, true)
	f.wantStats("superseded on arrival")
	b := f.add("b", "t", "")
	run := f.claim(t0, 10)
	f.wantStats("claim")
	for _, j := range run {
		f.complete(retry(j, t0, t0))
	}
	f.wantStats("retry")
	run = f.claim(t0, 10)
	f.complete(succeeded(run[0], t0))
	f.complete(engine.Completion{ID: run[1].ID, Attempt: run[1].Attempt, State: engine.StateFailed, Outcome: engine.OutcomeFailed, Reason: "x", FinishedAt: t0})
	f.wantStats("done and failed")
	c := f.add("b", "t", "")
	f.enqueue(&engine.Job{ID: "exp", Queue: "c", Type: "t", CreatedAt: t0, RunAt: t0, TTL: engine.Duration(time.Second)}, false)
	if _, err := f.s.CancelQueued(f.ctx, []string{c.ID}, "x", t0); err != nil {
		f.Fatal(err)
	}
	f.wantStats("cancel")
	if _, err := f.s.ExpireDue(f.ctx, t0.Add(time.Second)); err != nil {
		f.Fatal(err)
	}
	f.wantStats("expire")
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.Fatal(err)
	}
	want := map[string]map[engine.State]int64{
		"a": {engine.StateSuperseded: 2, engine.StateDone: 1},
		"b": {engine.StateFailed: 1, engine.StateCancelled: 1},
		"c": {engine.StateExpired: 1},
	}
	if !maps.EqualFunc(st.Queues, want, maps.Equal) {
		f.Fatalf("final stats %v, want %v (jobs %s %s)", st.Queues, want, a1.ID, b.ID)
	}
}

func textBytes(lines []engine.LogLine) int64 {
	var n int64
	for _, l := range lines {
		n += int64(len(l.Text)) + engine.LogLineOverhead
	}
	return n
}

func testAppendLogTrim(f *fx) {
	j := f.add("q", "t", "")
	f.claimOne(t0)
	// Each line costs its text plus the overhead: room for four short
	// lines, or for two and the note a truncated log carries (its own text
	// plus the overhead).
	const o = engine.LogLineOverhead
	const maxBytes = 40 + 4*o
	var seq int64
	mk := func(texts ...string) []engine.LogLine {
		var out []engine.LogLine
		for _, s := range texts {
			seq++
			out = append(out, engine.LogLine{Seq: seq, Time: t0.Add(time.Duration(seq) * time.Millisecond), Attempt: 1, Stream: "stdout", Text: s})
		}
		return out
	}
	for _, step := range []struct {
		lines    []engine.LogLine
		wantSeqs []int64 // with the note's, first, once lines were dropped
		dropped  int     // the note's count; 0: no note, not truncated
	}{
		{mk("0123456789", "0123456789"), []int64{1, 2}, 0},
		{mk("0123456789", "01234567"), []int64{1, 2, 3, 4}, 0}, // 38 + 4o: fits
		// 40 + 5o: dropping line 1 is not enough once the note needs room.
		{mk("ab"), []int64{3, 4, 5}, 3},
		{mk("x"), []int64{4, 5, 6}, 4},
		{mk(strings.Repeat("y", 19)), []int64{5, 6, 7}, 5},
		{mk("ééééé", "0123456789"), []int64{7, 8, 9}, 7}, // é is two bytes
		{mk(strings.Repeat("z", 39)), []int64{8, 9, 10}, 8},
		{mk("", "", "", "", "", ""), []int64{14, 15, 16}, 14}, // empty lines count too
	} {
		if err := f.s.AppendLog(f.ctx, j.ID, step.lines, maxBytes); err != nil {
			f.Fatalf("append: %v", err)
		}
		got, err := f.s.Logs(f.ctx, j.ID, 0, 0)
		if err != nil {
			f.Fatalf("logs: %v", err)
		}
		var seqs []int64
		for _, l := range got {
			seqs = append(seqs, l.Seq)
		}
		last := step.lines[len(step.lines)-1].Seq
		if !slices.Equal(seqs, step.wantSeqs) || textBytes(got) > maxBytes {
			f.Fatalf("after appending up to %d: lines %v (%d bytes with the note), want %v within %d bytes", last, seqs, textBytes(got), step.wantSeqs, maxBytes)
		}
		checkLogNote(f, got, step.dropped, maxBytes)
		if tr := f.get(j.ID).LogTruncated; tr != (step.dropped > 0) {
			f.Fatalf("after appending up to %d: truncated %v, want %v", last, tr, step.dropped > 0)
		}
	}
}

// checkLogNote checks that a log with dropped lines starts with the one
// note that counts them, and that a log without has none.
func checkLogNote(f *fx, lines []engine.LogLine, dropped int, maxBytes int64) {
	f.Helper()
	notes := 0
	for _, l := range lines {
		if l.Stream == "stq" {
			notes++
		}
	}
	if dropped == 0 {
		if notes != 0 {
			f.Fatalf("a log that dropped nothing has a note: %+v", lines)
		}
		return
	}
	what := "lines"
	if dropped == 1 {
		what = "line"
	}
	want := fmt.Sprintf("%d %s dropped: output over the %d-byte log limit", dropped, what, maxBytes)
	if len(lines) == 0 || lines[0].Stream != "stq" || lines[0].Text != want || notes != 1 {
		f.Fatalf("log %+v: want one note first, %q", lines, want)
	}
}

func testAppendLogGap(f *fx) {
	j := f.add("q", "t", "")
	f.claimOne(t0)
	const maxBytes = 1 << 20
	mk := func(seqs ...int64) []engine.LogLine {
		var out []engine.LogLine
		for _, s := range seqs {
			out = append(out, engine.LogLine{Seq: s, Time: t0.Add(time.Duration(s) * time.Millisecond), Attempt: 1, Stream: "stdout", Text: fmt.Sprint("line ", s)})
		}
		return out
	}
	for _, step := range []struct {
		what     string
		lines    []engine.LogLine
		wantSeqs []int64
		dropped  int
	}{
		{"lines 1-3 stored", mk(1, 2, 3), []int64{1, 2, 3}, 0},
		// 4-10 never arrive: the caller dropped them. The log keeps its
		// newest lines, so 1-3 go too, and the note takes 10's place.
		{"lines 11-12 after a gap", mk(11, 12), []int64{10, 11, 12}, 10},
		{"a resend of stored and dropped lines", mk(2, 11, 12), []int64{10, 11, 12}, 10},
		{"line 13 in order", mk(13), []int64{10, 11, 12, 13}, 10},
		{"line 16 after another gap", mk(16), []int64{15, 16}, 15},
	} {
		if err := f.s.AppendLog(f.ctx, j.ID, step.lines, maxBytes); err != nil {
			f.Fatalf("%s: append: %v", step.what, err)
		}
		got, err := f.s.Logs(f.ctx, j.ID, 0, 0)
		if err != nil {
			f.Fatal(err)
		}
		var seqs []int64
		for _, l := range got {
			seqs = append(seqs, l.Seq)
		}
		if !slices.Equal(seqs, step.wantSeqs) {
			f.Fatalf("%s: lines %v, want %v", step.what, seqs, step.wantSeqs)
		}
		checkLogNote(f, got, step.dropped, maxBytes)
		if got := f.get(j.ID); got.LogTruncated != (step.dropped > 0) || got.LogSeq != step.lines[len(step.lines)-1].Seq {
			f.Fatalf("%s: truncated %v, log seq %d", step.what, got.LogTruncated, got.LogSeq)
		}
	}
}

func testLogSeqFromEnd(f *fx) {
	j := f.add("q", "t", "")
	var lines []engine.LogLine
	for s := int64(1); s <= 10; s++ {
		lines = append(lines, engine.LogLine{Seq: s, Time: t0, Attempt: 1, Stream: "stdout", Text: "x"})
	}
	if err := f.s.AppendLog(f.ctx, j.ID, lines, 1<<20); err != nil {
		f.Fatal(err)
	}
	for _, tc := range []struct {
		after, before int64
		n             int
		want          int64
		ok            bool
	}{
		{0, 0, 1, 10, true},
		{0, 0, 3, 8, true},
		{0, 0, 10, 1, true},
		{0, 0, 11, 0, false},
		{5, 0, 5, 6, true},
		{5, 0, 6, 0, false},
		{0, 8, 1, 7, true}, // below a bound: the lines from 8 on are held elsewhere
		{0, 8, 7, 1, true},
		{0, 8, 8, 0, false},
	} {
		got, ok, err := f.s.LogSeqFromEnd(f.ctx, j.ID, tc.after, tc.before, tc.n)
		if err != nil || got != tc.want || ok != tc.ok {
			f.Errorf("log_seq_from_end(after %d, before %d, n %d) = %d, %v, %v; want %d, %v", tc.after, tc.before, tc.n, got, ok, err, tc.want, tc.ok)
		}
	}
	if _, _, err := f.s.LogSeqFromEnd(f.ctx, "no-such-job", 0, 0, 1); !errors.Is(err, engine.ErrNotFound) {
		f.Errorf("unknown job: %v, want ErrNotFound", err)
	}
}

func testLogsPaging(f *fx) {
	j := f.add("q", "t", "")
	var lines []engine.LogLine
	streams := []string{"stdout", "stderr", "stq"}
	for i := range 10 {
		lines = append(lines, engine.LogLine{Seq: int64(i + 1), Time: t0.Add(time.Duration(i) * time.Second),
			Attempt: 1 + i/5, Stream: streams[i%3], Text: fmt.Sprintf("line %d ✓", i+1)})
	}
	if err := f.s.AppendLog(f.ctx, j.ID, lines[:4], 1<<20); err != nil {
		f.Fatal(err)
	}
	if err := f.s.AppendLog(f.ctx, j.ID, lines[4:], 1<<20); err != nil {
		f.Fatal(err)
	}
	for _, tc := range []struct {
		after int64
		limit int
		want  []engine.LogLine
	}{
		{0, 4, lines[:4]},
		{4, 4, lines[4:8]},
		{8, 4, lines[8:]},
		{10, 4, nil},
		{3, 0, lines[3:]},
	} {
		got, err := f.s.Logs(f.ctx, j.ID, tc.after, tc.limit)
		if err != nil {
			f.Fatalf("logs after %d: %v", tc.after, err)
		}
		eq := slices.EqualFunc(got, tc.want, func(a, b engine.LogLine) bool {
			return a.Seq == b.Seq && a.Time.Equal(b.Time) && a.Attempt == b.Attempt && a.Stream == b.Stream && a.Text == b.Text
		})
		if !eq {
			f.Fatalf("logs after %d limit %d: got %+v, want %+v", tc.after, tc.limit, got, tc.want)
		}
	}
	if f.get(j.ID).LogTruncated {
		f.Fatal("log marked truncated though nothing was dropped")
	}
}

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

func testLogSeq(f *fx) {
	j := f.add("q", "t", "")
	if got := f.claimOne(t0); got.LogSeq != 0 {
		f.Fatalf("a new job has log seq %d", got.LogSeq)
	}
	lines := []engine.LogLine{
		{Seq: 1, Time: t0, Attempt: 1, Stream: "stdout", Text: "a"},
		{Seq: 7, Time: t0, Attempt: 1, Stream: "stdout", Text: "b"},
	}
	// A tiny limit trims line 7's predecessors, never the remembered seq.
	if err := f.s.AppendLog(f.ctx, j.ID, lines, 1); err != nil {
		f.Fatal(err)
	}
	f.complete(engine.Completion{ID: j.ID, Attempt: 1, State: engine.StateQueued, Outcome: engine.OutcomeFailed,
		Reason: "x", FinishedAt: t0, RunAt: t0})
	if got := f.claimOne(t0); got.LogSeq != 7 {
		f.Fatalf("second attempt starts with log seq %d, want 7", got.LogSeq)
	}
	if got := f.get(j.ID); got.LogSeq != 7 {
		f.Fatalf("get reports log seq %d, want 7", got.LogSeq)
	}
}

func testEnqueueMany(f *fx) {
	old := f.add("q", "t", "a") // generation 1, superseded by the batch
	jobs := []*engine.Job{f.job("q", "t", "a"), f.job("q", "t", "b"), f.job("q", "t", "a"), f.job("q", "t", "")}
	explicitGen := jobs[3]
	explicitGen.Subject = "c"
	explicitGen.Generation = 7
	res, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: jobs, ExplicitGen: []bool{false, false, false, true}, Atomic: true})
	if err != nil {
		f.Fatalf("enqueue many: %v", err)
	}
	if len(res.Results) != 4 || len(res.Errs) != 4 {
		f.Fatalf("got %d results and %d errors, want 4 of each", len(res.Results), len(res.Errs))
	}
	for i, want := range []struct {
		gen        int64
		state      engine.State
		superseded []string
	}{
		{2, engine.StateQueued, []string{old.ID}},
		{1, engine.StateQueued, nil},
		{3, engine.StateQueued, []string{jobs[0].ID}},
		{7, engine.StateQueued, nil},
	} {
		if res.Errs[i] != nil {
			f.Fatalf("entry %d: %v", i, res.Errs[i])
		}
		got := res.Results[i]
		if got.Job.ID != jobs[i].ID || got.Job.Generation != want.gen || got.Job.State != want.state || !slices.Equal(got.Superseded, want.superseded) {
			f.Errorf("entry %d: got %s gen %d %s superseded %v, want %s gen %d %s superseded %v", i,
				got.Job.ID, got.Job.Generation, got.Job.State, got.Superseded, jobs[i].ID, want.gen, want.state, want.superseded)
		}
	}
	f.wantState(old.ID, engine.StateSuperseded)
	f.wantState(jobs[0].ID, engine.StateSuperseded)
	f.wantState(jobs[2].ID, engine.StateQueued)
	if got := f.get(jobs[3].ID).Generation; got != 7 {
		f.Errorf("explicit generation stored as %d, want 7", got)
	}
	// Stored in order: the claim takes them in enqueue order.
	claimed := f.claim(t0, 10)
	if want := []string{jobs[1].ID, jobs[2].ID, jobs[3].ID}; !slices.Equal(ids(claimed), want) {
		f.Errorf("claim order %v, want %v", ids(claimed), want)
	}
	// An empty batch is no error and stores nothing.
	if res, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Atomic: true}); err != nil || len(res.Results) != 0 {
		f.Errorf("empty batch: %d results, err %v", len(res.Results), err)
	}
}

func testEnqueueManyAtomic(f *fx) {
	before := f.add("q", "t", "a")
	bad := f.job("q", "t", "")
	bad.After = []string{"no-such-job"}
	dup := f.job("q", "t", "")
	dup.ID = before.ID
	for _, tc := range []struct {
		name  string
		bad   *engine.Job
		index int
	}{{"unknown dependency", bad, 2}, {"duplicate id", dup, 2}, {"missing id", &engine.Job{Queue: "q", Type: "t", CreatedAt: t0, RunAt: t0}, 2}} {
		jobs := []*engine.Job{f.job("q", "t", "a"), f.job("q", "t", "new"), tc.bad, f.job("q", "t", "z")}
		_, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: jobs, Atomic: true})
		var be *engine.BatchError
		if !errors.As(err, &be) || be.Index != tc.index || !errors.Is(err, engine.ErrInvalid) {
			f.Errorf("%s: got %v, want a batch error at entry %d wrapping ErrInvalid", tc.name, err, tc.index)
		}
		for _, j := range []*engine.Job{jobs[0], jobs[1], jobs[3]} {
			if _, err := f.s.Get(f.ctx, j.ID); !errors.Is(err, engine.ErrNotFound) {
				f.Errorf("%s: job %s of the refused batch: %v, want not found", tc.name, j.ID, err)
			}
		}
	}
	// Nothing the refused batches did shows: the older job is still queued
	// and the next generation of its key is 2.
	f.wantState(before.ID, engine.StateQueued)
	if g := f.add("q", "t", "a").Generation; g != 2 {
		f.Errorf("next generation after refused batches is %d, want 2", g)
	}
	st, err := f.s.Stats(f.ctx)
	if err != nil {
		f.Fatal(err)
	}
	if n := st.Queues["q"][engine.StateQueued]; n != 1 {
		f.Errorf("queued count %d after refused batches, want 1", n)
	}
}

func testEnqueueManyEach(f *fx) {
	bad := f.job("q", "t", "")
	bad.After = []string{"no-such-job"}
	jobs := []*engine.Job{f.job("q", "t", "a"), bad, nil, f.job("q", "t", "a")}
	res, err := f.s.EnqueueMany(f.ctx, engine.EnqueueBatch{Jobs: jobs})
	if err != nil {
		f.Fatalf("enqueue many: %v", err)
	}
	if res.Errs[0] != nil || res.Errs[3] != nil {
		f.Fatalf("good entries failed: %v, %v", res.Errs[0], res.Errs[3])
	}
	for _, i := range []int{1, 2} {
		if !errors.Is(res.Errs[i], engine.ErrInvalid) || res.Results[i].Job != nil {
			f.Errorf("entry %d: got %v and job %v, want ErrInvalid and no job", i, res.Errs[i], res.Results[i].Job)
		}
	}
	if _, err := f.s.Get(f.ctx, bad.ID); !errors.Is(err, engine.ErrNotFound) {
		f.Errorf("bad entry stored: %v", err)
	}
	if g := res.Results[3].Job.Generation; g != 2 || !slices.Equal(res.Results[3].Superseded, []string{jobs[0].ID}) {
		f.Errorf("last entry: generation %d superseded %v, want 2 superseding %s", g, res.Results[3].Superseded, jobs[0].ID)
	}
	f.wantState(jobs[0].ID, engine.StateSuperseded)
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
