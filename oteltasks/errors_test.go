package oteltasks_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

var (
	panicTask = tasks.Define("oteltasks_test.panic", func(ctx context.Context, s string) (string, error) {
		panic(s)
	})
	goexitTask = tasks.Define("oteltasks_test.goexit", func(ctx context.Context, s string) (string, error) {
		runtime.Goexit()
		return s, nil
	})
)

// rejecting is a dummy backend that refuses every enqueue.
type rejecting struct{ *dummy.Backend }

var errRejected = errors.New("queue full")

func (rejecting) Enqueue(context.Context, *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	return nil, errRejected
}

func (rejecting) EnqueueMany(context.Context, []*tasks.EnqueueRequest) ([]*tasks.RawResult, error) {
	return nil, errRejected
}

// newDummy returns a registered dummy backend wrapped by h's middleware.
func newDummy(t *testing.T, h *harness) *dummy.Backend {
	b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(h.m))
	t.Cleanup(tasks.RegisterBackend(b))
	return b
}

// attemptSpan is what TestErrors checks of an attempt's span.
type attemptSpan struct {
	Outcome    string
	Status     codes.Code
	StatusDesc string
	ErrorType  string
	Exceptions []string
}

func attemptSpans(spans []sdktrace.ReadOnlySpan) []attemptSpan {
	var out []attemptSpan
	for _, s := range summarize(spans, nil) {
		if s.Kind == trace.SpanKindConsumer {
			out = append(out, attemptSpan{Outcome: s.Attrs["gotasks.outcome"], Status: s.Status, StatusDesc: s.StatusDesc,
				ErrorType: s.Attrs["error.type"], Exceptions: s.Exceptions})
		}
	}
	return out
}

