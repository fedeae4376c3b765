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

// defaultDepthMaxAge is how long the answers of a reading of queue depths
// serve further collections (several readers, several scrapers).
const defaultDepthMaxAge = time.Second

// Option configures New.
type Option func(*config)

type config struct {
	tp           trace.TracerProvider
	mp           metric.MeterProvider
	prop         propagation.TextMapPropagator
	noTracing    bool
	depth        []tasks.Backend
	depthTimeout time.Duration
	depthMaxAge  time.Duration
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
// W3C Trace Context propagator only (metadata entries traceparent and
// tracestate), not the global propagator (otel.GetTextMapPropagator),
// which propagates nothing unless the program set one: tasks carry their
// trace without further set-up. Pass otel.GetTextMapPropagator() to use
// the global one. The enqueuing processes and the workers must use the
// same propagator.
//
// Baggage is not carried by default: it often holds user ids, which would
// be stored in plain text with the task (in the database, on the dashboard,
// in gotasks show), and up to 8 KiB of it could take a task's metadata
// over its limits (tasks.MaxMetadataBytes). To carry it to the tasks:
//
//	oteltasks.WithPropagator(propagation.NewCompositeTextMapPropagator(
//		propagation.TraceContext{}, propagation.Baggage{}))
//
// Whatever the propagator, tracing never makes an enqueue fail: when what
// it writes would take a task's metadata over tasks.MaxMetadataEntries or
// tasks.MaxMetadataBytes, the entries other than traceparent and
// tracestate are not stored (nor those two, if the task still would not
// fit), and the loss is reported with otel.Handle.
func WithPropagator(p propagation.TextMapPropagator) Option {
	return func(c *config) { c.prop = p }
}

// WithoutTracing makes a Middleware that only counts, for a second
// instance beside the program's own tracing instance, such as the worker
// command's Prometheus endpoint. It records the metrics (and the queue
// gauges of WithQueueDepth) and nothing else: it starts no span, neither
// reads a trace context from a task's metadata nor writes one to it, and
// passes the context of an enqueue or an attempt on untouched.
//
// An instance on a no-op tracer provider (WithTracerProvider) is not the
// same: it still puts the trace context read from the task's metadata in
// the attempt's context, replacing the consumer span the tracing instance
// put there, so that the task's own spans and its follow-up enqueues would
// hang off the enqueue span instead of the attempt. With WithoutTracing,
// WithTracerProvider and WithPropagator have no effect.
func WithoutTracing() Option {
	return func(c *config) { c.noTracing = true }
}

// WithQueueDepth observes the queues of these backends with the gauges
// gotasks.queue.depth and gotasks.queue.age, read at each collection of the
// meter provider (each reading bounded by 5 s; an error is reported with
// otel.Handle and observes nothing for that backend). Collections share
// their readings: while one reads, the others wait for its answers, and
// answers less than a second old serve the next collections (several
// readers or scrapers do not each query every backend). Each backend must
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

// withDepthMaxAge sets how long the answers of a reading of queue depths
// serve further collections (tests; 0: only the collections that waited
// for the reading).
func withDepthMaxAge(d time.Duration) Option {
	return func(c *config) { c.depthMaxAge = d }
}

// Middleware is the OpenTelemetry tasks.Middleware: register it once,
// with tasks.Use for every backend or with tasks.WithMiddleware for one
// (registered twice, every enqueue and attempt has two spans). It is safe
// for concurrent use. Create it with New; one per process is enough, plus
// a metrics-only one (WithoutTracing) where a part of the program counts
// on its own meter provider.
type Middleware struct {
	tracing bool         // false: WithoutTracing
	tracer  trace.Tracer // nil without tracing
	prop    propagation.TextMapPropagator

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
	c := config{depthTimeout: defaultDepthTimeout, depthMaxAge: defaultDepthMaxAge}
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
		c.prop = propagation.TraceContext{}
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

	m := &Middleware{tracing: !c.noTracing, prop: c.prop}
	if m.tracing {
		m.tracer = c.tp.Tracer(ScopeName, trace.WithSchemaURL(semconv.SchemaURL))
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
		metric.WithDescription("How long attempts of tasks waited to start after they were due (the later of their enqueue and their run-after or retry time)."),
		metric.WithExplicitBucketBoundaries(secondsBuckets...))
	errs = append(errs, err)
	if len(readers) > 0 {
		m.depth, err = newDepthObserver(meter, readers, c.depthTimeout, c.depthMaxAge)
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
