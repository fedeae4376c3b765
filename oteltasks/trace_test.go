package oteltasks_test

import (
	"context"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

// spanSummary is what the tests compare of a span.
type spanSummary struct {
	Name string
	Kind trace.SpanKind
	// Parent is the parent's name; "" for a root.
	Parent      string
	Status      codes.Code
	StatusDesc  string
	Attrs       map[string]string
	Exceptions  []string // the messages of the exception events
	SameTraceAs string   // the name of the first span, when in its trace
}

// summarize summarizes spans. Attribute values found in labels are
// replaced by their label (ids that change from run to run); a non-empty
// gotasks.worker.id is "<set>".
func summarize(spans []sdktrace.ReadOnlySpan, labels map[string]string) []spanSummary {
	byID := map[trace.SpanID]string{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID()] = s.Name()
	}
	var out []spanSummary
	for _, s := range spans {
		sum := spanSummary{Name: s.Name(), Kind: s.SpanKind(), Status: s.Status().Code, StatusDesc: s.Status().Description,
			Attrs: map[string]string{}}
		if p := s.Parent(); p.IsValid() {
			sum.Parent = byID[p.SpanID()]
			if sum.Parent == "" {
				sum.Parent = "<unknown " + p.SpanID().String() + ">"
			}
		}
		if s.SpanContext().TraceID() == spans[0].SpanContext().TraceID() {
			sum.SameTraceAs = spans[0].Name()
		}
		for _, kv := range s.Attributes() {
			v := kv.Value.Emit()
			if l, ok := labels[v]; ok {
				v = l
			}
			if kv.Key == "gotasks.worker.id" && v != "" {
				v = "<set>"
			}
			sum.Attrs[string(kv.Key)] = v
		}
		for _, e := range s.Events() {
			if e.Name == "exception" {
				for _, kv := range e.Attributes {
					if kv.Key == "exception.message" {
						sum.Exceptions = append(sum.Exceptions, kv.Value.AsString())
					}
				}
			}
		}
		out = append(out, sum)
	}
	return out
}

var sortSpans = cmpopts.SortSlices(func(a, b spanSummary) bool {
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Attrs["gotasks.attempt"] < b.Attrs["gotasks.attempt"]
})

// producerAttrs are the attributes of the enqueue span of one task.
func producerAttrs(task, queue, backend, id string) map[string]string {
	return map[string]string{
		"messaging.system":           "gotasks",
		"messaging.operation.name":   "enqueue",
		"messaging.operation.type":   "send",
		"messaging.destination.name": queue,
		"messaging.message.id":       id,
		"gotasks.task.name":          task,
		"gotasks.backend":            backend,
	}
}

// consumerAttrs are the attributes of an attempt's span.
func consumerAttrs(task, queue, backend, id string, attempt, maxAttempts int, outcome tasks.Outcome) map[string]string {
	return map[string]string{
		"messaging.system":           "gotasks",
		"messaging.operation.name":   "process",
		"messaging.operation.type":   "process",
		"messaging.destination.name": queue,
		"messaging.message.id":       id,
		"gotasks.task.name":          task,
		"gotasks.backend":            backend,
		"gotasks.attempt":            strconv.Itoa(attempt),
		"gotasks.max_attempts":       strconv.Itoa(maxAttempts),
		"gotasks.worker.id":          "<set>",
		"gotasks.outcome":            string(outcome),
	}
}

// traceparent is the W3C traceparent of a sampled span.
func traceparent(s sdktrace.ReadOnlySpan) string {
	return fmt.Sprintf("00-%s-%s-01", s.SpanContext().TraceID(), s.SpanContext().SpanID())
}

func spanNamed(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	for _, s := range spans {
		if s.Name() == name {
			return s
		}
	}
	t.Fatalf("no span %q among %v", name, spanNames(spans))
	return nil
}

