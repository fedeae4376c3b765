package oteltasks_test

import (
	"context"
	"testing"
	"time"

	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"

	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

// BenchmarkExecute runs one attempt of a trivial task (tasks.RunAttempt,
// as a backend does) without middleware, through a middleware that only
// calls next (the core's share), through the middleware on no-op
// providers, through a metrics-only one (WithoutTracing) and through it on
// the SDK (every span sampled, no exporter; metrics aggregated by a manual
// reader).
func BenchmarkExecute(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchAttempt(b, nil) })
	// What any middleware costs in the core (the Execution, the chain).
	b.Run("passthrough", func(b *testing.B) {
		benchAttempt(b, tasks.ExecuteMiddlewareFunc(func(ctx context.Context, _ *tasks.Execution, next tasks.ExecuteFunc) error {
			return next(ctx)
		}))
	})
	b.Run("noop", func(b *testing.B) {
		m, err := oteltasks.New(oteltasks.WithTracerProvider(tracenoop.NewTracerProvider()),
			oteltasks.WithMeterProvider(metricnoop.NewMeterProvider()))
		if err != nil {
			b.Fatal(err)
		}
		benchAttempt(b, m)
	})
	// Metrics only (WithoutTracing), on the SDK's meter provider.
	b.Run("metrics-only", func(b *testing.B) {
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer func() { _ = mp.Shutdown(context.Background()) }()
		m, err := oteltasks.New(oteltasks.WithoutTracing(), oteltasks.WithMeterProvider(mp))
		if err != nil {
			b.Fatal(err)
		}
		benchAttempt(b, m)
	})
	b.Run("sdk", func(b *testing.B) {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(sdkmetric.NewManualReader()))
		defer func() { _ = tp.Shutdown(context.Background()); _ = mp.Shutdown(context.Background()) }()
		m, err := oteltasks.New(oteltasks.WithTracerProvider(tp), oteltasks.WithMeterProvider(mp))
		if err != nil {
			b.Fatal(err)
		}
		benchAttempt(b, m)
	})
}

func benchAttempt(b *testing.B, m tasks.Middleware) {
	cfg := &tasks.BackendConfig{}
	cfg.Apply(tasks.WithName("bench"), tasks.WithLogger(discard))
	if m != nil {
		cfg.Apply(tasks.WithMiddleware(m))
	}
	now := time.Now().UTC()
	rec := &tasks.RawResult{
		ID: tasks.NewID(), TaskName: benchTask.Name(), Status: tasks.StatusRunning, Args: []byte("1"),
		Queue: "default", Backend: "bench", Attempts: 1, MaxAttempts: 1,
		EnqueuedAt: now, RunAfter: now, StartedAt: &now, LastAttemptedAt: &now, WorkerIDs: []string{"bench"},
		// As enqueued through the middleware.
		Metadata: map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
	}
	ac := tasks.AttemptConfig{Backend: cfg}
	ctx := context.Background()
	var last tasks.Attempt
	b.ReportAllocs()
	for b.Loop() {
		tasks.RunAttempt(ctx, rec, ac, func(a tasks.Attempt) { last = a })
	}
	if last.Status != tasks.StatusSuccessful {
		b.Fatalf("attempt %v: %v", last.Status, last.Err)
	}
}
