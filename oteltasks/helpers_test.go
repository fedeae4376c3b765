package oteltasks_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

// harness is a Middleware on its own SDK providers, recording every ended
// span and collecting metrics on demand.
type harness struct {
	m      *oteltasks.Middleware
	tp     *sdktrace.TracerProvider
	tracer trace.Tracer // for the test's own spans ("GET /orders")
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	mp     *sdkmetric.MeterProvider
}

// newHarness returns a harness whose Middleware has opts too; it is closed
// when the test ends.
func newHarness(t testing.TB, opts ...oteltasks.Option) *harness {
	t.Helper()
	h := &harness{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	h.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(h.spans), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(h.reader))
	h.mp = mp
	h.tracer = h.tp.Tracer("oteltasks_test")
	m, err := oteltasks.New(append([]oteltasks.Option{
		oteltasks.WithTracerProvider(h.tp), oteltasks.WithMeterProvider(mp),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	h.m = m
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		_ = mp.Shutdown(context.Background())
		_ = h.tp.Shutdown(context.Background())
	})
	return h
}

// ended returns the ended spans.
func (h *harness) ended() []sdktrace.ReadOnlySpan { return h.spans.Ended() }

// waitSpans waits until n spans have ended (10 s at most).
func (h *harness) waitSpans(t *testing.T, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := h.ended()
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d spans ended, want %d: %v", len(got), n, spanNames(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func spanNames(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// collect reads the metrics.
func (h *harness) collect(t testing.TB) metricdata.ResourceMetrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := h.reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect: %v", err)
	}
	return rm
}

// findMetric returns the metric called name, or false.
func findMetric(rm metricdata.ResourceMetrics, name string) (metricdata.Metrics, bool) {
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

// seriesKey renders a data point's attributes, without backend, as
// "k=v,k=v" (sorted by key); ok is false when the backend is not backend
// (a data point of another test's backend).
func seriesKey(set attribute.Set, backend string) (key string, ok bool) {
	var parts []string
	for _, kv := range set.ToSlice() {
		if kv.Key == "backend" {
			if kv.Value.AsString() != backend {
				return "", false
			}
			ok = true
			continue
		}
		parts = append(parts, string(kv.Key)+"="+kv.Value.Emit())
	}
	slices.Sort(parts)
	return strings.Join(parts, ","), ok
}

// counterValues returns the values of the Int64 counter name for backend,
// by seriesKey.
func counterValues(t testing.TB, rm metricdata.ResourceMetrics, name, backend string) map[string]int64 {
	t.Helper()
	m, ok := findMetric(rm, name)
	if !ok {
		return nil
	}
	sum, ok := m.Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is a %T, want a Sum[int64]", name, m.Data)
	}
	if !sum.IsMonotonic || sum.Temporality != metricdata.CumulativeTemporality {
		t.Errorf("%s: monotonic %v, temporality %v; want a cumulative counter", name, sum.IsMonotonic, sum.Temporality)
	}
	out := map[string]int64{}
	for _, dp := range sum.DataPoints {
		if k, ok := seriesKey(dp.Attributes, backend); ok {
			out[k] = dp.Value
		}
	}
	return out
}

// histogramCounts returns the counts of the histogram name for backend, by
// seriesKey, and checks each data point's bounds and sum.
func histogramCounts(t testing.TB, rm metricdata.ResourceMetrics, name, backend string) map[string]uint64 {
	t.Helper()
	m, ok := findMetric(rm, name)
	if !ok {
		return nil
	}
	if m.Unit != "s" {
		t.Errorf("%s: unit %q, want s", name, m.Unit)
	}
	h, ok := m.Data.(metricdata.Histogram[float64])
	if !ok {
		t.Fatalf("%s is a %T, want a Histogram[float64]", name, m.Data)
	}
	out := map[string]uint64{}
	for _, dp := range h.DataPoints {
		k, ok := seriesKey(dp.Attributes, backend)
		if !ok {
			continue
		}
		out[k] = dp.Count
		if len(dp.Bounds) == 0 || dp.Bounds[0] != 0.001 || dp.Bounds[len(dp.Bounds)-1] != 3600 {
			t.Errorf("%s %s: bounds %v, want 0.001 … 3600 (seconds)", name, k, dp.Bounds)
		}
		if dp.Sum < 0 || dp.Sum > 60 {
			t.Errorf("%s %s: sum %v s, want a few seconds at most", name, k, dp.Sum)
		}
	}
	return out
}

