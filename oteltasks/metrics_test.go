package oteltasks_test

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

// handled records what reached otel.Handle (see TestMain).
var handled struct {
	mu   sync.Mutex
	errs []error
}

type recordingHandler struct{}

func (recordingHandler) Handle(err error) {
	handled.mu.Lock()
	handled.errs = append(handled.errs, err)
	handled.mu.Unlock()
}

// handledMentioning returns the messages handled so far that contain s.
func handledMentioning(s string) []string {
	handled.mu.Lock()
	defer handled.mu.Unlock()
	var out []string
	for _, err := range handled.errs {
		if strings.Contains(err.Error(), s) {
			out = append(out, err.Error())
		}
	}
	return out
}

func TestMain(m *testing.M) {
	otel.SetErrorHandler(recordingHandler{})
	os.Exit(m.Run())
}

// Series keys of the checks below (see seriesKey).
const (
	okDefault     = "queue=default,task=oteltasks_test.ok"
	flakyDefault  = "queue=default,task=oteltasks_test.flaky"
	failDefault   = "queue=default,task=oteltasks_test.fail"
	snoozeDefault = "queue=default,task=oteltasks_test.snooze"
)

func withOutcome(series string, o tasks.Outcome) string { return "outcome=" + string(o) + "," + series }

// attemptMetrics are the values of the attempt instruments of one backend.
type attemptMetrics struct {
	Enqueued      map[string]int64
	Started       map[string]int64
	Finished      map[string]int64
	DurationCount map[string]uint64
	WaitCount     map[string]uint64
}

func readAttemptMetrics(t *testing.T, h *harness, backend string) attemptMetrics {
	t.Helper()
	rm := h.collect(t)
	return attemptMetrics{
		Enqueued:      counterValues(t, rm, "gotasks.tasks.enqueued", backend),
		Started:       counterValues(t, rm, "gotasks.attempts.started", backend),
		Finished:      counterValues(t, rm, "gotasks.attempts.finished", backend),
		DurationCount: histogramCounts(t, rm, "gotasks.attempt.duration", backend),
		WaitCount:     histogramCounts(t, rm, "gotasks.attempt.wait", backend),
	}
}