func TestErrors(t *testing.T) {
	// A final failure is an error of the attempt's span.
	t.Run("FailingAttempt", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := newDummy(t, h)
		if _, err := failTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []attemptSpan{{Outcome: "failure", Status: codes.Error, StatusDesc: "broken for good",
			ErrorType: "*errors.errorString", Exceptions: []string{"broken for good"}}}
		if diff := cmp.Diff(want, attemptSpans(h.waitSpans(t, 2))); diff != "" {
			t.Errorf("attempt spans (-want +got):\n%s", diff)
		}
	})

	t.Run("Panic", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := newDummy(t, h)
		if _, err := panicTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), "boom"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []attemptSpan{{Outcome: "failure", Status: codes.Error, StatusDesc: "panic: boom",
			ErrorType: "*tasks.PanicError", Exceptions: []string{"panic: boom"}}}
		if diff := cmp.Diff(want, attemptSpans(h.waitSpans(t, 2))); diff != "" {
			t.Errorf("attempt spans (-want +got):\n%s", diff)
		}
	})

	// A task that calls runtime.Goexit does not return through the
	// middleware: its span still ends, and the attempt is counted.
	t.Run("Goexit", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := newDummy(t, h)
		if _, err := goexitTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			_, _ = b.RunReady(context.Background()) // exits the goroutine
		}()
		<-done
		want := []attemptSpan{{Outcome: "failure", Status: codes.Error,
			StatusDesc: "oteltasks: the attempt did not return (a panic or runtime.Goexit)",
			ErrorType:  "*errors.errorString", Exceptions: []string{"oteltasks: the attempt did not return (a panic or runtime.Goexit)"}}}
		if diff := cmp.Diff(want, attemptSpans(h.waitSpans(t, 2))); diff != "" {
			t.Errorf("attempt spans (-want +got):\n%s", diff)
		}
		got := readAttemptMetrics(t, h, b.Name()).Finished
		if diff := cmp.Diff(map[string]int64{"outcome=failure,queue=default,task=oteltasks_test.goexit": 1}, got); diff != "" {
			t.Errorf("gotasks.attempts.finished (-want +got):\n%s", diff)
		}
	})

	// A snooze is no error.
	t.Run("Snooze", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := newDummy(t, h)
		if _, err := snoozeTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), uniqueName("snooze")); err != nil {
			t.Fatal(err)
		}
		if _, err := b.RunReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		want := []attemptSpan{{Outcome: "snooze", Status: codes.Unset}}
		if diff := cmp.Diff(want, attemptSpans(h.waitSpans(t, 2))); diff != "" {
			t.Errorf("attempt spans (-want +got):\n%s", diff)
		}
	})

	// A failed attempt to be retried is an error; the retry is a sibling
	// under the same enqueue span.
	t.Run("Retry", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			h := newHarness(t)
			b := openDatabase(t, dsn, database.WithBackendOptions(tasks.WithMiddleware(h.m)))
			res, err := flakyTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), uniqueName("flaky"))
			if err != nil {
				t.Fatal(err)
			}
			startWorker(t, b)
			spans := h.waitSpans(t, 3)
			wait(t, res)
			labels := map[string]string{res.ID: "<id>"}
			want := []spanSummary{
				{Name: "enqueue oteltasks_test.flaky", Kind: trace.SpanKindProducer, SameTraceAs: "enqueue oteltasks_test.flaky",
					Attrs: producerAttrs("oteltasks_test.flaky", "default", b.Name(), "<id>")},
				{Name: "process oteltasks_test.flaky", Kind: trace.SpanKindConsumer, Parent: "enqueue oteltasks_test.flaky",
					SameTraceAs: "enqueue oteltasks_test.flaky",
					Status:      codes.Error, StatusDesc: "first call fails", Exceptions: []string{"first call fails"},
					Attrs: with(consumerAttrs("oteltasks_test.flaky", "default", b.Name(), "<id>", 1, 3, tasks.OutcomeRetry),
						"error.type", "*errors.errorString")},
				{Name: "process oteltasks_test.flaky", Kind: trace.SpanKindConsumer, Parent: "enqueue oteltasks_test.flaky",
					SameTraceAs: "enqueue oteltasks_test.flaky",
					Attrs:       consumerAttrs("oteltasks_test.flaky", "default", b.Name(), "<id>", 2, 3, tasks.OutcomeSuccess)},
			}
			spans = append([]sdktrace.ReadOnlySpan{spanNamed(t, spans, "enqueue oteltasks_test.flaky")}, spans...)
			if diff := cmp.Diff(want, summarize(spans, labels)[1:], sortSpans); diff != "" {
				t.Errorf("spans (-want +got):\n%s", diff)
			}
		})
	})

	// An enqueue the backend refuses is an error of the enqueue span, and
	// is not counted.
	t.Run("RejectedEnqueue", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := rejecting{dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("rejecting")), tasks.WithMiddleware(h.m))}
		t.Cleanup(tasks.RegisterBackend(b))
		_, err := okTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), 1)
		if !errors.Is(err, errRejected) {
			t.Fatalf("Enqueue = %v, want %v", err, errRejected)
		}
		spans := h.waitSpans(t, 1)
		got := summarize(spans, nil)[0]
		if diff := cmp.Diff(spanSummary{Name: "enqueue oteltasks_test.ok", Kind: trace.SpanKindProducer,
			Status: codes.Error, StatusDesc: "queue full", Exceptions: []string{"queue full"},
			SameTraceAs: "enqueue oteltasks_test.ok",
			Attrs: map[string]string{
				"messaging.system": "gotasks", "messaging.operation.name": "enqueue", "messaging.operation.type": "send",
				"messaging.destination.name": "default", "messaging.message.id": got.Attrs["messaging.message.id"],
				"gotasks.task.name": "oteltasks_test.ok", "error.type": "*errors.errorString",
			}}, got); diff != "" {
			t.Errorf("enqueue span (-want +got):\n%s", diff)
		}
		if got := readAttemptMetrics(t, h, b.Name()).Enqueued; len(got) != 0 {
			t.Errorf("gotasks.tasks.enqueued %v, want nothing counted", got)
		}
	})
}

// with returns m with k set to v.
func with(m map[string]string, k, v string) map[string]string {
	m[k] = v
	return m
}

// nilErr is an error type whose nil pointer is unusable.
type nilErr struct{ msg string }