// gaugeValues returns the values of the gauge name for backend, by
// seriesKey (int64 and float64 gauges alike, as float64).
func gaugeValues(t testing.TB, rm metricdata.ResourceMetrics, name, backend string) map[string]float64 {
	t.Helper()
	m, ok := findMetric(rm, name)
	if !ok {
		return nil
	}
	out := map[string]float64{}
	switch g := m.Data.(type) {
	case metricdata.Gauge[int64]:
		for _, dp := range g.DataPoints {
			if k, ok := seriesKey(dp.Attributes, backend); ok {
				out[k] = float64(dp.Value)
			}
		}
	case metricdata.Gauge[float64]:
		for _, dp := range g.DataPoints {
			if k, ok := seriesKey(dp.Attributes, backend); ok {
				out[k] = dp.Value
			}
		}
	default:
		t.Fatalf("%s is a %T, want a Gauge", name, m.Data)
	}
	return out
}

// seq makes backend names unique within the process.
var seq atomic.Int64

func uniqueName(prefix string) string { return fmt.Sprintf("%s%d", prefix, seq.Add(1)) }

var discard = slog.New(slog.DiscardHandler)

// openDatabase opens (migrates, registers) a database backend on dsn with
// more options, closed when the test ends.
func openDatabase(t *testing.T, dsn string, opts ...database.Option) *database.Backend {
	t.Helper()
	b, err := database.Open(context.Background(), dsn, append([]database.Option{
		database.WithAutoMigrate(true), database.WithName(uniqueName("otel")), database.WithLogger(discard),
	}, opts...)...)
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(tasks.RegisterBackend(b))
	return b
}

// startWorker starts a worker on b, stopped when the test ends.
func startWorker(t *testing.T, b *database.Backend) *database.Worker {
	t.Helper()
	w, err := database.NewWorker(b, database.WorkerConfig{PollInterval: 20 * time.Millisecond, Logger: discard, Concurrency: 4})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	return w
}

// wait waits for r to finish (10 s at most).
func wait[R any](t *testing.T, r *tasks.Result[R]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("wait for %s (%s): %v", r.ID, r.TaskName, err)
	}
}

// The tasks of the tests. Names are unique in the process.
var (
	// orderTask enqueues a follow-up (to the backend running it) and
	// returns the follow-up's id.
	orderTask = tasks.Define("oteltasks_test.order", func(ctx context.Context, key string) (string, error) {
		r, err := followupTask.Enqueue(ctx, key)
		if err != nil {
			return "", err
		}
		return r.ID, nil
	}, tasks.WithQueue("orders"))
	followupTask = tasks.Define("oteltasks_test.followup", func(ctx context.Context, key string) (string, error) {
		return key, nil
	})
	okTask = tasks.Define("oteltasks_test.ok", func(ctx context.Context, n int) (int, error) {
		return n, nil
	})
	// flakyTask fails its first call per key, then succeeds; retried at
	// once.
	flakyTask = tasks.Define("oteltasks_test.flaky", func(ctx context.Context, key string) (string, error) {
		if counter(&flakyCalls, key).Add(1) == 1 {
			return "", errFlaky
		}
		return key, nil
	}, tasks.WithMaxAttempts(3), tasks.WithBackoff(tasks.ConstantBackoff(0)))
	// failTask always fails, with one attempt.
	failTask = tasks.Define("oteltasks_test.fail", func(ctx context.Context, key string) (string, error) {
		return "", errBroken
	}, tasks.WithMaxAttempts(1))
	// snoozeTask snoozes its first call per key, then succeeds.
	snoozeTask = tasks.Define("oteltasks_test.snooze", func(ctx context.Context, key string) (string, error) {
		if counter(&snoozeCalls, key).Add(1) == 1 {
			return "", tasks.Snooze(0)
		}
		return key, nil
	})
	benchTask = tasks.Define("oteltasks_test.bench", func(ctx context.Context, n int) (int, error) {
		return n, nil
	})

	errFlaky  = errors.New("first call fails")
	errBroken = errors.New("broken for good")

	flakyCalls  sync.Map // key → *atomic.Int64
	snoozeCalls sync.Map // key → *atomic.Int64
)

func counter(m *sync.Map, key string) *atomic.Int64 {
	c, _ := m.LoadOrStore(key, new(atomic.Int64))
	return c.(*atomic.Int64)
}
