package oteltasks

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/tasks"
)

// The metadata entries of the W3C Trace Context propagator: what an
// enqueue keeps of what it injected when the rest would not fit.
const (
	entryTraceparent = "traceparent"
	entryTracestate  = "tracestate"
)

// requestCarrier is a propagation.TextMapCarrier over the metadata of an
// enqueue request: the propagator writes the trace context there, and it is
// stored with the task. It remembers the entries it wrote and what they
// were before, so that they can be taken back (see fitMetadata).
type requestCarrier struct {
	req     *tasks.EnqueueRequest
	written []priorEntry
}

// priorEntry is a metadata entry the propagator wrote, as it was before.
type priorEntry struct {
	key, value string
	existed    bool
}

// Get implements propagation.TextMapCarrier.
func (c *requestCarrier) Get(key string) string { return c.req.Metadata[key] }

// Set implements propagation.TextMapCarrier.
func (c *requestCarrier) Set(key, value string) {
	if !slices.ContainsFunc(c.written, func(e priorEntry) bool { return e.key == key }) {
		prior, existed := c.req.Metadata[key]
		c.written = append(c.written, priorEntry{key, prior, existed})
	}
	c.req.SetMetadata(key, value)
}

// Keys implements propagation.TextMapCarrier.
func (c *requestCarrier) Keys() []string { return propagation.MapCarrier(c.req.Metadata).Keys() }

// takeBack restores the entries written whose key keep does not keep, and
// returns their keys.
func (c *requestCarrier) takeBack(keep func(key string) bool) []string {
	var keys []string
	c.written = slices.DeleteFunc(c.written, func(e priorEntry) bool {
		if keep(e.key) {
			return false
		}
		if e.existed {
			c.req.Metadata[e.key] = e.value
		} else {
			delete(c.req.Metadata, e.key)
		}
		keys = append(keys, e.key)
		return true
	})
	return keys
}

// fitMetadata takes back what the propagator wrote to the request's
// metadata when it would take the metadata over the limits of the core
// (tasks.MaxMetadataEntries, tasks.MaxMetadataBytes), which would make the
// enqueue fail: first all but the trace context (baggage, a vendor's
// entries), then the trace context too if that is not enough. The loss is
// reported with otel.Handle.
func (c *requestCarrier) fitMetadata() {
	if len(c.written) == 0 || metadataFits(c.req.Metadata) {
		return
	}
	dropped := c.takeBack(func(key string) bool { return key == entryTraceparent || key == entryTracestate })
	if !metadataFits(c.req.Metadata) {
		dropped = append(dropped, c.takeBack(func(string) bool { return false })...)
	}
	otel.Handle(fmt.Errorf("oteltasks: task %q (%s): its metadata would be over the limits (%d entries, %d bytes) with the propagator's entries %q: they are not stored",
		c.req.TaskName, c.req.ID, tasks.MaxMetadataEntries, tasks.MaxMetadataBytes, dropped))
}

// metadataFits reports whether md is within the core's limits of entries
// and bytes (keys and values).
func metadataFits(md map[string]string) bool {
	if len(md) > tasks.MaxMetadataEntries {
		return false
	}
	size := 0
	for k, v := range md {
		size += len(k) + len(v)
	}
	return size <= tasks.MaxMetadataBytes
}

