// Package storetest is a conformance suite for engine.Store implementations:
// every store (the embedded SQLite one, a shared PostgreSQL one) must pass
// the same rules for supersede, claim, completion, logs and counters.
package storetest

import (
	"context"
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