// checkOneTrace enqueues orderTask on the backend named backend inside a
// span of its own, as a web request would, runs what run runs (nothing on
// the immediate backend), and checks that the request, the enqueue, the
// attempt, the follow-up's enqueue and its attempt are one trace.
// maxAttempts is what the backend gives orderTask.
func checkOneTrace(t *testing.T, h *harness, backend string, maxAttempts int, run func()) {
	t.Helper()
	ctx, req := h.tracer.Start(context.Background(), "GET /orders", trace.WithSpanKind(trace.SpanKindServer))
	res, err := orderTask.Using(tasks.WithBackend(backend)).Enqueue(ctx, "order-1")
	req.End()
	if err != nil {
		t.Fatal(err)
	}
	if run != nil {
		run()
	}
	spans := h.waitSpans(t, 5)
	if !res.IsFinished() {
		wait(t, res)
	}
	followupID, err := res.Value()
	if err != nil {
		t.Fatalf("order task: %v", err)
	}

	enqueueSpan := spanNamed(t, spans, "enqueue oteltasks_test.order")
	if got, want := res.Metadata["traceparent"], traceparent(enqueueSpan); got != want {
		t.Errorf("stored traceparent %q, want the enqueue span's %q (metadata %v)", got, want, res.Metadata)
	}

	labels := map[string]string{res.ID: "<order id>", followupID: "<followup id>"}
	want := []spanSummary{
		{Name: "GET /orders", Kind: trace.SpanKindServer, Attrs: map[string]string{}, SameTraceAs: "GET /orders"},
		{Name: "enqueue oteltasks_test.order", Kind: trace.SpanKindProducer, Parent: "GET /orders",
			Attrs: producerAttrs("oteltasks_test.order", "orders", backend, "<order id>"), SameTraceAs: "GET /orders"},
		{Name: "process oteltasks_test.order", Kind: trace.SpanKindConsumer, Parent: "enqueue oteltasks_test.order",
			Attrs:       consumerAttrs("oteltasks_test.order", "orders", backend, "<order id>", 1, maxAttempts, tasks.OutcomeSuccess),
			SameTraceAs: "GET /orders"},
		{Name: "enqueue oteltasks_test.followup", Kind: trace.SpanKindProducer, Parent: "process oteltasks_test.order",
			Attrs: producerAttrs("oteltasks_test.followup", "default", backend, "<followup id>"), SameTraceAs: "GET /orders"},
		{Name: "process oteltasks_test.followup", Kind: trace.SpanKindConsumer, Parent: "enqueue oteltasks_test.followup",
			Attrs:       consumerAttrs("oteltasks_test.followup", "default", backend, "<followup id>", 1, maxAttempts, tasks.OutcomeSuccess),
			SameTraceAs: "GET /orders"},
	}
	// The request span first: it is the one the others must share a trace
	// with.
	spans = append([]sdktrace.ReadOnlySpan{spanNamed(t, spans, "GET /orders")}, spans...)
	got := summarize(spans, labels)[1:]
	if diff := cmp.Diff(want, got, sortSpans); diff != "" {
		t.Errorf("spans (-want +got):\n%s", diff)
	}
}

