package tasks_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// The conformance suite (backends/backendtest) checks middleware order,
// outcomes and metadata on every backend; these tests cover the rest of
// the core's contract.

func TestMiddleware(t *testing.T) {
	t.Parallel()

	type testBundle struct {
		b    tasks.Backend
		name string
	}
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