func TestMetrics(t *testing.T) {
	// The dummy backend does not retry: three successes, a failure, and a
	// task that snoozes once (run again by the second RunReady).
	t.Run("dummy", func(t *testing.T) {
		t.Parallel()
		h := newHarness(t)
		b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(h.m))
		t.Cleanup(tasks.RegisterBackend(b))
		ctx := context.Background()
		on := tasks.WithBackend(b.Name())
		if _, err := okTask.Using(on).EnqueueMany(ctx, []int{1, 2, 3}); err != nil {
			t.Fatal(err)
		}
		if _, err := failTask.Using(on).Enqueue(ctx, "x"); err != nil {
			t.Fatal(err)
		}
		if _, err := snoozeTask.Using(on).Enqueue(ctx, uniqueName("snooze")); err != nil {
			t.Fatal(err)
		}
		for _, want := range []int{5, 1} {
			if n, err := b.RunReady(ctx); n != want || err != nil {
				t.Fatalf("RunReady = %d, %v; want %d", n, err, want)
			}
		}
		want := attemptMetrics{
			Enqueued: map[string]int64{okDefault: 3, failDefault: 1, snoozeDefault: 1},
			Started:  map[string]int64{okDefault: 3, failDefault: 1, snoozeDefault: 2},
			Finished: map[string]int64{
				withOutcome(okDefault, tasks.OutcomeSuccess):     3,
				withOutcome(failDefault, tasks.OutcomeFailure):   1,
				withOutcome(snoozeDefault, tasks.OutcomeSnooze):  1,
				withOutcome(snoozeDefault, tasks.OutcomeSuccess): 1,
			},
			DurationCount: map[string]uint64{
				withOutcome(okDefault, tasks.OutcomeSuccess):     3,
				withOutcome(failDefault, tasks.OutcomeFailure):   1,
				withOutcome(snoozeDefault, tasks.OutcomeSnooze):  1,
				withOutcome(snoozeDefault, tasks.OutcomeSuccess): 1,
			},
			WaitCount: map[string]uint64{okDefault: 3, failDefault: 1, snoozeDefault: 2},
		}
		if diff := cmp.Diff(want, readAttemptMetrics(t, h, b.Name())); diff != "" {
			t.Errorf("metrics (-want +got):\n%s", diff)
		}
	})

	// The database backend, wired as a worker binary would: the backend
	// first, then the middleware observing its queues, registered for every
	// backend with tasks.Use. Three successes, a task that fails once and
	// succeeds on its retry, a task that fails for good, and one deferred
	// by an hour (scheduled, never run).
	t.Run("database", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := openDatabase(t, dsn)
			h := newHarness(t, oteltasks.WithQueueDepth(b), oteltasks.WithDepthMaxAge(0))
			t.Cleanup(tasks.Use(h.m))

			ctx := context.Background()
			on := tasks.WithBackend(b.Name())
			if _, err := okTask.Using(on).EnqueueMany(ctx, []int{1, 2, 3}); err != nil {
				t.Fatal(err)
			}
			if _, err := flakyTask.Using(on).Enqueue(ctx, uniqueName("flaky")); err != nil {
				t.Fatal(err)
			}
			if _, err := failTask.Using(on).Enqueue(ctx, "x"); err != nil {
				t.Fatal(err)
			}
			if _, err := okTask.Using(on, tasks.WithDelay(time.Hour)).Enqueue(ctx, 4); err != nil {
				t.Fatal(err)
			}
			checkDepths(t, h, b.Name(), map[string]float64{
				"queue=default,state=ready": 5, "queue=default,state=scheduled": 1, "queue=default,state=running": 0,
			}, 0, 60)

			w, err := database.NewWorker(b, database.WorkerConfig{PollInterval: 20 * time.Millisecond, Logger: discard, MaxTasks: 6})
			if err != nil {
				t.Fatal(err)
			}
			runCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
			defer cancel()
			if err := w.Run(runCtx); err != nil || runCtx.Err() != nil {
				t.Fatalf("worker: %v (context: %v)", err, runCtx.Err())
			}

			want := attemptMetrics{
				Enqueued: map[string]int64{okDefault: 4, flakyDefault: 1, failDefault: 1},
				Started:  map[string]int64{okDefault: 3, flakyDefault: 2, failDefault: 1},
				Finished: map[string]int64{
					withOutcome(okDefault, tasks.OutcomeSuccess):    3,
					withOutcome(flakyDefault, tasks.OutcomeRetry):   1,
					withOutcome(flakyDefault, tasks.OutcomeSuccess): 1,
					withOutcome(failDefault, tasks.OutcomeFailure):  1,
				},
				DurationCount: map[string]uint64{
					withOutcome(okDefault, tasks.OutcomeSuccess):    3,
					withOutcome(flakyDefault, tasks.OutcomeRetry):   1,
					withOutcome(flakyDefault, tasks.OutcomeSuccess): 1,
					withOutcome(failDefault, tasks.OutcomeFailure):  1,
				},
				WaitCount: map[string]uint64{okDefault: 3, flakyDefault: 2, failDefault: 1},
			}
			if diff := cmp.Diff(want, readAttemptMetrics(t, h, b.Name())); diff != "" {
				t.Errorf("metrics (-want +got):\n%s", diff)
			}
			checkDepths(t, h, b.Name(), map[string]float64{
				"queue=default,state=ready": 0, "queue=default,state=scheduled": 1, "queue=default,state=running": 0,
			}, 0, 0)
		})
	})
}

// checkDepths collects and checks the queue gauges of backend: the depths,
// and the age of the queue "default" within [minAge, maxAge] seconds.
func checkDepths(t *testing.T, h *harness, backend string, want map[string]float64, minAge, maxAge float64) {
	t.Helper()
	rm := h.collect(t)
	if diff := cmp.Diff(want, gaugeValues(t, rm, "gotasks.queue.depth", backend)); diff != "" {
		t.Errorf("gotasks.queue.depth (-want +got):\n%s", diff)
	}
	ages := gaugeValues(t, rm, "gotasks.queue.age", backend)
	if age, ok := ages["queue=default"]; !ok || age < minAge || age > maxAge {
		t.Errorf("gotasks.queue.age %v, want queue=default in [%v, %v] s", ages, minAge, maxAge)
	}
}

