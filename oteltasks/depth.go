package oteltasks

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/gotasks/gotasks/tasks"
)

// The values of the state attribute of gotasks.queue.depth.
const (
	stateReady     = "ready"
	stateScheduled = "scheduled"
	stateRunning   = "running"
)

// maxKnownQueues bounds the queues per backend remembered to be reported
// as empty once they empty.
const maxKnownQueues = 1000

// depthSource is a backend of WithQueueDepth.
type depthSource struct {
	name string
	r    tasks.DepthReader
}

// depthObserver reads the queue depths of its backends at each collection
// and observes them with the two gauges. Collections share the readings:
// one reads at a time, and its answers serve the collections that waited
// for it and, for maxAge, those that come after.
type depthObserver struct {
	sources []depthSource
	timeout time.Duration
	maxAge  time.Duration
	depth   metric.Int64ObservableGauge
	age     metric.Float64ObservableGauge
	reg     metric.Registration

	// waiting counts the collections waiting for mu (tests).
	waiting atomic.Int64

	mu     sync.Mutex // serialises the collections
	last   []depthAnswer
	lastAt time.Time             // when last was read (its end); zero before
	known  []map[string]struct{} // per source: the queues observed so far
}

func newDepthObserver(meter metric.Meter, sources []depthSource, timeout, maxAge time.Duration) (*depthObserver, error) {
	d := &depthObserver{sources: sources, timeout: timeout, maxAge: maxAge, known: make([]map[string]struct{}, len(sources))}
	for i := range d.known {
		d.known[i] = map[string]struct{}{}
	}
	var err error
	d.depth, err = meter.Int64ObservableGauge(metricDepth, metric.WithUnit("{task}"),
		metric.WithDescription("Tasks in a queue, by state: ready (due, waiting for a worker), scheduled (deferred into the future, retries included), running."))
	if err != nil {
		return nil, err
	}
	d.age, err = meter.Float64ObservableGauge(metricAge, metric.WithUnit("s"),
		metric.WithDescription("How long the oldest due ready task of a queue has been waiting; 0 when none is waiting."))
	if err != nil {
		return nil, err
	}
	d.reg, err = meter.RegisterCallback(d.observe, d.depth, d.age)
	if err != nil {
		return nil, err
	}
	return d, nil
}

func (d *depthObserver) close() error {
	if d.reg == nil {
		return nil
	}
	return d.reg.Unregister()
}

// depthAnswer is what one backend's QueueDepths returned.
type depthAnswer struct {
	depths []tasks.QueueDepth
	err    error
}

// read asks every source for its depths at once and waits for the answers
// until ctx is done: a backend that does not answer in time (even one that
// ignores ctx) is an error, and the collection goes on without it.
func (d *depthObserver) read(ctx context.Context) []depthAnswer {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	chans := make([]chan depthAnswer, len(d.sources))
	for i, src := range d.sources {
		ch := make(chan depthAnswer, 1)
		chans[i] = ch
		go func() {
			ds, err := src.r.QueueDepths(ctx)
			ch <- depthAnswer{ds, err}
		}()
	}
	out := make([]depthAnswer, len(d.sources))
	for i, ch := range chans {
		select {
		case out[i] = <-ch:
		case <-ctx.Done():
			select {
			case out[i] = <-ch: // it answered just in time
			default:
				out[i].err = fmt.Errorf("no answer: %w", ctx.Err())
			}
		}
	}
	return out
}

// answers returns the answers of a reading younger than maxAge, or of one
// that ended after asked (a collection that waited for a reading in
// flight), or of a new reading; d.mu must be held. The errors of a new
// reading are reported with otel.Handle, once.
func (d *depthObserver) answers(ctx context.Context, asked time.Time) []depthAnswer {
	if d.last != nil && (d.lastAt.After(asked) || time.Since(d.lastAt) < d.maxAge) {
		return d.last
	}
	d.last = d.read(ctx)
	d.lastAt = time.Now()
	for i, a := range d.last {
		if a.err != nil {
			otel.Handle(fmt.Errorf("oteltasks: queue depths of backend %q: %w", d.sources[i].name, a.err))
		}
	}
	return d.last
}

// observe is the gauges' callback.
func (d *depthObserver) observe(ctx context.Context, o metric.Observer) error {
	asked := time.Now()
	d.waiting.Add(1)
	d.mu.Lock()
	d.waiting.Add(-1)
	defer d.mu.Unlock()
	answers := d.answers(ctx, asked)
	now := time.Now()
	for i, a := range answers {
		src := d.sources[i]
		if a.err != nil {
			continue // reported by answers
		}
		known := d.known[i]
		seen := make(map[string]bool, len(a.depths))
		for _, q := range a.depths {
			age := 0.0
			if q.Ready > 0 && !q.OldestDue.IsZero() {
				age = max(0, now.Sub(q.OldestDue).Seconds())
			}
			observeQueue(o, d, src.name, q.Queue, q.Ready, q.Scheduled, q.Running, age)
			seen[q.Queue] = true
			if len(known) < maxKnownQueues {
				known[q.Queue] = struct{}{}
			}
		}
		for q := range known {
			if !seen[q] {
				observeQueue(o, d, src.name, q, 0, 0, 0, 0)
			}
		}
	}
	return nil
}

func observeQueue(o metric.Observer, d *depthObserver, backend, queue string, ready, scheduled, running int64, age float64) {
	b, q := labelBackend.String(backend), labelQueue.String(queue)
	o.ObserveInt64(d.depth, ready, metric.WithAttributes(q, b, labelState.String(stateReady)))
	o.ObserveInt64(d.depth, scheduled, metric.WithAttributes(q, b, labelState.String(stateScheduled)))
	o.ObserveInt64(d.depth, running, metric.WithAttributes(q, b, labelState.String(stateRunning)))
	o.ObserveFloat64(d.age, age, metric.WithAttributeSet(attribute.NewSet(q, b)))
}
