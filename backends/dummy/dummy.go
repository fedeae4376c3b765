// Package dummy provides the dummy backend for unit tests: it stores
// enqueued tasks as READY results in memory and never runs them by itself,
// as django-tasks' DummyBackend.
//
// Tests inspect what was enqueued with Results, or typed with Enqueued, and
// run the stored tasks on demand with RunReady or RunAll to exercise task
// bodies, with the same life-cycle and signals as a worker, and the same
// task context (tasks.FromContext). Each call runs a task at most once: a
// task that snoozes (tasks.Snooze) stays READY for a later call, and a
// follow-up enqueued by a running task (to this backend, unless it names
// another) runs in the same call when it is due.
//
// Flags: Defer, Priority, GetResult, Cancel, BulkEnqueue, Timeout, Unique.
package dummy

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// Backend is the dummy backend. It is safe for concurrent use.
type Backend struct {
	tasks.BackendConfig
	workerID string

	mu      sync.Mutex
	results map[string]*tasks.RawResult
	order   []string // ids in enqueue order
	// unique maps the unique keys of unique tasks to their latest task.
	unique map[string]uniqueEntry
}

// uniqueEntry is the latest task enqueued with a unique key and its
// statuses.
type uniqueEntry struct {
	id       string
	statuses tasks.StatusMask
}

// duplicateOf returns the stored task that makes req a duplicate, or nil.
// b.mu is held.
func (b *Backend) duplicateOf(req *tasks.EnqueueRequest) *tasks.RawResult {
	if req.UniqueKey == "" {
		return nil
	}
	e, ok := b.unique[req.UniqueKey]
	if !ok {
		return nil
	}
	if r := b.results[e.id]; r != nil && e.statuses.Has(r.Status) {
		return r
	}
	return nil
}

var (
	_ tasks.Backend     = (*Backend)(nil)
	_ tasks.DepthReader = (*Backend)(nil)
)

// New returns an empty dummy backend configured with the shared backend
// options (name, allowed queues, enqueue-on-commit default).
func New(opts ...tasks.BackendOption) *Backend {
	b := &Backend{results: map[string]*tasks.RawResult{}, unique: map[string]uniqueEntry{}}
	b.Apply(opts...)
	host, _ := os.Hostname()
	b.workerID = host + ":" + strconv.Itoa(os.Getpid()) + ":dummy"
	return b
}

// Capabilities implements tasks.Backend.
func (b *Backend) Capabilities() tasks.Capabilities {
	return tasks.CanDefer | tasks.CanPriority | tasks.CanGetResult | tasks.CanCancel |
		tasks.CanBulkEnqueue | tasks.CanTimeout | tasks.CanUnique
}

// Enqueue implements tasks.Backend: it stores a READY result.
func (b *Backend) Enqueue(ctx context.Context, req *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	out, err := b.EnqueueMany(ctx, []*tasks.EnqueueRequest{req})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// EnqueueMany implements tasks.Backend.
func (b *Backend) EnqueueMany(ctx context.Context, reqs []*tasks.EnqueueRequest) ([]*tasks.RawResult, error) {
	now := time.Now().UTC()
	out := make([]*tasks.RawResult, len(reqs))
	b.mu.Lock()
	for _, req := range reqs {
		if _, dup := b.results[req.ID]; dup {
			b.mu.Unlock()
			return nil, fmt.Errorf("dummy backend %q: duplicate id %q", b.Name(), req.ID)
		}
	}
	var fresh []*tasks.RawResult // the results TaskEnqueued is sent for
	for i, req := range reqs {
		if d := b.duplicateOf(req); d != nil {
			out[i] = d.Clone() // a unique task's duplicate: the existing one
			continue
		}
		r := req.NewRawResult(b.Name(), now)
		b.results[r.ID] = r
		b.order = append(b.order, r.ID)
		if req.UniqueKey != "" {
			b.unique[req.UniqueKey] = uniqueEntry{id: r.ID, statuses: req.UniqueStatuses}
		}
		out[i] = r.Clone()
		fresh = append(fresh, out[i])
	}
	b.mu.Unlock()
	for _, r := range fresh {
		signals.TaskEnqueued.Send(ctx, b.Name(), r)
	}
	return out, nil
}

// GetResult implements tasks.Backend.
func (b *Backend) GetResult(_ context.Context, id string) (*tasks.RawResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.results[id]
	if !ok {
		return nil, fmt.Errorf("dummy backend %q: result %q: %w", b.Name(), id, tasks.ErrResultNotFound)
	}
	return r.Clone(), nil
}

// Cancel implements tasks.Backend.
func (b *Backend) Cancel(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.results[id]
	if !ok {
		return fmt.Errorf("dummy backend %q: cancel %q: %w", b.Name(), id, tasks.ErrResultNotFound)
	}
	if r.Status != tasks.StatusReady {
		return fmt.Errorf("dummy backend %q: cancel %q (%s): %w", b.Name(), id, r.Status, tasks.ErrNotCancellable)
	}
	now := time.Now().UTC()
	r.Status, r.FinishedAt = tasks.StatusCancelled, &now
	return nil
}

// Check implements tasks.Backend.
func (b *Backend) Check(context.Context) error { return b.CheckConfig() }

// QueueDepths implements tasks.DepthReader: for each queue with READY or
// RUNNING results, sorted by name, the READY ones that are due and those
// deferred into the future, the RUNNING ones, and when the
// longest-waiting due one became due.
func (b *Backend) QueueDepths(context.Context) ([]tasks.QueueDepth, error) {
	now := time.Now().UTC()
	b.mu.Lock()
	defer b.mu.Unlock()
	byQueue := map[string]*tasks.QueueDepth{}
	for _, r := range b.results {
		if r.Status != tasks.StatusReady && r.Status != tasks.StatusRunning {
			continue
		}
		d := byQueue[r.Queue]
		if d == nil {
			d = &tasks.QueueDepth{Queue: r.Queue}
			byQueue[r.Queue] = d
		}
		switch {
		case r.Status == tasks.StatusRunning:
			d.Running++
		case r.RunAfter.After(now):
			d.Scheduled++
		default:
			d.Ready++
			if d.OldestDue.IsZero() || r.RunAfter.Before(d.OldestDue) {
				d.OldestDue = r.RunAfter
			}
		}
	}
	var out []tasks.QueueDepth
	for _, d := range byQueue {
		out = append(out, *d)
	}
	slices.SortFunc(out, func(x, y tasks.QueueDepth) int { return cmp.Compare(x.Queue, y.Queue) })
	return out, nil
}

// Results returns copies of all stored results in enqueue order.
func (b *Backend) Results() []*tasks.RawResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*tasks.RawResult, 0, len(b.order))
	for _, id := range b.order {
		out = append(out, b.results[id].Clone())
	}
	return out
}

