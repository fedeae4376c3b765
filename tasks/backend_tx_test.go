package tasks_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/tasks"
)

func TestTxHooksCommit(t *testing.T) {
	type key struct{}
	owner := new(int)
	h := tasks.NewTxHooks(owner)
	if h.Owner() != owner {
		t.Errorf("Owner() = %v, want %v", h.Owner(), owner)
	}
	parent, cancel := context.WithCancel(context.WithValue(t.Context(), key{}, "kept"))
	txCtx := tasks.ContextWithTx(parent, h)
	if tasks.TxFromContext(txCtx) != h {
		t.Fatal("TxFromContext does not return the hooks")
	}
	var order []string
	errA, errC := errors.New("a failed"), errors.New("c failed")
	h.OnCommit(func(ctx context.Context) error {
		order = append(order, "a")
		if tasks.TxFromContext(ctx) != nil {
			t.Error("the commit hook's context still carries the transaction")
		}
		if ctx.Value(key{}) != "kept" {
			t.Error("the commit hook's context lost the caller's values")
		}
		if ctx.Err() != nil {
			t.Errorf("the commit hook's context is done: %v", ctx.Err())
		}
		return errA
	})
	h.OnCommit(func(context.Context) error { order = append(order, "b"); return nil })
	h.OnCommit(func(context.Context) error { order = append(order, "c"); return errC })
	cancel() // a cancelled request must not lose the enqueues of a committed transaction
	err := h.Commit(txCtx)
	if d := cmp.Diff([]string{"a", "b", "c"}, order); d != "" {
		t.Errorf("commit hooks order (-want +got):\n%s", d)
	}
	if !errors.Is(err, errA) || !errors.Is(err, errC) {
		t.Errorf("Commit = %v, want both hook errors joined", err)
	}
	// The hooks ran once; a second Commit runs nothing.
	if err := h.Commit(t.Context()); err != nil || len(order) != 3 {
		t.Errorf("second Commit = %v, ran %v", err, order)
	}
	if err := h.OnCommit(func(context.Context) error { return nil }); !errors.Is(err, tasks.ErrTxDone) {
		t.Errorf("OnCommit after the transaction ended = %v, want ErrTxDone", err)
	}
}

func TestTxHooksRollback(t *testing.T) {
	h := tasks.NewTxHooks(nil)
	ran := false
	h.OnCommit(func(context.Context) error { ran = true; return nil })
	h.Rollback()
	if err := h.Commit(t.Context()); err != nil || ran {
		t.Errorf("Commit after Rollback = %v, ran %v; want nil and nothing run", err, ran)
	}
	if err := h.OnCommit(func(context.Context) error { return nil }); !errors.Is(err, tasks.ErrTxDone) {
		t.Errorf("OnCommit after the transaction ended = %v, want ErrTxDone", err)
	}
}

func TestContextWithNilTx(t *testing.T) {
	h := tasks.NewTxHooks(nil)
	ctx := tasks.ContextWithTx(tasks.ContextWithTx(t.Context(), h), nil)
	if tasks.TxFromContext(ctx) != nil {
		t.Error("ContextWithTx(ctx, nil) still carries the outer transaction")
	}
	if tasks.TxFromContext(t.Context()) != nil {
		t.Error("a plain context carries a transaction")
	}
	b, name := newDummy(t)
	if _, err := addTask.Using(tasks.WithBackend(name)).Enqueue(ctx, addArgs{}); err != nil {
		t.Fatal(err)
	}
	if len(b.Results()) != 1 {
		t.Error("an enqueue outside any transaction was not stored at once")
	}
}

// TestJoiningBackend: a backend with CanTransact that joins the
// transaction gets the enqueue at once, with the transaction's context; one
// without CanTransact, or that does not join, is deferred to the commit.
func TestJoiningBackend(t *testing.T) {
	for _, c := range []struct {
		what     string
		caps     tasks.Capabilities
		owner    func(r *recording) any
		atOnce   bool
		onCommit *bool
	}{
		{"joins", tasks.CanTransact | tasks.CanGetResult, func(r *recording) any { return r }, true, nil},
		{"joins with on-commit off", tasks.CanTransact | tasks.CanGetResult, func(r *recording) any { return r }, true, ptr(false)},
		{"joins even with on-commit on", tasks.CanTransact | tasks.CanGetResult, func(r *recording) any { return r }, true, ptr(true)},
		{"no CanTransact", tasks.CanGetResult, func(r *recording) any { return r }, false, nil},
		{"another database", tasks.CanTransact | tasks.CanGetResult, func(*recording) any { return "other" }, false, nil},
	} {
		t.Run(c.what, func(t *testing.T) {
			name := uniqueName(t)
			rec := &recording{Backend: dummy.New(tasks.WithName(name))}
			t.Cleanup(tasks.RegisterBackend(joiner{recording: rec, caps: c.caps}))
			h := tasks.NewTxHooks(c.owner(rec))
			task := addTask.Using(tasks.WithBackend(name))
			if c.onCommit != nil {
				task = task.Using(tasks.WithEnqueueOnCommit(*c.onCommit))
			}
			if _, err := task.Enqueue(tasks.ContextWithTx(t.Context(), h), addArgs{}); err != nil {
				t.Fatal(err)
			}
			if got := rec.enqueues == 1; got != c.atOnce {
				t.Fatalf("enqueued before commit: %v, want %v", got, c.atOnce)
			}
			if c.atOnce && tasks.TxFromContext(rec.ctxs[0]) != h {
				t.Error("the joining backend did not get the transaction's context")
			}
			if err := h.Commit(t.Context()); err != nil {
				t.Fatal(err)
			}
			if rec.enqueues != 1 {
				t.Errorf("%d enqueues after commit, want 1", rec.enqueues)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
