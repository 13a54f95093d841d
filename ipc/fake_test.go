package ipc

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"stq/engine"
)

// fakeBackend is an in-memory Backend. Tests drive job state by hand with
// setState and addLog.
type fakeBackend struct {
	mu      sync.Mutex
	jobs    map[string]*engine.Job
	order   []string
	logs    map[string][]engine.LogLine
	nextID  int
	changed chan struct{} // closed and replaced on every change
	subs    []*testSub
	fail    error // when set, every method but Subscribe returns it
	waiting int   // calls blocked in Wait
	paused  map[string]bool
	// eachCalls records the size of every EnqueueEach call.
	eachCalls []int
	// shutdowns and reloads count the calls of Shutdown and Reload.
	shutdowns, reloads int
}

func newFake() *fakeBackend {
	return &fakeBackend{
		jobs:    make(map[string]*engine.Job),
		logs:    make(map[string][]engine.LogLine),
		changed: make(chan struct{}),
	}
}

var epoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func (f *fakeBackend) failing() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

func (f *fakeBackend) setFail(err error) {
	f.mu.Lock()
	f.fail = err
	f.mu.Unlock()
}

func (f *fakeBackend) Enqueue(ctx context.Context, req engine.EnqueueRequest) (engine.EnqueueResult, error) {
	if err := f.failing(); err != nil {
		return engine.EnqueueResult{}, err
	}
	if err := f.check(req); err != nil {
		return engine.EnqueueResult{}, err
	}
	if req.Queue == "" {
		req.Queue = engine.DefaultQueue
	}
	if req.Type == "" {
		req.Type = engine.DefaultType
	}
	f.mu.Lock()
	f.nextID++
	j := &engine.Job{
		ID: fmt.Sprintf("j%d", f.nextID), Queue: req.Queue, Type: req.Type, Subject: req.Subject,
		Priority: req.Priority, State: engine.StateQueued, MaxAttempts: engine.DefaultMaxAttempts,
		Payload: req.Payload, Command: req.Command, Cwd: req.Cwd, Env: req.Env,
		RunAt: epoch, CreatedAt: epoch, Deadline: engine.Duration(engine.DefaultDeadline),
		Attempts: []engine.Attempt{},
	}
	if req.Delay != nil {
		j.RunAt = epoch.Add(time.Duration(*req.Delay))
	}
	var superseded []string
	if j.Subject != "" {
		for _, id := range f.order {
			o := f.jobs[id]
			if o.Key() == j.Key() && o.State == engine.StateQueued {
				o.State = engine.StateSuperseded
				superseded = append(superseded, o.ID)
			}
			if o.Key() == j.Key() && o.Generation >= j.Generation {
				j.Generation = o.Generation + 1
			}
		}
	}
	f.jobs[j.ID] = j
	f.order = append(f.order, j.ID)
	out := *j
	f.changedLocked()
	f.mu.Unlock()
	f.publish(engine.Event{Kind: engine.EventJob, JobID: j.ID, Job: &out})
	return engine.EnqueueResult{Job: &out, Superseded: superseded}, nil
}

