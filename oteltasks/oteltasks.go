package oteltasks

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/tasks"
)

// ScopeName is the instrumentation scope of the tracer and the meter
// (the otel_scope_name label of the Prometheus exporter).
const ScopeName = "github.com/gotasks/gotasks/oteltasks"

// The instruments' names.
const (
	metricEnqueued = "gotasks.tasks.enqueued"
	metricStarted  = "gotasks.attempts.started"
	metricFinished = "gotasks.attempts.finished"
	metricDuration = "gotasks.attempt.duration"
	metricWait     = "gotasks.attempt.wait"
	metricDepth    = "gotasks.queue.depth"
	metricAge      = "gotasks.queue.age"
)

// secondsBuckets are the advised bucket boundaries of the histograms, in
// seconds: from 1 ms (a trivial task, a wait on an idle worker) to an hour
// (a long task, a backlog), instead of the SDK's default boundaries, which
// are meant for milliseconds.
var secondsBuckets = []float64{
	0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
	1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600,
}

// defaultDepthTimeout bounds one reading of a backend's queue depths.
const defaultDepthTimeout = 5 * time.Second

// Option configures New.
type Option func(*config)

type config struct {
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	prop         propagation.TextMapPropagator
	depth        []tasks.Backend
	depthTimeout time.Duration
}

// WithTracerProvider sets the tracer provider; the default is the global
// one (otel.GetTracerProvider), which forwards to the provider set with
// otel.SetTracerProvider, even later.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(c *config) { c.tp = tp }
}

// WithMeterProvider sets the meter provider; the default is the global one
// (otel.GetMeterProvider), which forwards to the provider set with
// otel.SetMeterProvider, even later.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.mp = mp }
}

// WithPropagator sets how the trace context is written to a task's
// metadata at enqueue and read back at each attempt. The default is the
// W3C Trace Context and Baggage propagators (metadata entries traceparent,
// tracestate and baggage), not the global propagator
// (otel.GetTextMapPropagator), which propagates nothing unless the program
// set one: tasks should carry their trace without further set-up. Pass
// otel.GetTextMapPropagator() to use the global one. The enqueuing
// processes and the workers must use the same propagator.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

// WithQueueDepth observes the queues of these backends with the gauges
// gotasks.queue.depth and gotasks.queue.age, read at each collection of the
// meter provider (each reading bounded by 5 s; an error is reported with
// otel.Handle and observes nothing for that backend). Each backend must
// implement tasks.DepthReader, or New returns an error. A queue that
// empties after it was observed is reported with zeros, so that its series
// goes down to 0 instead of vanishing.
//
// The backends exist before New, so register such a Middleware with
// tasks.Use, or add it to the backend after New and before the backend is
// used (b.Apply(tasks.WithMiddleware(m)) on a backend that embeds
// tasks.BackendConfig).
func WithQueueDepth(backends ...tasks.Backend) Option {
	return func(c *config) { c.depth = append(c.depth, backends...) }
}

// withDepthTimeout sets the bound of one reading of queue depths (tests).
func withDepthTimeout(d time.Duration) Option {
	return func(c *config) { c.depthTimeout = d }
}

// Middleware is the OpenTelemetry tasks.Middleware: register it once,
// with tasks.Use for every backend or with tasks.WithMiddleware for one
// (registered twice, every enqueue and attempt has two spans). It is safe
// for concurrent use. Create it with New; one per process is enough.
type Middleware struct {
	tracer trace.Tracer
	prop   propagation.TextMapPropagator

	enqueued metric.Int64Counter
	started  metric.Int64Counter
	finished metric.Int64Counter
	duration metric.Float64Histogram
	wait     metric.Float64Histogram

	series seriesCache
	depth  *depthObserver // nil without WithQueueDepth

	closeOnce sync.Once
	closeErr  error
}

var _ tasks.Middleware = (*Middleware)(nil)

// New returns a Middleware that traces and measures the enqueues and
// attempts it wraps (see the package documentation), with the global
// tracer and meter providers unless options say otherwise. It fails when
// an instrument cannot be created or a backend of WithQueueDepth cannot
// read its queue depths. Call Close when done with it.
func New(opts ...Option) (*Middleware, error) {
	c := config{depthTimeout: defaultDepthTimeout}
	for _, o := range opts {
		o(&c)
	}
	if c.tp == nil {
		c.tp = otel.GetTracerProvider()
	}
	if c.mp == nil {
		c.mp = otel.GetMeterProvider()
	}
	if c.prop == nil {
		c.prop = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	}
	readers := make([]depthSource, 0, len(c.depth))
	for i, b := range c.depth {
		if b == nil {
			return nil, fmt.Errorf("oteltasks: WithQueueDepth: backend %d is nil", i)
		}
		dr, ok := b.(tasks.DepthReader)
		if !ok {
			return nil, fmt.Errorf("oteltasks: WithQueueDepth: backend %q (%T) cannot read queue depths (it does not implement tasks.DepthReader)", b.Name(), b)
		}
		readers = append(readers, depthSource{name: b.Name(), r: dr})
	}

	m := &Middleware{
		tracer: c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL)),
		prop:   c.prop,
	}
	meter := c.mp.Meter(ScopeName, metric.WithSchemaURL(semconv.SchemaURL))
	var errs []error
	var err error
	m.enqueued, err = meter.Int64Counter(metricEnqueued, metric.WithUnit("{task}"),
		metric.WithDescription("Tasks enqueued (accepted by their backend)."))
	errs = append(errs, err)
	m.started, err = meter.Int64Counter(metricStarted, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts of tasks started."))
	errs = append(errs, err)
	m.finished, err = meter.Int64Counter(metricFinished, metric.WithUnit("{attempt}"),
		metric.WithDescription("Attempts of tasks finished, by outcome (success, retry, failure, snooze, handback)."))
	errs = append(errs, err)
	m.duration, err = meter.Float64Histogram(metricDuration, metric.WithUnit("s"),
		metric.WithDescription("How long attempts of tasks ran, by outcome."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	errs = append(errs, err)
	m.wait, err = meter.Float64Histogram(metricWait, metric.WithUnit("s"),
		metric.WithDescription("How long attempts of tasks waited to start after they were due."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	errs = append(errs, err)
	if len(readers) > 0 {
		m.depth, err = newDepthObserver(meter, readers, c.depthTimeout)
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		if m.depth != nil {
			_ = m.depth.close()
		}
		return nil, fmt.Errorf("oteltasks: %w", err)
	}
	return m, nil
}

// Close unregisters the callback of the queue gauges (WithQueueDepth); the
// backends' queues are no longer read. The middleware goes on tracing and
// counting. Close is idempotent.
func (m *Middleware) Close() error {
	m.closeOnce.Do(func() {
		if m.depth != nil {
			m.closeErr = m.depth.close()
		}
	})
	return m.closeErr
}