func TestTrace(t *testing.T) {
	t.Run("OneTrace", func(t *testing.T) {
		t.Run("dummy", func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(h.m))
			t.Cleanup(tasks.RegisterBackend(b))
			checkOneTrace(t, h, b.Name(), 1, func() {
				if n, err := b.RunReady(context.Background()); n != 2 || err != nil {
					t.Fatalf("RunReady = %d, %v; want 2 tasks (the order and its follow-up)", n, err)
				}
			})
		})
		t.Run("immediate", func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			b := immediate.New(immediate.WithConfig(tasks.WithLogger(discard), tasks.WithName(uniqueName("immediate")), tasks.WithMiddleware(h.m)))
			t.Cleanup(tasks.RegisterBackend(b))
			checkOneTrace(t, h, b.Name(), 1, nil)
		})
		t.Run("database", func(t *testing.T) {
			t.Parallel()
			dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
				h := newHarness(t)
				b := openDatabase(t, dsn, database.WithBackendOptions(tasks.WithMiddleware(h.m)))
				startWorker(t, b)
				checkOneTrace(t, h, b.Name(), tasks.DefaultMaxAttempts, nil)
			})
		})
	})

	t.Run("BatchEnqueue", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(h.m))
		t.Cleanup(tasks.RegisterBackend(b))
		rs, err := okTask.Using(tasks.WithBackend(b.Name())).EnqueueMany(context.Background(), []int{1, 2, 3})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		spans := h.waitSpans(t, 4)
		producer := spanNamed(t, spans, "enqueue oteltasks_test.ok")
		labels := map[string]string{}
		for i, r := range rs {
			labels[r.ID] = fmt.Sprintf("<id %d>", i)
			if got, want := r.Metadata["traceparent"], traceparent(producer); got != want {
				t.Errorf("task %d: stored traceparent %q, want the batch's enqueue span's %q", i, got, want)
			}
		}
		attrs := producerAttrs("oteltasks_test.ok", "default", b.Name(), "")
		delete(attrs, "messaging.message.id")
		attrs["messaging.batch.message_count"] = "3"
		want := []spanSummary{
			{Name: "enqueue oteltasks_test.ok", Kind: trace.SpanKindProducer, Attrs: attrs, SameTraceAs: "enqueue oteltasks_test.ok"},
		}
		for i := range rs {
			want = append(want, spanSummary{Name: "process oteltasks_test.ok", Kind: trace.SpanKindConsumer,
				Parent: "enqueue oteltasks_test.ok", SameTraceAs: "enqueue oteltasks_test.ok",
				Attrs: consumerAttrs("oteltasks_test.ok", "default", b.Name(), fmt.Sprintf("<id %d>", i), 1, 1, tasks.OutcomeSuccess)})
		}
		spans = append([]sdktrace.ReadOnlySpan{producer}, spans...)
		got := summarize(spans, labels)[1:]
		sortByID := cmpopts.SortSlices(func(a, b spanSummary) bool {
			return a.Name+a.Attrs["messaging.message.id"] < b.Name+b.Attrs["messaging.message.id"]
		})
		if diff := cmp.Diff(want, got, sortByID); diff != "" {
			t.Errorf("spans (-want +got):\n%s", diff)
		}
	})

	// A propagator that writes nothing leaves the metadata without a trace
	// context: on the immediate backend the attempt's parent is then the
	// span of the context it runs in, the enqueue span.
	t.Run("ParentFromContextWithoutMetadata", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, oteltasks.WithPropagator(propagation.NewCompositeTextMapPropagator()))
		b := immediate.New(immediate.WithConfig(tasks.WithLogger(discard), tasks.WithName(uniqueName("immediate")), tasks.WithMiddleware(h.m)))
		t.Cleanup(tasks.RegisterBackend(b))
		res, err := okTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), 7)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Metadata) != 0 {
			t.Errorf("metadata %v, want none", res.Metadata)
		}
		spans := h.waitSpans(t, 2)
		producer, consumer := spanNamed(t, spans, "enqueue oteltasks_test.ok"), spanNamed(t, spans, "process oteltasks_test.ok")
		if consumer.Parent().SpanID() != producer.SpanContext().SpanID() {
			t.Errorf("attempt's parent %v, want the enqueue span %v", consumer.Parent().SpanID(), producer.SpanContext().SpanID())
		}
	})

	// Baggage set where the task is enqueued reaches the task when the
	// propagator carries it.
	t.Run("Baggage", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t, oteltasks.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})))
		b := newDummy(t, h)
		member, _ := baggage.NewMember("tenant", "acme")
		bag, _ := baggage.New(member)
		res, err := baggageTask.Using(tasks.WithBackend(b.Name())).Enqueue(baggage.ContextWithBaggage(context.Background(), bag), "tenant")
		if err != nil {
			t.Fatal(err)
		}
		if got := res.Metadata["baggage"]; got != "tenant=acme" {
			t.Errorf("stored baggage %q, want tenant=acme", got)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := res.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v, err := res.Value(); v != "acme" || err != nil {
			t.Errorf("the task saw tenant %q (%v), want acme", v, err)
		}
	})

	// The default propagator is W3C Trace Context only: baggage (user
	// ids, …) is not stored with the task.
	t.Run("NoBaggageByDefault", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := newDummy(t, h)
		member, _ := baggage.NewMember("user", "u-1234")
		bag, _ := baggage.New(member)
		ctx, span := h.tracer.Start(baggage.ContextWithBaggage(context.Background(), bag), "GET /orders")
		res, err := baggageTask.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, "user")
		span.End()
		if err != nil {
			t.Fatal(err)
		}
		spans := h.waitSpans(t, 2)
		want := map[string]string{"traceparent": traceparent(spanNamed(t, spans, "enqueue oteltasks_test.baggage"))}
		if diff := cmp.Diff(want, res.Metadata); diff != "" {
			t.Errorf("stored metadata (-want +got):\n%s", diff)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := res.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if v, err := res.Value(); v != "" || err != nil {
			t.Errorf("the task saw user %q (%v), want none", v, err)
		}
	})
}