// Clear forgets every stored result.
func (b *Backend) Clear() {
	b.mu.Lock()
	defer b.mu.Unlock()
	clear(b.results)
	clear(b.unique)
	b.order = nil
}

// Job is a stored task of a known type, with its arguments decoded.
type Job[A, R any] struct {
	// Args are the stored arguments, decoded.
	Args A
	// Result is the typed result handle, as GetResult returns it.
	Result *tasks.Result[R]
}

// Enqueued returns the results stored for task, in enqueue order, with their
// arguments decoded to A: the typed check users' tests need ("was this task
// enqueued, with these arguments?"), like River's RequireInserted.
func Enqueued[A, R any](ctx context.Context, b *Backend, task *tasks.Task[A, R]) ([]Job[A, R], error) {
	var out []Job[A, R]
	for _, raw := range b.Results() {
		if raw.TaskName != task.Name() {
			continue
		}
		a, err := task.DecodeArgs(raw.Args)
		if err != nil {
			return nil, err
		}
		res, err := task.Using(tasks.WithBackend(b.Name())).GetResult(ctx, raw.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, Job[A, R]{Args: a, Result: res})
	}
	return out, nil
}

// RunReady runs, one at a time in the caller's goroutine, every READY task
// that is due, in claim order (priority, then run-after, then enqueue
// time). Each gets one attempt (tasks.RunAttempt) with the life-cycle and
// signals of a worker: RUNNING, then SUCCESSFUL or FAILED. It returns how
// many attempts ran, and the context's error if ctx ended before every due
// task ran.
//
// Each task runs at most once per call. Tasks enqueued during the call
// (follow-ups enqueued by the tasks it runs go to this backend unless they
// name another) run in the same call when they are due. A task that
// returns tasks.Snooze(d) goes back to READY, due d from its attempt, with
// the attempt not counted, and is left for a later call even when d is 0.
//
// A task's error or panic is recorded in its result, never returned. A task
// that calls runtime.Goexit (as testing.T.FailNow does) is recorded FAILED,
// with its TaskFinished signal, and then the calling goroutine exits, as
// Goexit promises: the tasks after it do not run.
func (b *Backend) RunReady(ctx context.Context) (int, error) {
	return b.run(ctx, false)
}

// RunAll is RunReady that also runs tasks deferred into the future
// (snoozed tasks included): every READY task, each at most once per call,
// so that a task that keeps snoozing cannot make it loop forever.
func (b *Backend) RunAll(ctx context.Context) (int, error) {
	return b.run(ctx, true)
}

func (b *Backend) run(ctx context.Context, all bool) (int, error) {
	n := 0
	ran := map[string]bool{}
	cfg := tasks.AttemptConfig{Backend: &b.BackendConfig, Running: b}
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		due := time.Time{}
		if !all {
			due = time.Now().UTC()
		}
		r := b.claim(due, ran)
		if r == nil {
			return n, nil
		}
		n++
		ran[r.ID] = true
		signals.TaskStarted.Send(ctx, b.Name(), r)
		// Everything after the attempt happens in finish: it also runs when
		// the task calls runtime.Goexit.
		tasks.RunAttempt(ctx, r, cfg, func(a tasks.Attempt) {
			a.Apply(r)
			b.mu.Lock()
			if _, ok := b.results[r.ID]; ok { // unless Clear forgot it meanwhile
				b.results[r.ID] = r.Clone()
			}
			b.mu.Unlock()
			signals.TaskFinished.Send(ctx, b.Name(), r)
		})
	}
}

// claim marks the first READY task due at due (any, when zero) that is
// not in skip RUNNING and returns a copy.
func (b *Backend) claim(due time.Time, skip map[string]bool) *tasks.RawResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	var ready []*tasks.RawResult
	for _, id := range b.order {
		r := b.results[id]
		if r.Status == tasks.StatusReady && !skip[id] && (due.IsZero() || !r.RunAfter.After(due)) {
			ready = append(ready, r)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	r := slices.MinFunc(ready, func(x, y *tasks.RawResult) int {
		return cmp.Or(cmp.Compare(y.Priority, x.Priority), x.RunAfter.Compare(y.RunAfter), x.EnqueuedAt.Compare(y.EnqueuedAt))
	})
	now := time.Now().UTC()
	r.Status = tasks.StatusRunning
	r.Attempts++
	if r.StartedAt == nil {
		r.StartedAt = &now
	}
	r.LastAttemptedAt = &now
	r.WorkerIDs = append(r.WorkerIDs, b.workerID)
	return r.Clone()
}