// fakeDepths is a dummy backend that reports the queue depths it is told.
type fakeDepths struct {
	*dummy.Backend
	mu     sync.Mutex
	depths []tasks.QueueDepth
	err    error
	// block, when set, holds QueueDepths until it is closed, whatever its
	// context says.
	block chan struct{}
	calls atomic.Int64
}

func newFakeDepths() *fakeDepths {
	return &fakeDepths{Backend: dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("fake")))}
}

func (f *fakeDepths) set(depths []tasks.QueueDepth, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.depths, f.err = depths, err
}

// QueueDepths implements tasks.DepthReader.
func (f *fakeDepths) QueueDepths(ctx context.Context) ([]tasks.QueueDepth, error) {
	f.calls.Add(1)
	f.mu.Lock()
	block, depths, err := f.block, slices.Clone(f.depths), f.err
	f.mu.Unlock()
	if block != nil {
		<-block
	}
	return depths, err
}

func TestQueueDepth(t *testing.T) {
	t.Run("Values", func(t *testing.T) {
		t.Parallel()
		f := newFakeDepths()
		h := newHarness(t, oteltasks.WithQueueDepth(f), oteltasks.WithDepthMaxAge(0))
		now := time.Now()
		f.set([]tasks.QueueDepth{
			{Queue: "emails", Ready: 7, Scheduled: 2, Running: 3, OldestDue: now.Add(-90 * time.Second)},
			{Queue: "images", Scheduled: 4},
			{Queue: "reports", Running: 1, OldestDue: now.Add(-time.Hour)}, // no ready task: age 0
		}, nil)
		rm := h.collect(t)
		wantDepth := map[string]float64{
			"queue=emails,state=ready": 7, "queue=emails,state=scheduled": 2, "queue=emails,state=running": 3,
			"queue=images,state=ready": 0, "queue=images,state=scheduled": 4, "queue=images,state=running": 0,
			"queue=reports,state=ready": 0, "queue=reports,state=scheduled": 0, "queue=reports,state=running": 1,
		}
		if diff := cmp.Diff(wantDepth, gaugeValues(t, rm, "gotasks.queue.depth", f.Name())); diff != "" {
			t.Errorf("gotasks.queue.depth (-want +got):\n%s", diff)
		}
		ages := gaugeValues(t, rm, "gotasks.queue.age", f.Name())
		if a := ages["queue=emails"]; a < 90 || a > 100 {
			t.Errorf("age of emails %v s, want 90 s (and a bit)", a)
		}
		if diff := cmp.Diff(map[string]float64{"queue=images": 0, "queue=reports": 0},
			map[string]float64{"queue=images": ages["queue=images"], "queue=reports": ages["queue=reports"]}); diff != "" {
			t.Errorf("ages of queues without a due task (-want +got):\n%s", diff)
		}
		m, _ := findMetric(rm, "gotasks.queue.depth")
		if m.Unit != "{task}" {
			t.Errorf("gotasks.queue.depth unit %q, want {task}", m.Unit)
		}

		// A queue that empties reports zeros instead of vanishing.
		f.set([]tasks.QueueDepth{{Queue: "images", Scheduled: 1}}, nil)
		rm = h.collect(t)
		wantDepth = map[string]float64{
			"queue=emails,state=ready": 0, "queue=emails,state=scheduled": 0, "queue=emails,state=running": 0,
			"queue=images,state=ready": 0, "queue=images,state=scheduled": 1, "queue=images,state=running": 0,
			"queue=reports,state=ready": 0, "queue=reports,state=scheduled": 0, "queue=reports,state=running": 0,
		}
		if diff := cmp.Diff(wantDepth, gaugeValues(t, rm, "gotasks.queue.depth", f.Name())); diff != "" {
			t.Errorf("gotasks.queue.depth after queues emptied (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]float64{"queue=emails": 0, "queue=images": 0, "queue=reports": 0},
			gaugeValues(t, rm, "gotasks.queue.age", f.Name())); diff != "" {
			t.Errorf("gotasks.queue.age after queues emptied (-want +got):\n%s", diff)
		}
	})

	// A backend whose reading fails observes nothing and the error goes to
	// otel.Handle; the other backends are observed.
	t.Run("Error", func(t *testing.T) {
		t.Parallel()
		bad, good := newFakeDepths(), newFakeDepths()
		bad.set(nil, errors.New("database away"))
		good.set([]tasks.QueueDepth{{Queue: "q", Ready: 1, OldestDue: time.Now()}}, nil)
		h := newHarness(t, oteltasks.WithQueueDepth(bad, good))
		rm := h.collect(t)
		if got := gaugeValues(t, rm, "gotasks.queue.depth", bad.Name()); len(got) != 0 {
			t.Errorf("the failing backend observed %v, want nothing", got)
		}
		if got := gaugeValues(t, rm, "gotasks.queue.depth", good.Name()); got["queue=q,state=ready"] != 1 {
			t.Errorf("the other backend observed %v, want queue q ready 1", got)
		}
		msgs := handledMentioning(bad.Name())
		if len(msgs) != 1 || !strings.Contains(msgs[0], "database away") {
			t.Errorf("otel.Handle got %q, want one error of %s saying database away", msgs, bad.Name())
		}
	})

	// A backend that does not answer in time (even one that ignores its
	// context) does not hold the collection up.
	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		f := newFakeDepths()
		f.block = make(chan struct{})
		defer close(f.block)
		h := newHarness(t, oteltasks.WithQueueDepth(f), oteltasks.WithDepthTimeout(50*time.Millisecond))
		start := time.Now()
		rm := h.collect(t)
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("collection took %v with a backend that does not answer; want about the 50 ms timeout", d)
		}
		if got := gaugeValues(t, rm, "gotasks.queue.depth", f.Name()); len(got) != 0 {
			t.Errorf("observed %v, want nothing", got)
		}
		if msgs := handledMentioning(f.Name()); len(msgs) != 1 || !strings.Contains(msgs[0], "deadline exceeded") {
			t.Errorf("otel.Handle got %q, want one deadline error of %s", msgs, f.Name())
		}
	})

	t.Run("Close", func(t *testing.T) {
		t.Parallel()
		f := newFakeDepths()
		f.set([]tasks.QueueDepth{{Queue: "q", Ready: 1}}, nil)
		h := newHarness(t, oteltasks.WithQueueDepth(f))
		h.collect(t)
		if err := h.m.Close(); err != nil {
			t.Fatal(err)
		}
		if err := h.m.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		calls := f.calls.Load()
		rm := h.collect(t)
		if got := gaugeValues(t, rm, "gotasks.queue.depth", f.Name()); len(got) != 0 {
			t.Errorf("observed %v after Close, want nothing", got)
		}
		if f.calls.Load() != calls {
			t.Errorf("the backend was read after Close")
		}
	})

	// Collections at the same time (several readers of one meter provider,
	// several scrapers) share one reading of the backends: those that
	// waited for the reading in flight use its answers.
	t.Run("SharedReading", func(t *testing.T) {
		t.Parallel()
		f := newFakeDepths()
		f.set([]tasks.QueueDepth{{Queue: "q", Ready: 3, Scheduled: 1}}, nil)
		f.block = make(chan struct{})
		const n = 4
		var readers []*sdkmetric.ManualReader
		var opts []sdkmetric.Option
		for range n {
			r := sdkmetric.NewManualReader()
			readers = append(readers, r)
			opts = append(opts, sdkmetric.WithReader(r))
		}
		mp := sdkmetric.NewMeterProvider(opts...)
		t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
		// Max age 0: only the waiting can share the answers.
		m, err := oteltasks.New(oteltasks.WithMeterProvider(mp), oteltasks.WithQueueDepth(f), oteltasks.WithDepthMaxAge(0))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Close() })

		got := make([]metricdata.ResourceMetrics, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i, r := range readers {
			wg.Go(func() { errs[i] = r.Collect(context.Background(), &got[i]) })
		}
		dbtest.WaitUntil(t, 10*time.Second, "one reading in flight and the other collections waiting for it", func() bool {
			return f.calls.Load() == 1 && oteltasks.DepthWaiting(m) == n-1
		})
		close(f.block)
		wg.Wait()
		if c := f.calls.Load(); c != 1 {
			t.Errorf("QueueDepths called %d times for %d concurrent collections, want once", c, n)
		}
		want := map[string]float64{"queue=q,state=ready": 3, "queue=q,state=scheduled": 1, "queue=q,state=running": 0}
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("collection %d: %v", i, errs[i])
			}
			if diff := cmp.Diff(want, gaugeValues(t, got[i], "gotasks.queue.depth", f.Name())); diff != "" {
				t.Errorf("collection %d: gotasks.queue.depth (-want +got):\n%s", i, diff)
			}
		}
	})

	// An answer younger than the max age (1 s by default) serves the next
	// collections; an older one is read again.
	t.Run("MaxAge", func(t *testing.T) {
		t.Parallel()
		f := newFakeDepths()
		f.set([]tasks.QueueDepth{{Queue: "q", Ready: 1}}, nil)
		h := newHarness(t, oteltasks.WithQueueDepth(f), oteltasks.WithDepthMaxAge(time.Hour))
		h.collect(t)
		f.set([]tasks.QueueDepth{{Queue: "q", Ready: 2}}, nil)
		rm := h.collect(t)
		if c := f.calls.Load(); c != 1 {
			t.Errorf("QueueDepths called %d times for 2 collections within the max age, want once", c)
		}
		if diff := cmp.Diff(map[string]float64{"queue=q,state=ready": 1, "queue=q,state=scheduled": 0, "queue=q,state=running": 0},
			gaugeValues(t, rm, "gotasks.queue.depth", f.Name())); diff != "" {
			t.Errorf("gotasks.queue.depth of the second collection, the first one's answer (-want +got):\n%s", diff)
		}

		g := newFakeDepths()
		g.set([]tasks.QueueDepth{{Queue: "q", Ready: 1}}, nil)
		h = newHarness(t, oteltasks.WithQueueDepth(g), oteltasks.WithDepthMaxAge(time.Millisecond))
		h.collect(t)
		g.set([]tasks.QueueDepth{{Queue: "q", Ready: 2}}, nil)
		dbtest.WaitUntil(t, 10*time.Second, "a collection past the max age reading the backend again", func() bool {
			return gaugeValues(t, h.collect(t), "gotasks.queue.depth", g.Name())["queue=q,state=ready"] == 2
		})
	})

	t.Run("NotADepthReader", func(t *testing.T) {
		t.Parallel()
		b := immediate.New(immediate.WithConfig(tasks.WithLogger(discard), tasks.WithName("imm")))
		_, err := oteltasks.New(oteltasks.WithQueueDepth(b))
		if err == nil || !strings.Contains(err.Error(), `"imm"`) || !strings.Contains(err.Error(), "DepthReader") {
			t.Errorf("New = %v, want an error naming the backend and tasks.DepthReader", err)
		}
		if _, err := oteltasks.New(oteltasks.WithQueueDepth(nil)); err == nil {
			t.Errorf("New(WithQueueDepth(nil)) succeeded")
		}
	})

	// The dummy backend's own DepthReader.
	t.Run("Dummy", func(t *testing.T) {
		t.Parallel()
		b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")))
		t.Cleanup(tasks.RegisterBackend(b))
		h := newHarness(t, oteltasks.WithQueueDepth(b), oteltasks.WithDepthMaxAge(0))
		on := tasks.WithBackend(b.Name())
		ctx := context.Background()
		if _, err := okTask.Using(on).EnqueueMany(ctx, []int{1, 2}); err != nil {
			t.Fatal(err)
		}
		if _, err := okTask.Using(on, tasks.WithDelay(time.Hour)).Enqueue(ctx, 3); err != nil {
			t.Fatal(err)
		}
		checkDepths(t, h, b.Name(), map[string]float64{
			"queue=default,state=ready": 2, "queue=default,state=scheduled": 1, "queue=default,state=running": 0,
		}, 0, 60)
		if _, err := b.RunReady(ctx); err != nil {
			t.Fatal(err)
		}
		checkDepths(t, h, b.Name(), map[string]float64{
			"queue=default,state=ready": 0, "queue=default,state=scheduled": 1, "queue=default,state=running": 0,
		}, 0, 0)
	})
}

