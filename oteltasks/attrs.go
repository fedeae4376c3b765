package oteltasks

import (
	"slices"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/tasks"
)

// The gotasks span attributes (beyond the messaging conventions).
const (
	keyTaskName    = attribute.Key("gotasks.task.name")
	keyBackend     = attribute.Key("gotasks.backend")
	keyAttempt     = attribute.Key("gotasks.attempt")
	keyMaxAttempts = attribute.Key("gotasks.max_attempts")
	keyWorkerID    = attribute.Key("gotasks.worker.id")
	keyOutcome     = attribute.Key("gotasks.outcome")
)

// The metric attributes: short keys, read as Prometheus labels.
const (
	labelTask    = attribute.Key("task")
	labelQueue   = attribute.Key("queue")
	labelBackend = attribute.Key("backend")
	labelOutcome = attribute.Key("outcome")
	labelState   = attribute.Key("state")
)

// messagingSystem is the messaging.system of every span.
var messagingSystem = semconv.MessagingSystemKey.String("gotasks")

// outcomes are the outcomes whose attribute sets a series prepares.
var outcomes = [...]tasks.Outcome{
	tasks.OutcomeSuccess, tasks.OutcomeRetry, tasks.OutcomeFailure, tasks.OutcomeSnooze, tasks.OutcomeHandBack,
}

// measureOpts are the options of one measurement with one attribute set,
// as the slices the instruments' variadic methods take (passed with ...,
// they are not copied).
type measureOpts struct {
	add []metric.AddOption
	rec []metric.RecordOption
}

func newMeasureOpts(kv ...attribute.KeyValue) measureOpts {
	o := metric.WithAttributeSet(attribute.NewSet(kv...))
	return measureOpts{add: []metric.AddOption{o}, rec: []metric.RecordOption{o}}
}

// seriesKey identifies the series of one task in one queue of one backend.
type seriesKey struct{ task, queue, backend string }

// series is what the attempts of one seriesKey share, built once: the
// metric attribute sets (with each outcome), the consumer span's name and
// its constant attributes. It is read-only once built.
type series struct {
	base      measureOpts
	byOutcome [len(outcomes)]measureOpts
	// processName is the consumer span's name.
	processName string
	// processStart are the consumer span's start options: its kind and
	// the attributes that do not change from one attempt to the next
	// (given at the start, where a sampler sees them).
	processStart []trace.SpanStartOption
	// repeatStart are those of a run of a repeating task: processStart
	// and a new root.
	repeatStart []trace.SpanStartOption
}

func newSeries(k seriesKey) *series {
	task, queue, backend := labelTask.String(k.task), labelQueue.String(k.queue), labelBackend.String(k.backend)
	s := &series{
		base:        newMeasureOpts(task, queue, backend),
		processName: "process " + k.task,
		processStart: []trace.SpanStartOption{
			trace.WithSpanKind(trace.SpanKindConsumer),
			trace.WithAttributes(
				messagingSystem,
				semconv.MessagingOperationName("process"),
				semconv.MessagingOperationTypeProcess,
				semconv.MessagingDestinationName(k.queue),
				keyTaskName.String(k.task),
				keyBackend.String(k.backend),
			),
		},
	}
	s.repeatStart = append(slices.Clip(s.processStart), trace.WithNewRoot())
	for i, o := range outcomes {
		s.byOutcome[i] = newMeasureOpts(task, queue, backend, labelOutcome.String(string(o)))
	}
	return s
}

// withOutcome returns the options of the series with outcome o.
func (s *series) withOutcome(k seriesKey, o tasks.Outcome) measureOpts {
	for i, x := range outcomes {
		if x == o {
			return s.byOutcome[i]
		}
	}
	// An outcome this package does not know yet: not prepared.
	return newMeasureOpts(labelTask.String(k.task), labelQueue.String(k.queue), labelBackend.String(k.backend),
		labelOutcome.String(string(o)))
}

// maxCachedSeries bounds the series cache. Task, queue and backend names
// are few in any sane deployment; past the bound (rows of unknown tasks by
// the thousand, say) series are built for each use instead of kept.
const maxCachedSeries = 10000

// seriesCache keeps the series by key, so that the hot path builds no
// attribute set.
type seriesCache struct {
	m sync.Map // seriesKey → *series
	n atomic.Int64
}

func (c *seriesCache) get(task, queue, backend string) (seriesKey, *series) {
	k := seriesKey{task, queue, backend}
	if v, ok := c.m.Load(k); ok {
		return k, v.(*series)
	}
	s := newSeries(k)
	if c.n.Load() >= maxCachedSeries {
		return k, s
	}
	if v, loaded := c.m.LoadOrStore(k, s); loaded {
		return k, v.(*series)
	}
	c.n.Add(1)
	return k, s
}
