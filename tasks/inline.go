package tasks

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// InlineBackend runs each task in the caller's goroutine during Enqueue,
// with the full status life-cycle (READY → RUNNING → SUCCESSFUL or FAILED)
// and the signals at each step. A task's error or panic becomes a FAILED
// result; Enqueue itself only fails for invalid input.
//
// It is the implementation of package backends/immediate, and the backend
// used for "default" when nothing is configured. It keeps the most recent
// results in memory (10,000 by default) for GetResult.
type InlineBackend struct {
	BackendConfig
	workerID string
	keep     int

	mu      sync.Mutex
	results map[string]*RawResult
	order   []string // ids, oldest first, for eviction
}

// InlineOption configures an InlineBackend.
type InlineOption func(*InlineBackend)

// InlineKeep sets how many finished results are kept for GetResult.
func InlineKeep(n int) InlineOption { return func(b *InlineBackend) { b.keep = n } }

// InlineConfig applies backend options (name, queues, …).
func InlineConfig(opts ...BackendOption) InlineOption {
	return func(b *InlineBackend) { b.Apply(opts...) }
}

// NewInlineBackend returns an InlineBackend.
func NewInlineBackend(opts ...InlineOption) *InlineBackend {
	host, _ := os.Hostname()
	b := &InlineBackend{
		workerID: host + ":" + strconv.Itoa(os.Getpid()) + ":inline",
		keep:     10000,
		results:  map[string]*RawResult{},
	}
	for _, o := range opts {
		o(b)
	}
	return b
}

// Capabilities implements Backend: GetResult, Priority (trivially honoured:
// each task runs as it is enqueued) and Timeout. It cannot defer, retry,
// cancel or repeat.
func (b *InlineBackend) Capabilities() Capabilities {
	return CanGetResult | CanPriority | CanTimeout
}

// Enqueue implements Backend: it runs the task before returning.
func (b *InlineBackend) Enqueue(ctx context.Context, req *EnqueueRequest) (*RawResult, error) {
	now := time.Now().UTC()
	r := req.NewRawResult(b.Name(), now)
	b.store(r)
	Emit(ctx, EventEnqueued, b.Name(), r.Clone())

	start := time.Now().UTC()
	r.Status, r.Attempts = StatusRunning, 1
	r.StartedAt, r.LastAttemptedAt = &start, &start
	r.WorkerIDs = []string{b.workerID}
	b.store(r)
	Emit(ctx, EventStarted, b.Name(), r.Clone())

	out, err := Execute(ctx, r)
	end := time.Now().UTC()
	r.FinishedAt = &end
	if err != nil {
		r.Status = StatusFailed
		r.Errors = append(r.Errors, NewTaskError(1, end, err))
	} else {
		r.Status, r.ReturnValue = StatusSuccessful, out
	}
	b.store(r)
	Emit(ctx, EventFinished, b.Name(), r.Clone())
	return r.Clone(), nil
}

// EnqueueMany implements Backend: it runs the tasks one after the other.
func (b *InlineBackend) EnqueueMany(ctx context.Context, reqs []*EnqueueRequest) ([]*RawResult, error) {
	out := make([]*RawResult, 0, len(reqs))
	for _, req := range reqs {
		r, err := b.Enqueue(ctx, req)
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

// GetResult implements Backend.
func (b *InlineBackend) GetResult(_ context.Context, id string) (*RawResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.results[id]
	if !ok {
		return nil, fmt.Errorf("backend %q: result %q: %w", b.Name(), id, ErrResultNotFound)
	}
	return r.Clone(), nil
}

// Cancel implements Backend: immediate tasks are finished before anyone
// could cancel them.
func (b *InlineBackend) Cancel(context.Context, string) error {
	return fmt.Errorf("backend %q: cancel: %w", b.Name(), ErrNotSupported)
}

// Check implements Backend.
func (b *InlineBackend) Check(context.Context) error { return b.CheckConfig() }

func (b *InlineBackend) store(r *RawResult) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.results[r.ID]; !ok {
		b.order = append(b.order, r.ID)
		for b.keep > 0 && len(b.order) > b.keep {
			delete(b.results, b.order[0])
			b.order = b.order[1:]
		}
	}
	b.results[r.ID] = r.Clone()
}
