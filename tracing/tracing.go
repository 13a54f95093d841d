// Package tracing records the daemon's enqueues and attempts as
// OpenTelemetry spans and hands each attempt's trace context to its job as
// TRACEPARENT, so a job's own spans join the trace.
package tracing

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"stq/engine"
)

// scope is the instrumentation scope of stq's spans.
const scope = "stq"

// Tracer makes the spans. It is an engine.Observer.
type Tracer struct {
	tp *sdktrace.TracerProvider
	tr trace.Tracer
}

// New returns a Tracer whose spans go to the given provider options'
// exporters. It adds the ID generator that ties a job's attempts to its
// enqueue (see Enqueued).
func New(opts ...sdktrace.TracerProviderOption) *Tracer {
	tp := sdktrace.NewTracerProvider(append(opts, sdktrace.WithIDGenerator(jobIDs{}))...)
	return &Tracer{tp: tp, tr: tp.Tracer(scope)}
}

// Shutdown sends the spans still buffered and stops the exporters; ctx
// bounds the wait.
func (t *Tracer) Shutdown(ctx context.Context) error { return t.tp.Shutdown(ctx) }

// Enqueued records a span for a stored job, from its creation to now. Its
// trace and span ids are derived from the job id, so every attempt of the
// job, even one a later daemon runs, becomes its child in the same trace
// without the daemon keeping anything: a job enqueued while tracing was off
// gets attempts whose parent span is missing, which trace viewers show as
// such.
func (t *Tracer) Enqueued(res engine.EnqueueResult) {
	j := res.Job
	ctx := context.WithValue(context.Background(), jobIDKey{}, j.ID)
	start := j.CreatedAt
	if start.IsZero() {
		start = time.Now()
	}
	_, span := t.tr.Start(ctx, "stq.enqueue", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithTimestamp(start), trace.WithAttributes(jobAttributes(j)...))
	span.SetAttributes(attribute.String("stq.job.state", string(j.State)))
	if n := len(res.Superseded); n > 0 {
		span.SetAttributes(attribute.Int("stq.superseded", n))
	}
	span.End()
}

// AttemptStarting starts the attempt's span, a child of the job's enqueue
// span, and returns its context as TRACEPARENT (and TRACESTATE when there
// is one) for the job's environment.
func (t *Tracer) AttemptStarting(j *engine.Job) ([]string, func(engine.AttemptEnded)) {
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: jobTraceID(j.ID), SpanID: enqueueSpanID(j.ID), TraceFlags: trace.FlagsSampled, Remote: true})
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), parent)
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(jobAttributes(j)...), trace.WithAttributes(attribute.Int("stq.attempt", j.Attempt))}
	if j.StartedAt != nil {
		opts = append(opts, trace.WithTimestamp(*j.StartedAt))
	}
	ctx, span := t.tr.Start(ctx, "stq.attempt", opts...)
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	env := []string{"TRACEPARENT=" + carrier.Get("traceparent")}
	if ts := carrier.Get("tracestate"); ts != "" {
		env = append(env, "TRACESTATE="+ts)
	}
	return env, func(a engine.AttemptEnded) { attemptEnded(span, a) }
}

func attemptEnded(span trace.Span, a engine.AttemptEnded) {
	c := a.Completion
	span.SetAttributes(attribute.String("stq.outcome", string(c.Outcome)))
	if c.ExitCode != nil {
		span.SetAttributes(attribute.Int("stq.exit_code", *c.ExitCode))
	}
	if a.Job != nil {
		span.SetAttributes(attribute.String("stq.job.state", string(a.Job.State)))
	}
	switch {
	case a.Err != nil:
		span.RecordError(a.Err)
		span.SetStatus(codes.Error, "store the attempt's end: "+a.Err.Error())
	case c.Outcome == engine.OutcomeFailed || c.Outcome == engine.OutcomeCrashed:
		span.SetStatus(codes.Error, c.Reason)
	}
	span.End()
}

// Expired, Recovered and Pulse make no spans: an expiry or a recovery is not
// work a job did, and the dispatcher's rounds are not worth a span.
func (t *Tracer) Expired([]*engine.Job) {}
func (t *Tracer) Recovered(*engine.Job) {}
func (t *Tracer) Pulse()                {}

var _ engine.Observer = (*Tracer)(nil)

func jobAttributes(j *engine.Job) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("stq.job.id", j.ID),
		attribute.String("stq.queue", j.Queue),
		attribute.String("stq.type", j.Type),
		attribute.String("stq.subject", j.Subject),
		attribute.Int64("stq.generation", j.Generation),
		attribute.Int("stq.max_attempts", j.MaxAttempts),
	}
}

// jobIDKey carries the job id of an enqueue span to jobIDs.
type jobIDKey struct{}

// jobIDs is the SDK's ID generator: random ids, except for an enqueue span,
// whose ids come from its job id.
type jobIDs struct{}

func (jobIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if id, ok := ctx.Value(jobIDKey{}).(string); ok {
		return jobTraceID(id), enqueueSpanID(id)
	}
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.BigEndian.PutUint64(tid[:8], rand.Uint64())
		binary.BigEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid, randomSpanID()
}

func (jobIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return randomSpanID() }

func randomSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.BigEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

func jobTraceID(id string) trace.TraceID {
	var tid trace.TraceID
	copy(tid[:], derive("trace", id))
	return tid
}

func enqueueSpanID(id string) trace.SpanID {
	var sid trace.SpanID
	copy(sid[:], derive("enqueue", id))
	return sid
}

// derive hashes a job id into id bytes: never all zero in practice (the
// chance is 2^-64), and the same in every daemon that ever sees the job.
func derive(what, id string) []byte {
	h := sha256.Sum256([]byte("stq " + what + " " + strconv.Itoa(len(id)) + " " + id))
	return h[:]
}