func (e *nilErr) Error() string { return e.msg }

// panickyErr is an error whose Error method panics.
type panickyErr struct{}

func (panickyErr) Error() string { panic("no message") }

// recordError never panics: a typed nil or an error whose methods panic is
// recorded with a fixed message naming its type.
func TestRecordError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		err  error
		want attemptSpan
	}{
		{name: "TypedNil", err: (*nilErr)(nil), want: attemptSpan{Status: codes.Error,
			StatusDesc: "oteltasks: unusable error value of type *oteltasks_test.nilErr: a nil *oteltasks_test.nilErr is not a nil error",
			ErrorType:  "*oteltasks_test.nilErr",
			Exceptions: []string{"oteltasks: unusable error value of type *oteltasks_test.nilErr: a nil *oteltasks_test.nilErr is not a nil error"}}},
		{name: "PanickingMethod", err: panickyErr{}, want: attemptSpan{Status: codes.Error,
			StatusDesc: "oteltasks: unusable error value of type oteltasks_test.panickyErr: its methods panicked",
			ErrorType:  "oteltasks_test.panickyErr",
			Exceptions: []string{"oteltasks: unusable error value of type oteltasks_test.panickyErr: its methods panicked"}}},
		{name: "Usable", err: &nilErr{"bad"}, want: attemptSpan{Status: codes.Error, StatusDesc: "bad",
			ErrorType: "*oteltasks_test.nilErr", Exceptions: []string{"bad"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			_, span := h.tracer.Start(context.Background(), "attempt", trace.WithSpanKind(trace.SpanKindConsumer))
			oteltasks.RecordError(span, tc.err)
			span.End()
			if diff := cmp.Diff([]attemptSpan{tc.want}, attemptSpans(h.waitSpans(t, 1))); diff != "" {
				t.Errorf("span (-want +got):\n%s", diff)
			}
		})
	}
}

// panickyProvider hands out spans whose SetStatus panics (an exporter's
// or a vendor SDK's bug), wrapping those of tp.
type panickyProvider struct {
	embedded.TracerProvider
	tp trace.TracerProvider
}

func (p panickyProvider) Tracer(name string, opts ...trace.TracerOption) trace.Tracer {
	return panickyTracer{p.tp.Tracer(name, opts...)}
}

type panickyTracer struct{ trace.Tracer }

func (t panickyTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	ctx, s := t.Tracer.Start(ctx, name, opts...)
	p := panickySpan{s}
	return trace.ContextWithSpan(ctx, p), p
}

type panickySpan struct{ trace.Span }

func (panickySpan) SetStatus(codes.Code, string) { panic("exporter bug") }

// A panic while an attempt's error is recorded neither stops the span
// from ending nor the attempt from being counted, nor changes the
// attempt's outcome.
func TestPanicWhileRecording(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	m, err := oteltasks.New(oteltasks.WithTracerProvider(panickyProvider{tp: h.tp}), oteltasks.WithMeterProvider(h.mp))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(m))
	t.Cleanup(tasks.RegisterBackend(b))
	res, err := failTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RunReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := res.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := res.Value(); res.Status != tasks.StatusFailed || !strings.Contains(fmt.Sprint(err), errBroken.Error()) {
		t.Errorf("result %s, %v; want FAILED with the task's own error %q", res.Status, err, errBroken)
	}
	spans := h.waitSpans(t, 2)
	if got := spanNamed(t, spans, "process oteltasks_test.fail"); got.EndTime().IsZero() {
		t.Errorf("the attempt's span did not end")
	}
	got := readAttemptMetrics(t, h, b.Name()).Finished
	if diff := cmp.Diff(map[string]int64{withOutcome(failDefault, tasks.OutcomeFailure): 1}, got); diff != "" {
		t.Errorf("gotasks.attempts.finished (-want +got):\n%s", diff)
	}
	if msgs := handledMentioning(res.ID); len(msgs) != 1 || !strings.Contains(msgs[0], "exporter bug") {
		t.Errorf("otel.Handle got %q, want one report of the panic", msgs)
	}
}
