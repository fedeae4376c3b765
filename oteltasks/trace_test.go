package oteltasks_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"

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

	// Baggage set where the task is enqueued reaches the task.
	t.Run("Baggage", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(h.m))
		t.Cleanup(tasks.RegisterBackend(b))
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
}

// baggageTask returns the value of the baggage member named key.
var baggageTask = tasks.Define("oteltasks_test.baggage", func(ctx context.Context, key string) (string, error) {
	return baggage.FromContext(ctx).Member(key).Value(), nil
})
