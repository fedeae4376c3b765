package oteltasks

import (
	"context"
	"errors"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/tasks"
)

// requestCarrier is a propagation.TextMapCarrier over the metadata of an
// enqueue request: the propagator writes the trace context there, and it is
// stored with the task.
type requestCarrier struct{ req *tasks.EnqueueRequest }

// Get implements propagation.TextMapCarrier.
func (c requestCarrier) Get(key string) string { return c.req.Metadata[key] }

// Set implements propagation.TextMapCarrier.
func (c requestCarrier) Set(key, value string) { c.req.SetMetadata(key, value) }

// Keys implements propagation.TextMapCarrier.
func (c requestCarrier) Keys() []string { return propagation.MapCarrier(c.req.Metadata).Keys() }

// Enqueue implements tasks.Middleware: one PRODUCER span for the call, its
// context injected into the metadata of every request, and the enqueued
// tasks counted once the backend accepted them.
func (m *Middleware) Enqueue(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
	if len(reqs) == 0 {
		return next(ctx, reqs)
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
	for _, req := range reqs {
		m.prop.Inject(ctx, requestCarrier{req})
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
// the child of the trace context in the task's metadata (else of the span
// in ctx), passed on to the task; the attempt counted and timed.
func (m *Middleware) Execute(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
	k, s := m.series.get(x.TaskName, x.Queue, x.BackendName)
	parent := ctx
	if len(x.Metadata) > 0 {
		// Without a trace context in the metadata, the propagators leave
		// the span of ctx as it is: it stays the parent.
		parent = m.prop.Extract(ctx, propagation.MapCarrier(x.Metadata))
	}
	ctx, span := m.tracer.Start(parent, s.processName, s.processStart...)
	if span.IsRecording() { // not built for a no-op or unsampled span
		span.SetAttributes(
			semconv.MessagingMessageID(x.ResultID),
			keyAttempt.Int(x.Attempt),
			keyMaxAttempts.Int(x.MaxAttempts),
			keyWorkerID.String(x.WorkerID),
		)
	}
	m.started.Add(ctx, 1, s.base.add...)
	m.wait.Record(ctx, x.Wait().Seconds(), s.base.rec...)

	start := time.Now()
	returned := false
	defer func() {
		if !returned { // a panic or runtime.Goexit unwinds through here
			m.finish(ctx, span, k, s, x, errNoReturn, time.Since(start))
		}
	}()
	err := next(ctx)
	returned = true
	m.finish(ctx, span, k, s, x, err, time.Since(start))
	return err
}

// finish ends the span of an attempt that took d and ended with err, and
// counts it.
func (m *Middleware) finish(ctx context.Context, span trace.Span, k seriesKey, s *series, x *tasks.Execution, err error, d time.Duration) {
	outcome := x.Outcome(err)
	if span.IsRecording() {
		span.SetAttributes(keyOutcome.String(string(outcome)))
		if outcome == tasks.OutcomeRetry || outcome == tasks.OutcomeFailure {
			recordError(span, err)
		}
	}
	span.End()
	o := s.withOutcome(k, outcome)
	m.finished.Add(ctx, 1, o.add...)
	m.duration.Record(ctx, d.Seconds(), o.rec...)
}

// recordError records err on span: an exception event, error.type, and the
// status Error.
func recordError(span trace.Span, err error) {
	if !span.IsRecording() {
		return
	}
	span.RecordError(err)
	span.SetAttributes(semconv.ErrorType(err))
	span.SetStatus(codes.Error, err.Error())
}