func (f *fakeBackend) Cancel(ctx context.Context, req engine.CancelRequest) ([]*engine.Job, error) {
	if err := f.failing(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	j, ok := f.jobs[req.ID]
	if !ok {
		f.mu.Unlock()
		return nil, fmt.Errorf("cancel %s: %w", req.ID, engine.ErrNotFound)
	}
	if j.State.Terminal() {
		f.mu.Unlock()
		return nil, fmt.Errorf("cancel %s: %w", req.ID, engine.ErrFinished)
	}
	j.State = engine.StateCancelled
	out := *j
	f.changedLocked()
	f.mu.Unlock()
	f.publish(engine.Event{Kind: engine.EventJob, JobID: out.ID, Job: &out})
	return []*engine.Job{&out}, nil
}

func (f *fakeBackend) Get(ctx context.Context, id string) (*engine.Job, error) {
	if err := f.failing(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", id, engine.ErrNotFound)
	}
	out := *j
	return &out, nil
}

func (f *fakeBackend) List(ctx context.Context, fl engine.ListFilter) (engine.ListPage, error) {
	if err := f.failing(); err != nil {
		return engine.ListPage{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	// The cursor is the position in f.order below which the page starts.
	start := len(f.order)
	if fl.Cursor != "" {
		n, err := strconv.Atoi(fl.Cursor)
		if err != nil || n < 0 || n > len(f.order) {
			return engine.ListPage{}, fmt.Errorf("list: %w: bad cursor %q", engine.ErrInvalid, fl.Cursor)
		}
		start = n
	}
	var page engine.ListPage
	for i := start - 1; i >= 0; i-- {
		j := f.jobs[f.order[i]]
		if (len(fl.States) > 0 && !slices.Contains(fl.States, j.State)) ||
			(fl.Queue != "" && j.Queue != fl.Queue) || (fl.Type != "" && j.Type != fl.Type) ||
			(fl.Subject != "" && j.Subject != fl.Subject) {
			continue
		}
		if len(page.Jobs) == fl.Limit {
			page.Next = strconv.Itoa(i + 1)
			break
		}
		c := *j
		page.Jobs = append(page.Jobs, &c)
	}
	return page, nil
}

// check refuses what the engine would refuse and the fake can tell: a
// dependency on an unknown job.
func (f *fakeBackend) check(req engine.EnqueueRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range req.After {
		if _, ok := f.jobs[id]; !ok {
			return fmt.Errorf("%w: after %s: no such job", engine.ErrInvalid, id)
		}
	}
	return nil
}

func (f *fakeBackend) EnqueueMany(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, error) {
	if err := f.failing(); err != nil {
		return nil, err
	}
	for i, r := range reqs {
		if err := f.check(r); err != nil {
			return nil, &engine.BatchError{Index: i, Err: err}
		}
	}
	out := make([]engine.EnqueueResult, len(reqs))
	for i, r := range reqs {
		out[i], _ = f.Enqueue(ctx, r)
	}
	return out, nil
}

func (f *fakeBackend) EnqueueEach(ctx context.Context, reqs []engine.EnqueueRequest) ([]engine.EnqueueResult, []error) {
	f.mu.Lock()
	f.eachCalls = append(f.eachCalls, len(reqs))
	f.mu.Unlock()
	out := make([]engine.EnqueueResult, len(reqs))
	errs := make([]error, len(reqs))
	for i, r := range reqs {
		if errs[i] = f.check(r); errs[i] == nil {
			out[i], errs[i] = f.Enqueue(ctx, r)
		}
	}
	return out, errs
}

func (f *fakeBackend) Wait(ctx context.Context, ids []string) ([]*engine.Job, error) {
	if err := f.failing(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.waiting++
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.waiting--
		f.mu.Unlock()
	}()
	for {
		f.mu.Lock()
		ch := f.changed
		var out []*engine.Job
		all := true
		for _, id := range ids {
			j, ok := f.jobs[id]
			if !ok {
				f.mu.Unlock()
				return nil, fmt.Errorf("wait %s: %w", id, engine.ErrNotFound)
			}
			c := *j
			out = append(out, &c)
			all = all && j.State.Terminal()
		}
		f.mu.Unlock()
		if all {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-ch:
		}
	}
}

func (f *fakeBackend) Logs(ctx context.Context, id string, afterSeq int64, limit int) ([]engine.LogLine, error) {
	if err := f.failing(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []engine.LogLine
	for _, l := range f.logs[id] {
		if l.Seq > afterSeq && len(out) < limit {
			out = append(out, l)
		}
	}
	return out, nil
}

func (f *fakeBackend) LogStart(ctx context.Context, id string, afterSeq int64, last int) (int64, error) {
	if err := f.failing(); err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.jobs[id]; !ok {
		return 0, fmt.Errorf("logs of %s: %w", id, engine.ErrNotFound)
	}
	var after []engine.LogLine
	for _, l := range f.logs[id] {
		if l.Seq > afterSeq {
			after = append(after, l)
		}
	}
	if len(after) <= last {
		return afterSeq, nil
	}
	return after[len(after)-last-1].Seq, nil
}

func (f *fakeBackend) Stats(ctx context.Context) (engine.Stats, error) {
	if err := f.failing(); err != nil {
		return engine.Stats{}, err
	}
	return engine.Stats{
		StoreStats: engine.StoreStats{Queues: map[string]map[engine.State]int64{"default": {engine.StateQueued: 2}}, DBBytes: 4096},
		Workers:    4, Running: 1, Owner: "host/1", Started: epoch, Recovered: 3,
	}, nil
}

func (f *fakeBackend) Recover(ctx context.Context) (engine.RecoverReport, error) {
	if err := f.failing(); err != nil {
		return engine.RecoverReport{}, err
	}
	return engine.RecoverReport{Scanned: 2, Recovered: []engine.RecoveredJob{{ID: "j9", PID: 123, Killed: true, NewState: engine.StateQueued}}}, nil
}

func (f *fakeBackend) changedLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// setState moves a job to a state and publishes the job event.
func (f *fakeBackend) setState(id string, st engine.State) {
	f.mu.Lock()
	j := f.jobs[id]
	j.State = st
	out := *j
	f.changedLocked()
	f.mu.Unlock()
	f.publish(engine.Event{Kind: engine.EventJob, JobID: id, Job: &out})
}

// addLog stores a line and, when live, publishes it too.
func (f *fakeBackend) addLog(id, text string, live bool) engine.LogLine {
	f.mu.Lock()
	l := engine.LogLine{Seq: int64(len(f.logs[id]) + 1), Time: epoch, Attempt: 1, Stream: "stdout", Text: text}
	f.logs[id] = append(f.logs[id], l)
	f.mu.Unlock()
	if live {
		f.publish(engine.Event{Kind: engine.EventLog, JobID: id, Line: &l})
	}
	return l
}

func (f *fakeBackend) waiters() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.waiting
}

func (f *fakeBackend) subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, s := range f.subs {
		if s.live() {
			n++
		}
	}
	return n
}

// Subscriptions. engine.Subscription has no constructor outside the engine
// and its Close dereferences an unexported bus, so a fake cannot build one
// through the API. testSub assembles a working one through reflection,
// using the engine's own locking so Close from the server stays safe
// against the fake's publishing. Test-only; production code never does this.

type testSub struct {
	s      *engine.Subscription
	ch     chan engine.Event
	filter engine.EventFilter
	busMu  *sync.Mutex
	subMu  *sync.Mutex
	member reflect.Value // the bus's subs map
	lagged *bool
	closed *bool
}

func field(v reflect.Value, name string) reflect.Value {
	f := v.FieldByName(name)
	if !f.IsValid() {
		panic("fake backend: engine." + v.Type().Name() + " has no field " + name +
			"; update testSub to the engine's subscription internals")
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem()
}

func (f *fakeBackend) Subscribe(filter engine.EventFilter) *engine.Subscription {
	ch := make(chan engine.Event, 64)
	s := &engine.Subscription{C: ch}
	v := reflect.ValueOf(s).Elem()
	field(v, "c").Set(reflect.ValueOf(ch))
	busPtr := reflect.New(v.FieldByName("bus").Type().Elem())
	subs := field(busPtr.Elem(), "subs")
	subs.Set(reflect.MakeMap(subs.Type()))
	subs.SetMapIndex(reflect.ValueOf(s), reflect.ValueOf(struct{}{}))
	field(v, "bus").Set(busPtr)
	ts := &testSub{
		s: s, ch: ch, filter: filter,
		busMu:  (*sync.Mutex)(unsafe.Pointer(field(busPtr.Elem(), "mu").UnsafeAddr())),
		subMu:  (*sync.Mutex)(unsafe.Pointer(field(v, "mu").UnsafeAddr())),
		member: subs,
		lagged: (*bool)(unsafe.Pointer(field(v, "lagged").UnsafeAddr())),
		closed: (*bool)(unsafe.Pointer(field(v, "closed").UnsafeAddr())),
	}
	f.mu.Lock()
	f.subs = append(f.subs, ts)
	f.mu.Unlock()
	return s
}

func (ts *testSub) live() bool {
	ts.busMu.Lock()
	defer ts.busMu.Unlock()
	return ts.member.MapIndex(reflect.ValueOf(ts.s)).IsValid()
}

func (ts *testSub) matches(ev *engine.Event) bool {
	return (ts.filter.JobID == "" || ts.filter.JobID == ev.JobID) &&
		(ts.filter.Queue == "" || (ev.Job != nil && ev.Job.Queue == ts.filter.Queue))
}

// deliver mirrors the engine bus: send under the bus lock, never block,
// cut the subscriber off when its buffer is full.
func (ts *testSub) deliver(ev engine.Event) {
	ts.busMu.Lock()
	if !ts.member.MapIndex(reflect.ValueOf(ts.s)).IsValid() {
		ts.busMu.Unlock()
		return
	}
	select {
	case ts.ch <- ev:
		ts.busMu.Unlock()
	default:
		ts.busMu.Unlock()
		ts.cut(true)
	}
}

// cut ends the subscription the way the engine does (lagged or not).
func (ts *testSub) cut(lagged bool) {
	ts.busMu.Lock()
	ok := ts.member.MapIndex(reflect.ValueOf(ts.s)).IsValid()
	ts.member.SetMapIndex(reflect.ValueOf(ts.s), reflect.Value{})
	ts.busMu.Unlock()
	if !ok {
		return
	}
	ts.subMu.Lock()
	if !*ts.closed {
		*ts.closed = true
		*ts.lagged = lagged
		close(ts.ch)
	}
	ts.subMu.Unlock()
}

func (f *fakeBackend) publish(ev engine.Event) {
	f.mu.Lock()
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, s := range subs {
		if s.matches(&ev) {
			s.deliver(ev)
		}
	}
}

// cutAll ends every subscription, as a lag (true) or a shutdown (false).
func (f *fakeBackend) cutAll(lagged bool) {
	f.mu.Lock()
	subs := slices.Clone(f.subs)
	f.mu.Unlock()
	for _, s := range subs {
		s.cut(lagged)
	}
}

func (f *fakeBackend) Pause(ctx context.Context, queue string) error {
	if err := f.failing(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.paused == nil {
		f.paused = map[string]bool{}
	}
	f.paused[queue] = true
	return nil
}

func (f *fakeBackend) Resume(ctx context.Context, queue string) error {
	if err := f.failing(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.paused, queue)
	return nil
}

func (f *fakeBackend) Retry(ctx context.Context, id string) (*engine.Job, error) {
	if err := f.failing(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.jobs[id]
	if !ok {
		return nil, fmt.Errorf("retry %s: %w", id, engine.ErrNotFound)
	}
	if !engine.CanTransition(j.State, engine.StateQueued) || !j.State.Terminal() {
		return nil, fmt.Errorf("retry %s: %w: job is %s", id, engine.ErrInvalidTransition, j.State)
	}
	j.State, j.Attempt = engine.StateQueued, 0
	f.changedLocked()
	cp := *j
	return &cp, nil
}

// Shutdown records the request; the fake has no process to stop.
func (f *fakeBackend) Shutdown(ctx context.Context) (engine.ShutdownResult, error) {
	if err := f.failing(); err != nil {
		return engine.ShutdownResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.shutdowns++
	return engine.ShutdownResult{PID: 4242, Grace: engine.Duration(10 * time.Second), KillGrace: engine.Duration(5 * time.Second)}, nil
}

// Reload records the request and reports nothing to restart.
func (f *fakeBackend) Reload(ctx context.Context) (engine.ReloadResult, error) {
	if err := f.failing(); err != nil {
		return engine.ReloadResult{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reloads++
	return engine.ReloadResult{Config: "config.toml", RestartNeeded: []string{}}, nil
}