// baggageTask returns the value of the baggage member named key.
var baggageTask = tasks.Define("oteltasks_test.baggage", func(ctx context.Context, key string) (string, error) {
	return baggage.FromContext(ctx).Member(key).Value(), nil
})

// seenSpan is what spanTask saw and did.
type seenSpan struct {
	TraceID, SpanID string // of the span in its context
	FollowupID      string
}

// spanTask returns the span of its context and enqueues a follow-up.
var spanTask = tasks.Define("oteltasks_test.span", func(ctx context.Context, key string) (seenSpan, error) {
	sc := trace.SpanFromContext(ctx).SpanContext()
	r, err := followupTask.Enqueue(ctx, key)
	if err != nil {
		return seenSpan{}, err
	}
	return seenSpan{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), FollowupID: r.ID}, nil
})

// Not parallel: tasks.Use wraps every backend of the process.
func TestWithoutTracing(t *testing.T) {
	// The worker command's set-up: the program's tracing instance for
	// every backend (tasks.Use), and a metrics-only instance of the
	// backend's own inside it. The task runs in the tracing instance's
	// consumer span, its follow-up is that span's child, and the
	// metrics-only instance counts.
	t.Run("BesideTracing", func(t *testing.T) {
		tracing := newHarness(t)
		t.Cleanup(tasks.Use(tracing.m))
		counting := newHarness(t, oteltasks.WithoutTracing())
		b := newDummy(t, counting)

		ctx, req := tracing.tracer.Start(context.Background(), "GET /orders", trace.WithSpanKind(trace.SpanKindServer))
		res, err := spanTask.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, "k")
		req.End()
		if err != nil {
			t.Fatal(err)
		}
		if n, err := b.RunReady(context.Background()); n != 2 || err != nil {
			t.Fatalf("RunReady = %d, %v; want 2 tasks (the task and its follow-up)", n, err)
		}
		if err := res.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		seen, err := res.Value()
		if err != nil {
			t.Fatalf("span task: %v", err)
		}

		spans := tracing.waitSpans(t, 5)
		consumer := spanNamed(t, spans, "process oteltasks_test.span")
		wantSeen := seenSpan{TraceID: consumer.SpanContext().TraceID().String(), SpanID: consumer.SpanContext().SpanID().String(),
			FollowupID: seen.FollowupID}
		if diff := cmp.Diff(wantSeen, seen); diff != "" {
			t.Errorf("the task's current span, want the tracing instance's attempt span (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]string{"traceparent": traceparent(spanNamed(t, spans, "enqueue oteltasks_test.span"))}, res.Metadata); diff != "" {
			t.Errorf("stored metadata, the tracing instance's only (-want +got):\n%s", diff)
		}
		spans = append([]sdktrace.ReadOnlySpan{spanNamed(t, spans, "GET /orders")}, spans...)
		type link struct{ Name, Parent string }
		var got []link
		for _, s := range summarize(spans, nil)[1:] {
			got = append(got, link{s.Name, s.Parent})
		}
		want := []link{
			{"GET /orders", ""},
			{"enqueue oteltasks_test.span", "GET /orders"},
			{"process oteltasks_test.span", "enqueue oteltasks_test.span"},
			{"enqueue oteltasks_test.followup", "process oteltasks_test.span"},
			{"process oteltasks_test.followup", "enqueue oteltasks_test.followup"},
		}
		byName := cmpopts.SortSlices(func(a, b link) bool { return a.Name < b.Name })
		if diff := cmp.Diff(want, got, byName); diff != "" {
			t.Errorf("spans and their parents (-want +got):\n%s", diff)
		}

		if got := counting.ended(); len(got) != 0 {
			t.Errorf("the metrics-only instance ended spans %v, want none", spanNames(got))
		}
		const spanDefault, followupDefault = "queue=default,task=oteltasks_test.span", "queue=default,task=oteltasks_test.followup"
		wantMetrics := attemptMetrics{
			Enqueued: map[string]int64{spanDefault: 1, followupDefault: 1},
			Started:  map[string]int64{spanDefault: 1, followupDefault: 1},
			Finished: map[string]int64{
				withOutcome(spanDefault, tasks.OutcomeSuccess):     1,
				withOutcome(followupDefault, tasks.OutcomeSuccess): 1,
			},
			DurationCount: map[string]uint64{
				withOutcome(spanDefault, tasks.OutcomeSuccess):     1,
				withOutcome(followupDefault, tasks.OutcomeSuccess): 1,
			},
			WaitCount: map[string]uint64{spanDefault: 1, followupDefault: 1},
		}
		if diff := cmp.Diff(wantMetrics, readAttemptMetrics(t, counting, b.Name())); diff != "" {
			t.Errorf("metrics of the metrics-only instance (-want +got):\n%s", diff)
		}
	})

	// Alone, it writes no metadata and leaves the contexts as they are.
	t.Run("Alone", func(t *testing.T) {
		counting := newHarness(t, oteltasks.WithoutTracing())
		b := newDummy(t, counting)
		ctx, req := counting.tracer.Start(context.Background(), "GET /orders")
		res, err := spanTask.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, "k")
		req.End()
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Metadata) != 0 {
			t.Errorf("stored metadata %v, want none", res.Metadata)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := res.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		seen, err := res.Value()
		if err != nil {
			t.Fatal(err)
		}
		var none trace.SpanContext
		if diff := cmp.Diff(seenSpan{TraceID: none.TraceID().String(), SpanID: none.SpanID().String(), FollowupID: seen.FollowupID}, seen); diff != "" {
			t.Errorf("the task's span, want none (-want +got):\n%s", diff)
		}
		if got := spanNames(counting.ended()); !cmp.Equal(got, []string{"GET /orders"}) {
			t.Errorf("ended spans %v, want the test's own only", got)
		}
		if got := readAttemptMetrics(t, counting, b.Name()).Finished; len(got) != 2 {
			t.Errorf("gotasks.attempts.finished %v, want the task and its follow-up", got)
		}
	})
}

