// Package immediate provides the immediate backend: each task runs in the
// caller's goroutine during Enqueue, with the full status life-cycle and the
// signals, as django-tasks' ImmediateBackend. It is meant for development.
// When no backend is configured under "default", package tasks behaves as
// an immediate backend with the default options.
//
// A task's error or panic is recorded in a FAILED result (type, message, and
// the stack of a panic); Enqueue never returns the task's error and never
// panics because of the task. A task that calls runtime.Goexit (as
// testing.T.FailNow does) is recorded FAILED too, with its TaskFinished
// signal, and then the goroutine that called Enqueue exits, as Goexit
// promises.
//
// Flags: GetResult, Priority, Timeout, Unique. It cannot defer, cancel or repeat:
// enqueueing with RunAfter/Delay or Repeat is an error wrapping
// tasks.ErrInvalidTask. It does not retry: MaxAttempts is accepted (so that
// the same task definition works on every backend) and each task gets one
// attempt.
//
// A running task has its tasks.TaskContext (attempt 1 of 1, worker id
// "host:pid:inline"); a task it enqueues without a backend of its own runs
// on this backend too, at once, nested in its parent. A task that returns
// tasks.NoRetry(err) is FAILED as with any error. A task that returns
// tasks.Snooze(d) is FAILED too, with a *tasks.SnoozeError saying that the
// backend cannot defer: the immediate backend never sleeps in the caller's
// goroutine and cannot run the task later.
package immediate

import (
	"context"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/internal/recent"
	"github.com/gotasks/gotasks/tasks"
)

// DefaultKeep is how many results a backend keeps for GetResult unless
// WithKeep says otherwise.
const DefaultKeep = 10000

// Backend is the immediate backend. It is safe for concurrent use. Create it
// with New.
type Backend struct {
	tasks.BackendConfig
	keep int
	// results keeps the results for GetResult, and the unique keys of
	// unique tasks, each held by its latest task while that task's result
	// is kept.
	results *recent.Keys[*tasks.RawResult]
}

var _ tasks.Backend = (*Backend)(nil)

// Option configures a Backend.
type Option func(*Backend)

// WithConfig applies the shared backend options (name, allowed queues,
// enqueue-on-commit default, …).
func WithConfig(opts ...tasks.BackendOption) Option {
	return func(b *Backend) { b.Apply(opts...) }
}

// WithKeep sets how many results are kept in memory for GetResult (default
// DefaultKeep; the oldest are forgotten first). n ≤ 0 keeps every result.
func WithKeep(n int) Option { return func(b *Backend) { b.keep = n } }

// New returns an immediate backend; configure its name, allowed queues and
// enqueue-on-commit default with tasks backend options:
//
//	b := immediate.New(immediate.WithConfig(tasks.WithName("dev")))
func New(opts ...Option) *Backend {
	b := &Backend{keep: DefaultKeep}
	for _, o := range opts {
		o(b)
	}
	b.results = recent.NewKeys[*tasks.RawResult](b.keep)
	return b
}

// Capabilities implements tasks.Backend: GetResult, Priority (trivially
// honoured: each task runs as it is enqueued), Timeout and Unique (a unique
// task is a duplicate while another with its key runs, or while the result
// of one is kept in a status its statuses include).
func (b *Backend) Capabilities() tasks.Capabilities {
	return tasks.CanGetResult | tasks.CanPriority | tasks.CanTimeout | tasks.CanUnique
}

// Enqueue implements tasks.Backend: it runs the task before returning (see
// tasks.RunInline) and returns the finished result.
func (b *Backend) Enqueue(ctx context.Context, req *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	return b.run(ctx, req), nil
}

// run runs req, unless it is a unique task with a duplicate: then it returns
// the duplicate's result.
func (b *Backend) run(ctx context.Context, req *tasks.EnqueueRequest) *tasks.RawResult {
	if req.UniqueKey != "" {
		// Stored READY at once, in the claim, so that a concurrent enqueue
		// sees it before RunInline stores it.
		ready := req.NewRawResult(b.Name(), time.Now().UTC())
		statuses := req.UniqueStatuses // not req: the key outlives the call
		if r, dup := b.results.Claim(req.UniqueKey, req.ID, ready,
			func(r *tasks.RawResult) bool { return statuses.Has(r.Status) }); dup {
			return r.Clone()
		}
	}
	return tasks.RunInline(ctx, b, &b.BackendConfig, req, b.store)
}

// EnqueueMany implements tasks.Backend: it runs the tasks one after the
// other.
func (b *Backend) EnqueueMany(ctx context.Context, reqs []*tasks.EnqueueRequest) ([]*tasks.RawResult, error) {
	out := make([]*tasks.RawResult, len(reqs))
	for i, req := range reqs {
		out[i] = b.run(ctx, req)
	}
	return out, nil
}

func (b *Backend) store(r *tasks.RawResult) { b.results.Put(r.ID, r) }

// GetResult implements tasks.Backend. A result forgotten to respect WithKeep
// is not found.
func (b *Backend) GetResult(_ context.Context, id string) (*tasks.RawResult, error) {
	r, ok := b.results.Get(id)
	if !ok {
		return nil, fmt.Errorf("backend %q: result %q: %w", b.Name(), id, tasks.ErrResultNotFound)
	}
	return r.Clone(), nil
}

// Cancel implements tasks.Backend: immediate tasks are finished before
// anyone could cancel them, so it returns an error wrapping
// tasks.ErrNotSupported.
func (b *Backend) Cancel(context.Context, string) error {
	return fmt.Errorf("backend %q: cancel: %w", b.Name(), tasks.ErrNotSupported)
}

// Check implements tasks.Backend: it reports configuration problems.
func (b *Backend) Check(context.Context) error { return b.CheckConfig() }