// TestPrometheusNames checks the names the OpenTelemetry Prometheus
// exporter gives the instruments (docs/observability.md lists them).
func TestPrometheusNames(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		t.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	f := newFakeDepths()
	f.set([]tasks.QueueDepth{{Queue: "q", Ready: 1, OldestDue: time.Now()}}, nil)
	m, err := oteltasks.New(oteltasks.WithMeterProvider(mp), oteltasks.WithQueueDepth(f))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	b := dummy.New(tasks.WithLogger(discard), tasks.WithName(uniqueName("dummy")), tasks.WithMiddleware(m))
	t.Cleanup(tasks.RegisterBackend(b))
	if _, err := okTask.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.RunReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, mf := range families {
		if !strings.HasPrefix(mf.GetName(), "gotasks_") {
			continue
		}
		var labels []string
		for _, l := range mf.GetMetric()[0].GetLabel() {
			if !strings.HasPrefix(l.GetName(), "otel_scope_") {
				labels = append(labels, l.GetName())
			}
		}
		got[mf.GetName()] = mf.GetType().String() + " " + strings.Join(labels, ",")
	}
	want := map[string]string{
		"gotasks_tasks_enqueued_total":     "COUNTER backend,queue,task",
		"gotasks_attempts_started_total":   "COUNTER backend,queue,task",
		"gotasks_attempts_finished_total":  "COUNTER backend,outcome,queue,task",
		"gotasks_attempt_duration_seconds": "HISTOGRAM backend,outcome,queue,task",
		"gotasks_attempt_wait_seconds":     "HISTOGRAM backend,queue,task",
		"gotasks_queue_depth":              "GAUGE backend,queue,state",
		"gotasks_queue_age_seconds":        "GAUGE backend,queue",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Prometheus metric families (-want +got):\n%s", diff)
	}
}

