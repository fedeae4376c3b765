package immediate_test

import (
	"context"
	"errors"
	"testing"

	"github.com/gotasks/gotasks/backends/backendtest"
	"github.com/gotasks/gotasks/backends/immediate"
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
	want := tasks.CanGetResult | tasks.CanPriority | tasks.CanTimeout
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