// Enqueue implements tasks.Middleware: one PRODUCER span for the call, its
// context injected into the metadata of every request, and the enqueued
// tasks counted once the backend accepted them. Without tracing
// (WithoutTracing), only the count.
func (m *Middleware) Enqueue(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
	if len(reqs) == 0 {
		return next(ctx, reqs)
	}
	if !m.tracing {
		rs, err := next(ctx, reqs)
		if err == nil {
			m.countEnqueued(ctx, rs)
		}
		return rs, err
	}
	// The core's batches are of one task in one queue (Task.EnqueueMany).
	first := reqs[0]
	attrs := make([]attribute.KeyValue, 0, 6)
	attrs = append(attrs,
		messagingSystem,
		semconv.MessagingOperationName("enqueue"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingDestinationName(first.Queue),
		keyTaskName.String(first.TaskName),
	)
	if len(reqs) == 1 {
		attrs = append(attrs, semconv.MessagingMessageID(first.ID))
	} else {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(reqs)))
	}
	ctx, span := m.tracer.Start(ctx, "enqueue "+first.TaskName,
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	defer span.End()
	c := &requestCarrier{}
	for _, req := range reqs {
		c.req, c.written = req, c.written[:0]
		m.prop.Inject(ctx, c)
		c.fitMetadata()
	}

	rs, err := next(ctx, reqs)
	if err != nil {
		recordError(span, err)
		return rs, err
	}
	if len(rs) > 0 && rs[0] != nil {
		span.SetAttributes(keyBackend.String(rs[0].Backend))
	}
	m.countEnqueued(ctx, rs)
	return rs, nil
}

// countEnqueued adds rs to gotasks.tasks.enqueued, one Add per run of
// results of the same series.
func (m *Middleware) countEnqueued(ctx context.Context, rs []*tasks.RawResult) {
	var cur *series
	var curKey seriesKey
	n := int64(0)
	flush := func() {
		if n > 0 {
			m.enqueued.Add(ctx, n, cur.base.add...)
		}
	}
	for _, r := range rs {
		if r == nil {
			continue
		}
		if cur == nil || curKey != (seriesKey{r.TaskName, r.Queue, r.Backend}) {
			flush()
			curKey, cur = m.series.get(r.TaskName, r.Queue, r.Backend)
			n = 0
		}
		n++
	}
	flush()
}

// errNoReturn stands for the error of an attempt that did not return: the
// task (or a middleware inside this one) panicked or called runtime.Goexit.
var errNoReturn = errors.New("oteltasks: the attempt did not return (a panic or runtime.Goexit)")

// Execute implements tasks.Middleware: one CONSUMER span for the attempt,
// passed on to the task, and the attempt counted and timed. The span is
// the child of the trace context in the task's metadata (else of the span
// in ctx) for a one-off task, and the root of a trace of its own, linked to
// that context, for a repeating task. Without tracing (WithoutTracing),
// ctx goes to next untouched and the attempt is only counted and timed.
func (m *Middleware) Execute(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) (err error) {
	k, s := m.series.get(x.TaskName, x.Queue, x.BackendName)
	var span trace.Span // nil without tracing
	if m.tracing {
		ctx, span = m.startAttempt(ctx, x, s)
	}
	start := time.Now()
	returned := false
	// Whatever happens below (a panic, runtime.Goexit), the span ends and
	// the attempt is counted.
	defer func() {
		res := err
		if !returned { // a panic or runtime.Goexit unwinds through here
			res = errNoReturn
		}
		m.finish(ctx, span, k, s, x, res, time.Since(start))
	}()
	m.started.Add(ctx, 1, s.base.add...)
	if !x.EnqueuedAt.IsZero() && !x.AttemptStartedAt.IsZero() { // else unknown, not 0
		m.wait.Record(ctx, x.Wait().Seconds(), s.base.rec...)
	}
	err = next(ctx)
	returned = true
	return err
}