// Each run of a repeating task is the root of a trace of its own, linked
// to the enqueue span, not one more child of the request that enqueued the
// task (which every run's metadata names).
func TestRepeat(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	b := openDatabase(t, dbtest.SQLiteDSN(t), database.WithBackendOptions(tasks.WithMiddleware(h.m)))
	ctx, req := h.tracer.Start(context.Background(), "POST /reports", trace.WithSpanKind(trace.SpanKindServer))
	if _, err := okTask.Using(tasks.WithBackend(b.Name()), tasks.WithRepeat(time.Second)).Enqueue(ctx, 1); err != nil {
		t.Fatal(err)
	}
	req.End()
	startWorker(t, b)
	runs := func() []sdktrace.ReadOnlySpan {
		var out []sdktrace.ReadOnlySpan
		for _, s := range h.ended() {
			if s.Name() == "process oteltasks_test.ok" {
				out = append(out, s)
			}
		}
		return out
	}
	dbtest.WaitUntil(t, 10*time.Second, "two runs of the repeating task", func() bool { return len(runs()) >= 2 })

	enqueue := spanNamed(t, h.ended(), "enqueue oteltasks_test.ok")
	if enqueue.Parent().SpanID() != req.SpanContext().SpanID() {
		t.Errorf("the enqueue span's parent %v, want the request %v", enqueue.Parent().SpanID(), req.SpanContext().SpanID())
	}
	type run struct {
		Root           bool
		InEnqueueTrace bool
		Links          []string // traceparents
		Outcome        string
	}
	var got []run
	traces, ids := map[trace.TraceID]bool{}, map[string]bool{}
	for _, s := range runs()[:2] {
		r := run{Root: !s.Parent().IsValid(), InEnqueueTrace: s.SpanContext().TraceID() == enqueue.SpanContext().TraceID()}
		for _, l := range s.Links() {
			r.Links = append(r.Links, fmt.Sprintf("00-%s-%s-%s", l.SpanContext.TraceID(), l.SpanContext.SpanID(), l.SpanContext.TraceFlags()))
		}
		for _, kv := range s.Attributes() {
			if kv.Key == "gotasks.outcome" {
				r.Outcome = kv.Value.AsString()
			}
			if kv.Key == "messaging.message.id" {
				ids[kv.Value.AsString()] = true
			}
		}
		traces[s.SpanContext().TraceID()] = true
		got = append(got, r)
	}
	want := []run{
		{Root: true, Links: []string{traceparent(enqueue)}, Outcome: "success"},
		{Root: true, Links: []string{traceparent(enqueue)}, Outcome: "success"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("runs of the repeating task (-want +got):\n%s", diff)
	}
	if len(traces) != 2 || len(ids) != 2 {
		t.Errorf("two runs in %d traces with %d message ids, want a trace and a result each", len(traces), len(ids))
	}
}

// Tracing never makes an enqueue fail: what the propagator writes beyond
// the trace context is not stored when it would take the task's metadata
// over the core's limits, nor the trace context when even that does not
// fit.
func TestMetadataLimits(t *testing.T) {
	withBaggage := oteltasks.WithPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	// bigBaggage is about 7 KiB of baggage.
	var members []baggage.Member
	for i := range 2 {
		m, err := baggage.NewMember(fmt.Sprintf("k%d", i), strings.Repeat("v", 3500))
		if err != nil {
			t.Fatal(err)
		}
		members = append(members, m)
	}
	bigBaggage, err := baggage.New(members...)
	if err != nil {
		t.Fatal(err)
	}
	smallMember, _ := baggage.NewMember("tenant", "acme")
	smallBaggage, _ := baggage.New(smallMember)
	entries := func(n int) map[string]string {
		md := map[string]string{}
		for i := range n {
			md[fmt.Sprintf("e%02d", i)] = "x"
		}
		return md
	}
	with := func(md map[string]string, kv ...string) map[string]string {
		out := maps.Clone(md)
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	notes := map[string]string{"notes": strings.Repeat("n", 10<<10)}
	for _, tc := range []struct {
		name     string
		metadata map[string]string
		bag      baggage.Baggage
		// want is the stored metadata; a traceparent "<enqueue>" is the
		// enqueue span's.
		want map[string]string
		// dropped are the entries reported not stored.
		dropped string
	}{
		{name: "Fits", metadata: notes, bag: smallBaggage,
			want: with(notes, "traceparent", "<enqueue>", "baggage", "tenant=acme")},
		{name: "TooManyBytes", metadata: notes, bag: bigBaggage,
			want: with(notes, "traceparent", "<enqueue>"), dropped: `["baggage"]`},
		{name: "TooManyEntries", metadata: entries(tasks.MaxMetadataEntries - 1), bag: smallBaggage,
			want: with(entries(tasks.MaxMetadataEntries-1), "traceparent", "<enqueue>"), dropped: `["baggage"]`},
		// The task's own baggage entry comes back.
		{name: "Overwritten", metadata: with(notes, "baggage", "mine"), bag: bigBaggage,
			want: with(notes, "baggage", "mine", "traceparent", "<enqueue>"), dropped: `["baggage"]`},
		{name: "NoRoomForTheTraceContext", metadata: entries(tasks.MaxMetadataEntries), bag: smallBaggage,
			want: entries(tasks.MaxMetadataEntries), dropped: `["baggage" "traceparent"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, withBaggage)
			b := newDummy(t, h)
			res, err := okTask.Using(tasks.WithBackend(b.Name()), tasks.WithMetadata(tc.metadata)).
				Enqueue(baggage.ContextWithBaggage(context.Background(), tc.bag), 1)
			if err != nil {
				t.Fatalf("Enqueue: %v", err)
			}
			want := maps.Clone(tc.want)
			if want["traceparent"] == "<enqueue>" {
				want["traceparent"] = traceparent(spanNamed(t, h.waitSpans(t, 1), "enqueue oteltasks_test.ok"))
			}
			if diff := cmp.Diff(want, res.Metadata); diff != "" {
				t.Errorf("stored metadata (-want +got):\n%s", diff)
			}
			var wantHandled []string
			if tc.dropped != "" {
				wantHandled = []string{fmt.Sprintf("oteltasks: task %q (%s): its metadata would be over the limits (%d entries, %d bytes) with the propagator's entries %s: they are not stored",
					okTask.Name(), res.ID, tasks.MaxMetadataEntries, tasks.MaxMetadataBytes, tc.dropped)}
			}
			if diff := cmp.Diff(wantHandled, handledMentioning(res.ID)); diff != "" {
				t.Errorf("reported with otel.Handle (-want +got):\n%s", diff)
			}
		})
	}
}
