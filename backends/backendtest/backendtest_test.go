package backendtest_test

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/backendtest"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// limited hides capabilities of a backend, so that the suite's checks for
// capabilities a backend does not claim run too.
type limited struct {
	tasks.Backend
	caps tasks.Capabilities
}

func (l limited) Capabilities() tasks.Capabilities { return l.caps }

// BackendMiddleware forwards the wrapped backend's middleware, which the
// interface embedding would hide.
func (l limited) BackendMiddleware() []tasks.Middleware {
	return l.Backend.(interface{ BackendMiddleware() []tasks.Middleware }).BackendMiddleware()
}

func (l limited) Cancel(ctx context.Context, id string) error {
	if !l.caps.Has(tasks.CanCancel) {
		return fmt.Errorf("cancel: %w", tasks.ErrNotSupported)
	}
	return l.Backend.Cancel(ctx, id)
}

func TestSuiteOnBareInline(t *testing.T) {
	backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
		return &backendtest.Harness{Backend: limited{Backend: immediate.New(immediate.WithConfig(opts...))}}
	})
}

func TestSuiteOnBareDummy(t *testing.T) {
	backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
		b := dummy.New(opts...)
		return &backendtest.Harness{
			Backend: limited{Backend: b},
			Drain:   func(ctx context.Context) error { _, err := b.RunReady(ctx); return err },
		}
	})
}

func TestSuiteOnFullFake(t *testing.T) {
	backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
		b := &fake{results: map[string]*tasks.RawResult{}}
		b.Apply(opts...)
		return &backendtest.Harness{
			Backend: b,
			Drain:   b.drain,
			BeginTx: func(ctx context.Context) (context.Context, func() error, func() error) {
				h := tasks.NewTxHooks(b)
				return tasks.ContextWithTx(ctx, h),
					func() error { return h.Commit(ctx) },
					func() error { h.Rollback(); return nil }
			},
		}
	})
}

// fake is an in-memory backend that claims every capability: retries with
// backoff, repeats, and a "transaction" of its own (TxHooks owned by it).
type fake struct {
	tasks.BackendConfig

	mu      sync.Mutex
	results map[string]*tasks.RawResult
	order   []string
}

func (b *fake) Capabilities() tasks.Capabilities {
	return tasks.CanDefer | tasks.CanPriority | tasks.CanGetResult | tasks.CanRetry | tasks.CanTransact |
		tasks.CanCancel | tasks.CanBulkEnqueue | tasks.CanRepeat | tasks.CanTimeout
}

func (b *fake) JoinsTx(ctx context.Context) bool {
	h := tasks.TxFromContext(ctx)
	return h != nil && h.Owner() == b
}

func (b *fake) Enqueue(ctx context.Context, req *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	rs, err := b.EnqueueMany(ctx, []*tasks.EnqueueRequest{req})
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

func (b *fake) EnqueueMany(ctx context.Context, reqs []*tasks.EnqueueRequest) ([]*tasks.RawResult, error) {
	now := time.Now().UTC()
	out := make([]*tasks.RawResult, len(reqs))
	for i, req := range reqs {
		out[i] = req.NewRawResult(b.Name(), now)
	}
	insert := func(ctx context.Context) error {
		b.mu.Lock()
		for _, r := range out {
			b.results[r.ID] = r.Clone()
			b.order = append(b.order, r.ID)
		}
		b.mu.Unlock()
		for _, r := range out {
			signals.TaskEnqueued.Send(ctx, b.Name(), r)
		}
		return nil
	}
	if b.JoinsTx(ctx) {
		tasks.TxFromContext(ctx).OnCommit(insert)
	} else if err := insert(ctx); err != nil {
		return nil, err
	}
	cl := make([]*tasks.RawResult, len(out))
	for i, r := range out {
		cl[i] = r.Clone()
	}
	return cl, nil
}

func (b *fake) GetResult(_ context.Context, id string) (*tasks.RawResult, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.results[id]
	if !ok {
		return nil, fmt.Errorf("fake %q: %s: %w", b.Name(), id, tasks.ErrResultNotFound)
	}
	return r.Clone(), nil
}

func (b *fake) Cancel(_ context.Context, id string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	r, ok := b.results[id]
	if !ok {
		return fmt.Errorf("fake: %s: %w", id, tasks.ErrResultNotFound)
	}
	if r.Status != tasks.StatusReady {
		return fmt.Errorf("fake: %s: %w", id, tasks.ErrNotCancellable)
	}
	now := time.Now().UTC()
	r.Status, r.FinishedAt = tasks.StatusCancelled, &now
	return nil
}

func (b *fake) Check(context.Context) error { return b.CheckConfig() }

func (b *fake) claim() *tasks.RawResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now().UTC()
	var ready []*tasks.RawResult
	for _, id := range b.order {
		if r := b.results[id]; r.Status == tasks.StatusReady && !r.RunAfter.After(now) {
			ready = append(ready, r)
		}
	}
	if len(ready) == 0 {
		return nil
	}
	r := slices.MinFunc(ready, func(x, y *tasks.RawResult) int {
		return cmp.Or(cmp.Compare(y.Priority, x.Priority), x.RunAfter.Compare(y.RunAfter), x.EnqueuedAt.Compare(y.EnqueuedAt))
	})
	r.Status = tasks.StatusRunning
	r.Attempts++
	if r.StartedAt == nil {
		r.StartedAt = &now
	}
	r.LastAttemptedAt = &now
	r.WorkerIDs = append(r.WorkerIDs, "fake")
	return r.Clone()
}

func (b *fake) drain(ctx context.Context) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		r := b.claim()
		if r == nil {
			return nil
		}
		signals.TaskStarted.Send(ctx, b.Name(), r)
		// All that follows the attempt happens in finish, which also runs
		// when the task calls runtime.Goexit.
		tasks.RunAttempt(ctx, r, tasks.AttemptConfig{Backend: &b.BackendConfig, Retries: true, Running: b}, func(a tasks.Attempt) {
			a.Apply(r)
			b.finish(ctx, r, a)
		})
	}
}

// finish stores the outcome of an attempt of r (the next run of a
// repeating task included) and sends its signals.
func (b *fake) finish(ctx context.Context, r *tasks.RawResult, a tasks.Attempt) {
	var next *tasks.RawResult
	if a.Status == tasks.StatusSuccessful && r.Repeat > 0 {
		at := r.RunAfter.Add(r.Repeat)
		for !at.After(a.End) {
			at = at.Add(r.Repeat)
		}
		if r.RepeatUntil == nil || !at.After(*r.RepeatUntil) {
			next = (&tasks.EnqueueRequest{
				ID: tasks.NewID(), TaskName: r.TaskName, Args: r.Args, Priority: r.Priority, Queue: r.Queue,
				RunAfter: at, MaxAttempts: r.MaxAttempts, Timeout: r.Timeout, VerboseName: r.VerboseName,
				Creator: r.Creator, Repeat: r.Repeat,
			}).NewRawResult(b.Name(), a.End)
			next.RepeatUntil = r.RepeatUntil
		}
	}
	b.mu.Lock()
	b.results[r.ID] = r.Clone()
	if next != nil {
		b.results[next.ID] = next.Clone()
		b.order = append(b.order, next.ID)
	}
	b.mu.Unlock()
	signals.TaskFinished.Send(ctx, b.Name(), r)
	if next != nil {
		signals.TaskEnqueued.Send(ctx, b.Name(), next)
	}
}