// startAttempt starts the CONSUMER span of the attempt x and returns it
// with the context that carries it. Its parent is the trace context stored
// in the task's metadata, else the span of ctx; for a repeating task
// (x.Repeat > 0), whose every run carries the metadata of the first, the
// span is a new root with a link to that context instead, so that a daily
// task does not add a child to the trace of the request that enqueued it
// months ago every day.
func (m *Middleware) startAttempt(ctx context.Context, x *tasks.Execution, s *series) (context.Context, trace.Span) {
	parent := ctx
	if len(x.Metadata) > 0 {
		// Without a trace context in the metadata, the propagators leave
		// the span of ctx as it is: it stays the parent.
		parent = m.prop.Extract(ctx, propagation.MapCarrier(x.Metadata))
	}
	opts := s.processStart
	if x.Repeat > 0 {
		opts = s.repeatStart
		if sc := trace.SpanContextFromContext(parent); sc.IsValid() {
			opts = append(slices.Clip(opts), trace.WithLinks(trace.Link{SpanContext: sc}))
		}
	}
	ctx, span := m.tracer.Start(parent, s.processName, opts...)
	if span.IsRecording() { // not built for a no-op or unsampled span
		span.SetAttributes(
			semconv.MessagingMessageID(x.ResultID),
			keyAttempt.Int(x.Attempt),
			keyMaxAttempts.Int(x.MaxAttempts),
			keyWorkerID.String(x.WorkerID),
		)
	}
	return ctx, span
}

// finish ends the span of an attempt (nil without tracing) that took d and
// ended with err, and counts it. The span ends and the attempt is counted
// even if recording the error panics; such a panic is reported with
// otel.Handle instead of failing the attempt.
func (m *Middleware) finish(ctx context.Context, span trace.Span, k seriesKey, s *series, x *tasks.Execution, err error, d time.Duration) {
	outcome := tasks.OutcomeFailure // if telling the outcome panics
	defer func() {
		if v := recover(); v != nil {
			otel.Handle(fmt.Errorf("oteltasks: recording the end of an attempt of task %q (%s) panicked: %v", x.TaskName, x.ResultID, v))
		}
		if span != nil {
			span.End()
		}
		o := s.withOutcome(k, outcome)
		m.finished.Add(ctx, 1, o.add...)
		m.duration.Record(ctx, d.Seconds(), o.rec...)
	}()
	outcome = x.Outcome(err)
	if span != nil && span.IsRecording() {
		span.SetAttributes(keyOutcome.String(string(outcome)))
		if outcome == tasks.OutcomeRetry || outcome == tasks.OutcomeFailure {
			recordError(span, err)
		}
	}
}

// recordError records err on span: an exception event, error.type, and the
// status Error. It does not panic, whatever err is: a nil pointer, map,
// slice, func or chan inside a non-nil error interface (which the core
// would not let through, see tasks.BadErrorValue), or an error whose
// methods panic, is recorded with a fixed message naming its type.
func recordError(span trace.Span, err error) {
	if err == nil || !span.IsRecording() {
		return
	}
	typ := fmt.Sprintf("%T", err) // reflection only: no method of err runs
	if isNilValue(err) {
		recordUnusableError(span, typ, "a nil "+typ+" is not a nil error")
		return
	}
	defer func() {
		if v := recover(); v != nil {
			recordUnusableError(span, typ, "its methods panicked")
		}
	}()
	// The calls of err's methods first, so that nothing is recorded
	// when one panics.
	msg := err.Error()
	errType := semconv.ErrorType(err)
	span.RecordError(err)
	span.SetAttributes(errType)
	span.SetStatus(codes.Error, msg)
}

// recordUnusableError records an error value of type typ that cannot be
// used, as recordError would.
func recordUnusableError(span trace.Span, typ, problem string) {
	msg := "oteltasks: unusable error value of type " + typ + ": " + problem
	span.AddEvent(semconv.ExceptionEventName, trace.WithAttributes(semconv.ExceptionType(typ), semconv.ExceptionMessage(msg)))
	span.SetAttributes(semconv.ErrorTypeKey.String(typ))
	span.SetStatus(codes.Error, msg)
}

// isNilValue reports whether err holds a nil pointer, map, slice, func or
// chan: a non-nil error interface whose methods would likely panic (the
// core's rule for an unusable error value).
func isNilValue(err error) bool {
	switch v := reflect.ValueOf(err); v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan:
		return v.IsNil()
	}
	return false
}
