package engine

import (
	"context"
	"time"
)

// NoticeKind says what changed in a store that several daemons share.
type NoticeKind string

const (
	// NoticeEnqueue: jobs of Queue may have become claimable (enqueued,
	// retried, requeued by a retrying completion).
	NoticeEnqueue NoticeKind = "enqueue"
	// NoticeFree: a job of Queue ended, freeing its key and a place under
	// the queue's cap; a job waiting for either may now start.
	NoticeFree NoticeKind = "free"
	// NoticeCancel: job ID of Queue was cancelled while QUEUED, or its
	// cancellation was asked for while it runs (see Announce).
	NoticeCancel NoticeKind = "cancel"
	// NoticePause and NoticeResume: Queue was paused or resumed.
	NoticePause  NoticeKind = "pause"
	NoticeResume NoticeKind = "resume"
	// NoticeReplace: job ID, enqueued with Replace, wants the running
	// older generation of its key stopped, wherever it runs.
	NoticeReplace NoticeKind = "replace"
	// NoticeResync: the watch (re)connected and may have missed notices;
	// look at the store now as a poll would.
	NoticeResync NoticeKind = "resync"
)

// Notice is one change a Watcher reports.
type Notice struct {
	Kind  NoticeKind
	Queue string // empty: any queue
	ID    string // the job concerned, for the kinds that name one
	// Self marks a notice of a change this store instance made itself,
	// which its own daemon already knows about.
	Self bool
	// Due, for NoticeEnqueue, is the earliest time at which a job it
	// announces may start or expire. A daemon that will look at the store
	// by then anyway need not wake for it: an enqueue of work scheduled
	// for later then costs the other daemons nothing. Zero: now, or not
	// known.
	Due time.Time
}

// Watcher is implemented by a store that several daemons share, so that a
// change made through one daemon wakes the others at once instead of at
// their next poll. Notices are hints, delivered at most once and possibly
// merged: a daemon acts on them as it would on a poll, and keeps polling
// as a safety net.
type Watcher interface {
	// Watch calls wake for every notice until ctx ends or the watch's
	// connection fails, and returns the reason (ctx.Err() when ctx ended).
	// It calls wake with NoticeResync once it listens, since notices sent
	// before that are lost. wake runs on Watch's goroutine and must not
	// block for long.
	Watch(ctx context.Context, wake func(Notice)) error
	// Announce sends notices to every watcher of the store, its own
	// included (Self set): how a daemon asks the owner of a running job
	// on another host to stop it (NoticeCancel, NoticeReplace).
	Announce(ctx context.Context, notices ...Notice) error
}
