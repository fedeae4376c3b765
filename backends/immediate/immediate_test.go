package immediate_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/gotasks/gotasks/backends/backendtest"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
		return &backendtest.Harness{Backend: immediate.New(immediate.WithConfig(opts...))}
	})
}

type kArgs struct{ N int }

var double = tasks.Define("immediate_test.double", func(_ context.Context, a kArgs) (int, error) {
	if a.N < 0 {
		return 0, errors.New("negative")
	}
	return 2 * a.N, nil
})

func TestCapabilities(t *testing.T) {
	b := immediate.New()
	want := tasks.CanGetResult | tasks.CanPriority | tasks.CanTimeout | tasks.CanUnique
	if got := b.Capabilities(); got != want {
		t.Errorf("Capabilities() = %v, want %v", got, want)
	}
	if b.Name() != tasks.DefaultBackendName {
		t.Errorf("Name() = %q, want %q", b.Name(), tasks.DefaultBackendName)
	}
}

// TestWithKeep: only the most recent results are kept for GetResult.
func TestWithKeep(t *testing.T) {
	b := immediate.New(immediate.WithConfig(tasks.WithName("immediate-keep")), immediate.WithKeep(2))
	t.Cleanup(tasks.RegisterBackend(b))
	task := double.Using(tasks.WithBackend("immediate-keep"))
	ctx := t.Context()
	var ids []string
	for i := range 3 {
		res, err := task.Enqueue(ctx, kArgs{N: i})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	if _, err := b.GetResult(ctx, ids[0]); !errors.Is(err, tasks.ErrResultNotFound) {
		t.Errorf("GetResult of the evicted result: %v, want ErrResultNotFound", err)
	}
	for i, id := range ids[1:] {
		res, err := task.GetResult(ctx, id)
		if err != nil {
			t.Fatalf("GetResult(%s): %v", id, err)
		}
		if v, err := res.Value(); err != nil || v != 2*(i+1) {
			t.Errorf("Value() = %d, %v; want %d", v, err, 2*(i+1))
		}
	}
}

// TestFailureNotReturned: a task's error is recorded, never returned by
// Enqueue.
func TestFailureNotReturned(t *testing.T) {
	b := immediate.New(immediate.WithConfig(tasks.WithName("immediate-fail")))
	t.Cleanup(tasks.RegisterBackend(b))
	res, err := double.Using(tasks.WithBackend("immediate-fail")).Enqueue(t.Context(), kArgs{N: -1})
	if err != nil {
		t.Fatalf("Enqueue returned the task's error: %v", err)
	}
	if res.Status != tasks.StatusFailed || len(res.Errors) != 1 || res.Errors[0].Message != "negative" {
		t.Errorf("result: %s %+v, want FAILED with the message \"negative\"", res.Status, res.Errors)
	}
	if _, err := res.Value(); !errors.Is(err, tasks.ErrTaskFailed) {
		t.Errorf("Value(): %v, want ErrTaskFailed", err)
	}
}

// myErr has a pointer receiver: a nil *myErr is not a nil error.
type myErr struct{ msg string }

func (e *myErr) Error() string { return e.msg }

var misbehave = tasks.Define("immediate_test.misbehave", func(_ context.Context, mode string) (int, error) {
	switch mode {
	case "typed-nil":
		var e *myErr
		return 0, e
	case "panic":
		panic("immediate_test panic")
	case "goexit":
		runtime.Goexit()
	}
	return 1, nil
})

// TestMisbehavingTasks: a task that returns a typed nil error, panics or
// calls runtime.Goexit gets a FAILED result and its TaskFinished signal;
// Enqueue never returns the failure and never panics.
func TestMisbehavingTasks(t *testing.T) {
	const name = "immediate-misbehave"
	b := immediate.New(immediate.WithConfig(tasks.WithName(name)))
	t.Cleanup(tasks.RegisterBackend(b))
	task := misbehave.Using(tasks.WithBackend(name))

	var mu sync.Mutex
	finished := map[string]tasks.Status{} // id → status of its TaskFinished
	var started []string                  // ids, in order
	t.Cleanup(signals.TaskStarted.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if sender == name {
			mu.Lock()
			started = append(started, r.ID)
			mu.Unlock()
		}
	}))
	t.Cleanup(signals.TaskFinished.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if sender == name {
			mu.Lock()
			finished[r.ID] = r.Status
			mu.Unlock()
		}
	}))
	finishedAs := func(id string) tasks.Status {
		mu.Lock()
		defer mu.Unlock()
		return finished[id]
	}

	t.Run("typed nil error", func(t *testing.T) {
		res, err := task.Enqueue(t.Context(), "typed-nil")
		if err != nil {
			t.Fatalf("Enqueue returned the task's failure: %v", err)
		}
		if res.Status != tasks.StatusFailed || len(res.Errors) != 1 {
			t.Fatalf("result %s with errors %+v, want FAILED with one error", res.Status, res.Errors)
		}
		if te := res.Errors[0]; te.Type != "*tasks.BadErrorValue" || !strings.Contains(te.Message, "a nil *immediate_test.myErr is not a nil error") {
			t.Errorf("Errors[0] = %s: %q, want a *tasks.BadErrorValue naming *immediate_test.myErr", te.Type, te.Message)
		}
		if got := finishedAs(res.ID); got != tasks.StatusFailed {
			t.Errorf("TaskFinished with status %q, want FAILED", got)
		}
	})

	t.Run("panic", func(t *testing.T) {
		res, err := task.Enqueue(t.Context(), "panic")
		if err != nil {
			t.Fatalf("Enqueue returned the task's panic: %v", err)
		}
		if res.Status != tasks.StatusFailed || len(res.Errors) != 1 {
			t.Fatalf("result %s with errors %+v, want FAILED with one error", res.Status, res.Errors)
		}
		if te := res.Errors[0]; te.Type != "panic" || te.Message != "immediate_test panic" || !strings.Contains(te.Stack, "immediate_test") {
			t.Errorf("Errors[0] = %+v, want type panic, the panic value and a stack through the task", te)
		}
		if got := finishedAs(res.ID); got != tasks.StatusFailed {
			t.Errorf("TaskFinished with status %q, want FAILED", got)
		}
	})

	// The task's runtime.Goexit ends the goroutine that called Enqueue, as
	// it would without a backend; the result is recorded first.
	t.Run("runtime.Goexit", func(t *testing.T) {
		returned := false
		done := make(chan struct{})
		go func() {
			defer close(done) // also when the goroutine exits by runtime.Goexit
			_, _ = task.Enqueue(t.Context(), "goexit")
			returned = true
		}()
		<-done
		if returned {
			t.Error("Enqueue returned after the task called runtime.Goexit")
		}
		mu.Lock()
		id := started[len(started)-1]
		mu.Unlock()
		r, err := b.GetResult(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != tasks.StatusFailed || len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Message, "runtime.Goexit") {
			t.Errorf("result %s with errors %+v, want FAILED with an error naming runtime.Goexit", r.Status, r.Errors)
		}
		if got := finishedAs(id); got != tasks.StatusFailed {
			t.Errorf("TaskFinished with status %q, want FAILED", got)
		}
		// The backend goes on.
		if res, err := task.Enqueue(t.Context(), "ok"); err != nil || res.Status != tasks.StatusSuccessful {
			t.Errorf("the next task: %v, %v; want SUCCESSFUL", res, err)
		}
	})
}