// An attempt whose enqueue or start time is unknown records no wait,
// rather than a wait of 0.
func TestWaitUnknownTimes(t *testing.T) {
	t.Parallel()
	now := time.Now().UTC()
	for _, tc := range []struct {
		name                string
		enqueued, attempted time.Time
		wantWait            map[string]uint64
	}{
		{name: "Known", enqueued: now.Add(-time.Second), attempted: now, wantWait: map[string]uint64{okDefault: 1}},
		{name: "NoEnqueueTime", attempted: now},
		{name: "NoStartTime", enqueued: now},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t)
			backend := uniqueName("attempt")
			cfg := &tasks.BackendConfig{}
			cfg.Apply(tasks.WithName(backend), tasks.WithLogger(discard), tasks.WithMiddleware(h.m))
			rec := &tasks.RawResult{
				ID: tasks.NewID(), TaskName: okTask.Name(), Status: tasks.StatusRunning, Args: []byte("1"),
				Queue: "default", Backend: backend, Attempts: 1, MaxAttempts: 1, EnqueuedAt: tc.enqueued,
			}
			if !tc.attempted.IsZero() {
				rec.StartedAt, rec.LastAttemptedAt = &tc.attempted, &tc.attempted
			}
			var a tasks.Attempt
			tasks.RunAttempt(context.Background(), rec, tasks.AttemptConfig{Backend: cfg}, func(got tasks.Attempt) { a = got })
			if a.Status != tasks.StatusSuccessful {
				t.Fatalf("attempt %s: %v", a.Status, a.Err)
			}
			got := readAttemptMetrics(t, h, backend)
			if diff := cmp.Diff(map[string]int64{okDefault: 1}, got.Started); diff != "" {
				t.Errorf("gotasks.attempts.started (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWait, got.WaitCount, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("gotasks.attempt.wait counts (-want +got):\n%s", diff)
			}
		})
	}
}
