package engine

import "sync"

// EventKind says what an Event carries.
type EventKind string

const (
	EventJob EventKind = "job" // a job changed state
	EventLog EventKind = "log" // a job printed a line
)

// Event is a notification for subscribers (stq tail, wait).
type Event struct {
	Kind EventKind `json:"kind"`
	Job  *Job      `json:"job,omitempty"`
	// JobID is set on every event; Line on log events.
	JobID string   `json:"job_id"`
	Line  *LogLine `json:"line,omitempty"`
}

// subscriberBuffer bounds how far a subscriber may fall behind. A subscriber
// that falls further is cut off (its channel closed, Lagged set) rather than
// ever slowing a worker down.
const subscriberBuffer = 4096

// EventFilter selects events for a subscription. Zero fields match all.
type EventFilter struct {
	JobID string
	Queue string
	// Kind keeps only events of one kind: a waiter that needs state
	// changes is not flooded with every line every job prints.
	Kind EventKind
}

func (f EventFilter) match(ev *Event) bool {
	if f.Kind != "" && ev.Kind != f.Kind {
		return false
	}
	if f.JobID != "" && ev.JobID != f.JobID {
		return false
	}
	if f.Queue != "" && (ev.Job == nil || ev.Job.Queue != f.Queue) {
		return false
	}
	return true
}

// Subscription receives events until Close is called or it lags too far.
type Subscription struct {
	C      <-chan Event
	c      chan Event
	filter EventFilter
	bus    *bus
	mu     sync.Mutex
	closed bool
	lagged bool
}

// Lagged reports whether the subscription was cut off for falling behind.
func (s *Subscription) Lagged() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lagged
}

// Close ends the subscription; C is closed.
func (s *Subscription) Close() { s.bus.remove(s, false) }

// bus fans events out to subscribers without blocking publishers.
type bus struct {
	mu   sync.Mutex
	subs map[*Subscription]struct{}
}

func newBus() *bus { return &bus{subs: make(map[*Subscription]struct{})} }

func (b *bus) subscribe(f EventFilter) *Subscription {
	c := make(chan Event, subscriberBuffer)
	s := &Subscription{C: c, c: c, filter: f, bus: b}
	b.mu.Lock()
	b.subs[s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *bus) remove(s *Subscription, lagged bool) {
	b.mu.Lock()
	_, ok := b.subs[s]
	delete(b.subs, s)
	b.mu.Unlock()
	if !ok {
		return
	}
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		s.lagged = lagged
		close(s.c)
	}
	s.mu.Unlock()
}

func (b *bus) publish(ev Event) {
	var lagging []*Subscription
	b.mu.Lock()
	for s := range b.subs {
		if !s.filter.match(&ev) {
			continue
		}
		select {
		case s.c <- ev:
		default:
			lagging = append(lagging, s)
		}
	}
	b.mu.Unlock()
	for _, s := range lagging {
		b.remove(s, true)
	}
}

// active reports whether anyone listens; publishers skip building events
// nobody will read.
func (b *bus) active() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.subs) > 0
}

// closeAll ends every subscription, on shutdown.
func (b *bus) closeAll() {
	b.mu.Lock()
	subs := make([]*Subscription, 0, len(b.subs))
	for s := range b.subs {
		subs = append(subs, s)
	}
	b.mu.Unlock()
	for _, s := range subs {
		b.remove(s, false)
	}
}

func (e *Engine) publishJob(j *Job) { e.publishJobs(j) }

func (e *Engine) publishJobs(jobs ...*Job) {
	if !e.bus.active() {
		return
	}
	for _, j := range jobs {
		e.bus.publish(Event{Kind: EventJob, JobID: j.ID, Job: j})
	}
}

// Subscribe returns a subscription to job and log events.
func (e *Engine) Subscribe(f EventFilter) *Subscription { return e.bus.subscribe(f) }
