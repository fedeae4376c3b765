package tasks_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/tasks"
)

// middlewareBundle is TestMiddleware's test bundle: a registered dummy
// backend and its name.
type middlewareBundle struct {
	b    tasks.Backend
	name string
}

// runReady runs the bundle's READY tasks.
func (b *middlewareBundle) runReady(t *testing.T) {
	t.Helper()
	if _, err := b.b.(*dummy.Backend).RunReady(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// bothHooks is a middleware with both hooks given as functions.
type bothHooks struct {
	Enqueue func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error)
	Execute func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error
}

func (h bothHooks) asMiddleware() tasks.Middleware { return hooks{h} }

type hooks struct{ h bothHooks }

func (m hooks) Enqueue(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
	return m.h.Enqueue(ctx, reqs, next)
}

func (m hooks) Execute(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
	return m.h.Execute(ctx, x, next)
}

// nilErr is an error type whose nil pointer is unusable.
type nilErr struct{ msg string }

func (e *nilErr) Error() string { return e.msg }

// The conformance suite (backends/backendtest) checks middleware order,
// outcomes and metadata on every backend; these tests cover the rest of
// the core's contract.

func TestMiddleware(t *testing.T) {
	t.Parallel()

	type testBundle = middlewareBundle
	setup := func(t *testing.T, opts ...tasks.BackendOption) *testBundle {
		t.Helper()
		b, name := newDummy(t, opts...)
		return &testBundle{b: b, name: name}
	}
	echo := tasks.Define(uniqueName(t), func(ctx context.Context, s string) (string, error) { return s, nil })
	slow := tasks.Define(uniqueName(t), func(ctx context.Context, d time.Duration) (string, error) {
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-time.After(d):
			return "late", nil
		}
	}, tasks.WithTimeout(20*time.Millisecond), tasks.WithMaxAttempts(1))

	t.Run("UseAndRemove", func(t *testing.T) {
		t.Parallel()
		var calls []string
		mw := tasks.EnqueueMiddlewareFunc(func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
			if reqs[0].Metadata["test"] == t.Name() {
				calls = append(calls, reqs[0].ID)
			}
			return next(ctx, reqs)
		})
		bundle := setup(t)
		task := echo.Using(tasks.WithBackend(bundle.name), tasks.WithMetadata(map[string]string{"test": t.Name()}))
		remove := tasks.Use(mw)
		first, err := task.Enqueue(t.Context(), "a")
		if err != nil {
			t.Fatal(err)
		}
		remove()
		remove() // a second call is harmless
		if _, err := task.Enqueue(t.Context(), "b"); err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{first.ID}, calls); d != "" {
			t.Errorf("enqueues seen by global middleware (-want +got):\n%s", d)
		}
	})

	t.Run("NilPanics", func(t *testing.T) {
		t.Parallel()
		mustPanic(t, "Use(nil)", func() { tasks.Use(nil) })
		mustPanic(t, "WithMiddleware(nil)", func() { tasks.WithMiddleware(nil) })
	})

	t.Run("WrongResultCount", func(t *testing.T) {
		t.Parallel()
		drop := tasks.EnqueueMiddlewareFunc(func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
			rs, err := next(ctx, reqs)
			return rs[:len(rs)-1], err
		})
		bundle := setup(t, tasks.WithMiddleware(drop))
		_, err := echo.Using(tasks.WithBackend(bundle.name)).EnqueueMany(t.Context(), []string{"a", "b"})
		if err == nil || !strings.Contains(err.Error(), "returned 1 results for 2 tasks") {
			t.Errorf("EnqueueMany with middleware that drops a result: err = %v, want one naming the counts", err)
		}
	})

	t.Run("NextTwice", func(t *testing.T) {
		t.Parallel()
		var runs atomic.Int32
		counted := tasks.Define(uniqueName(t), func(ctx context.Context, s string) (string, error) {
			runs.Add(1)
			return s, nil
		}, tasks.WithMaxAttempts(1))
		var execErr, enqErr error
		twice := bothHooks{
			Enqueue: func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
				rs, err := next(ctx, reqs)
				_, enqErr = next(ctx, reqs)
				return rs, err
			},
			Execute: func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
				_ = next(ctx)
				execErr = next(ctx)
				return nil
			},
		}
		bundle := setup(t, tasks.WithMiddleware(twice.asMiddleware()))
		res, err := counted.Using(tasks.WithBackend(bundle.name)).Enqueue(t.Context(), "x")
		if err != nil {
			t.Fatal(err)
		}
		bundle.runReady(t)
		if !errors.Is(enqErr, tasks.ErrNextCalledTwice) || !errors.Is(execErr, tasks.ErrNextCalledTwice) {
			t.Errorf("second calls of next: enqueue %v, execute %v; want ErrNextCalledTwice", enqErr, execErr)
		}
		if n := runs.Load(); n != 1 {
			t.Errorf("the task ran %d times, want 1", n)
		}
		if raws := bundle.b.(*dummy.Backend).Results(); len(raws) != 1 || raws[0].ID != res.ID {
			t.Errorf("stored results %v, want only %s", raws, res.ID)
		}
	})

	t.Run("RequestsReplaced", func(t *testing.T) {
		t.Parallel()
		drop := tasks.EnqueueMiddlewareFunc(func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
			return next(ctx, reqs[:1])
		})
		bundle := setup(t, tasks.WithMiddleware(drop))
		_, err := echo.Using(tasks.WithBackend(bundle.name)).EnqueueMany(t.Context(), []string{"a", "b"})
		if err == nil || !strings.Contains(err.Error(), "not add, drop or replace") {
			t.Errorf("EnqueueMany through middleware that drops a request: err = %v, want one saying what is allowed", err)
		}
		if raws := bundle.b.(*dummy.Backend).Results(); len(raws) != 0 {
			t.Errorf("%d results stored, want none", len(raws))
		}
	})

	t.Run("TypedNilFromMiddleware", func(t *testing.T) {
		t.Parallel()
		var outerSaw error
		outer := tasks.ExecuteMiddlewareFunc(func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
			outerSaw = next(ctx)
			_ = outerSaw.Error() // must not panic
			return outerSaw
		})
		inner := bothHooks{
			Enqueue: func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
				if reqs[0].Metadata["nil-at-enqueue"] != "" {
					var e *nilErr
					return nil, e
				}
				return next(ctx, reqs)
			},
			Execute: func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
				_ = next(ctx)
				var e *nilErr
				return e
			},
		}
		bundle := setup(t, tasks.WithMiddleware(outer, inner.asMiddleware()))
		task := echo.Using(tasks.WithBackend(bundle.name), tasks.WithMaxAttempts(1))
		_, err := task.Using(tasks.WithMetadata(map[string]string{"nil-at-enqueue": "yes"})).Enqueue(t.Context(), "x")
		var bad *tasks.BadErrorValue
		if !errors.As(err, &bad) {
			t.Errorf("Enqueue through middleware returning a typed nil: err = %#v, want a *BadErrorValue", err)
		}
		res, err := task.Enqueue(t.Context(), "y")
		if err != nil {
			t.Fatal(err)
		}
		bundle.runReady(t)
		if err := res.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !errors.As(outerSaw, &bad) || res.Status != tasks.StatusFailed || len(res.Errors) != 1 || res.Errors[0].Type != "*tasks.BadErrorValue" {
			t.Errorf("outer middleware saw %#v; result %s %+v; want a *BadErrorValue recorded as a failure", outerSaw, res.Status, res.Errors)
		}
	})

	t.Run("GoexitInMiddleware", func(t *testing.T) {
		t.Parallel()
		mw := tasks.ExecuteMiddlewareFunc(func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
			runtime.Goexit()
			return nil
		})
		bundle := setup(t, tasks.WithMiddleware(mw))
		res, err := echo.Using(tasks.WithBackend(bundle.name), tasks.WithMaxAttempts(1)).Enqueue(t.Context(), "x")
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { // Goexit ends this goroutine instead of returning
			defer close(done)
			_, _ = bundle.b.(*dummy.Backend).RunReady(t.Context())
		}()
		<-done
		if err := res.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if res.Status != tasks.StatusFailed || len(res.Errors) != 1 || !strings.Contains(res.Errors[0].Message, "Goexit") {
			t.Errorf("after Goexit in middleware: %s %+v, want FAILED with the Goexit recorded", res.Status, res.Errors)
		}
	})

	t.Run("DeferredToCommit", func(t *testing.T) {
		t.Parallel()
		mw := tasks.EnqueueMiddlewareFunc(func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
			for _, r := range reqs {
				r.SetMetadata("set", "at enqueue")
			}
			return next(ctx, reqs)
		})
		bundle := setup(t, tasks.WithMiddleware(mw))
		h := tasks.NewTxHooks(nil)
		ctx := tasks.ContextWithTx(t.Context(), h)
		res, err := echo.Using(tasks.WithBackend(bundle.name), tasks.WithEnqueueOnCommit(true)).Enqueue(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		if raws := bundle.b.(*dummy.Backend).Results(); len(raws) != 0 {
			t.Fatalf("%d results stored before the commit, want none", len(raws))
		}
		if err := h.Commit(t.Context()); err != nil {
			t.Fatal(err)
		}
		raw, err := bundle.b.GetResult(t.Context(), res.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"set": "at enqueue"}
		if d := cmp.Diff(want, raw.Metadata); d != "" {
			t.Errorf("metadata stored at the commit (-want +got):\n%s", d)
		}
		if d := cmp.Diff(want, res.Metadata); d != "" {
			t.Errorf("metadata of the deferred handle (-want +got):\n%s", d)
		}
	})

	t.Run("TimeoutAndDeadline", func(t *testing.T) {
		t.Parallel()
		var deadline bool
		var timeoutErr *tasks.TimeoutError
		var outcome tasks.Outcome
		mw := tasks.ExecuteMiddlewareFunc(func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
			_, deadline = ctx.Deadline()
			err := next(ctx)
			errors.As(err, &timeoutErr)
			outcome = x.Outcome(err)
			return err
		})
		bundle := setup(t, tasks.WithMiddleware(mw))
		d := bundle.b.(interface {
			RunReady(context.Context) (int, error)
		})
		res, err := slow.Using(tasks.WithBackend(bundle.name)).Enqueue(t.Context(), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := d.RunReady(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := res.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if !deadline || timeoutErr == nil || outcome != tasks.OutcomeFailure || res.Status != tasks.StatusFailed {
			t.Errorf("middleware saw deadline %v, error %v, outcome %q; status %s; want a deadline, a *TimeoutError, failure, FAILED",
				deadline, timeoutErr, outcome, res.Status)
		}
	})

	t.Run("Wait", func(t *testing.T) {
		t.Parallel()
		var wait time.Duration
		var x0 tasks.Execution
		mw := tasks.ExecuteMiddlewareFunc(func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
			wait, x0 = x.Wait(), *x
			return next(ctx)
		})
		bundle := setup(t, tasks.WithMiddleware(mw))
		res, err := echo.Using(tasks.WithBackend(bundle.name), tasks.WithPriority(7)).Enqueue(t.Context(), "w")
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond) // the task waits at least this long before it starts
		if _, err := bundle.b.(interface {
			RunReady(context.Context) (int, error)
		}).RunReady(t.Context()); err != nil {
			t.Fatal(err)
		}
		if wait < 5*time.Millisecond || wait > time.Minute {
			t.Errorf("Execution.Wait() = %v, want at least 5ms", wait)
		}
		if x0.ResultID != res.ID || x0.Priority != 7 || string(x0.Args) != `"w"` || !x0.RunAfter.Equal(res.RunAfter) {
			t.Errorf("Execution = id %s priority %d args %s run-after %v; want %s 7 \"w\" %v",
				x0.ResultID, x0.Priority, x0.Args, x0.RunAfter, res.ID, res.RunAfter)
		}
	})
}

func TestWithMetadataLeavesTheOriginal(t *testing.T) {
	t.Parallel()
	_, name := newDummy(t)
	task := tasks.Define(uniqueName(t), func(ctx context.Context, s string) (string, error) { return s, nil },
		tasks.WithBackend(name), tasks.WithMetadata(map[string]string{"a": "1"}))
	_ = task.Using(tasks.WithMetadata(map[string]string{"a": "2", "b": "3"}))
	res, err := task.Enqueue(t.Context(), "x")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"a": "1"}, res.Metadata); d != "" {
		t.Errorf("metadata of the original after Using (-want +got):\n%s", d)
	}
}
