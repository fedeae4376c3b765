package oteltasks_test

import (
	"context"
	"fmt"
	"log"

	"github.com/prometheus/client_golang/prometheus"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

var greet = tasks.Define("oteltasks_test.greet", func(ctx context.Context, name string) (string, error) {
	return "Hello, " + name, nil
})

// The middleware on one backend (tasks.WithMiddleware); tasks.Use(m)
// registers it for every backend instead. The enqueue continues the trace
// of the "request" span, and the attempt continues the enqueue's.
func ExampleNew() {
	// The program's SDK; here a tracer provider that keeps the spans in
	// memory. Without WithTracerProvider, New uses the global provider.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(context.Background()) }()

	m, err := oteltasks.New(oteltasks.WithTracerProvider(tp))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = m.Close() }()

	b := immediate.New(immediate.WithConfig(tasks.WithName("example-otel"), tasks.WithMiddleware(m)))
	defer tasks.RegisterBackend(b)()

	// In a web application, the HTTP middleware's span.
	ctx, req := tp.Tracer("web").Start(context.Background(), "GET /greet", trace.WithSpanKind(trace.SpanKindServer))
	res, err := greet.Using(tasks.WithBackend("example-otel")).Enqueue(ctx, "Ada")
	req.End()
	if err != nil {
		log.Fatal(err)
	}
	v, _ := res.Value()
	fmt.Println(v)

	names := map[trace.SpanID]string{}
	for _, s := range spans.Ended() {
		names[s.SpanContext().SpanID()] = s.Name()
	}
	for _, s := range spans.Ended() {
		fmt.Printf("%s (%s), parent %q\n", s.Name(), s.SpanKind(), names[s.Parent().SpanID()])
	}
	// Output:
	// Hello, Ada
	// process oteltasks_test.greet (consumer), parent "enqueue oteltasks_test.greet"
	// enqueue oteltasks_test.greet (producer), parent "GET /greet"
	// GET /greet (server), parent ""
}

// A worker binary: the backend first, then the middleware that also
// observes its queues (WithQueueDepth needs the backend), registered for
// every backend with tasks.Use, before the worker starts. The global
// providers are set by the program (otel.SetTracerProvider,
// otel.SetMeterProvider) with the exporters it chooses.
func Example_worker() {
	ctx := context.Background()
	b, err := database.Open(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = b.Close() }()

	m, err := oteltasks.New(oteltasks.WithQueueDepth(b))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = m.Close() }()
	defer tasks.Use(m)()

	w, err := database.NewWorker(b, database.WorkerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// Two instances, as in a worker that serves its own /metrics: the
// program's instance traces (and counts on the global providers) for every
// backend, and a metrics-only one counts on a meter provider of the
// worker's own, here a Prometheus exporter's, inside it. The task runs in
// the tracing instance's span.
func ExampleWithoutTracing() {
	ctx := context.Background()
	tracing, err := oteltasks.New()
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = tracing.Close() }()
	defer tasks.Use(tracing)()

	b, err := database.Open(ctx, "postgres://localhost/app")
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = b.Close() }()
	exp, err := otelprom.New(otelprom.WithRegisterer(prometheus.NewRegistry()))
	if err != nil {
		log.Fatal(err)
	}
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	defer func() { _ = mp.Shutdown(ctx) }()
	counting, err := oteltasks.New(oteltasks.WithoutTracing(), oteltasks.WithMeterProvider(mp), oteltasks.WithQueueDepth(b))
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = counting.Close() }()
	b.Apply(tasks.WithMiddleware(counting)) // before the worker starts

	w, err := database.NewWorker(b, database.WorkerConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
