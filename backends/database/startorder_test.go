package database

import (
	"context"
	"testing"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// awaitDone runs order.await(ctx, r) in a goroutine and returns a channel
// closed when it returns.
func awaitDone(ctx context.Context, order *startOrder, r *row) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		order.await(ctx, r)
	}()
	return done
}

func wantBlocked(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
		t.Fatalf("%s: await returned; want it to wait", what)
	case <-time.After(50 * time.Millisecond):
	}
}

func wantReturned(t *testing.T, what string, done <-chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: await still waiting", what)
	}
}

func TestStartOrder(t *testing.T) {
	t.Parallel()
	fresh := &row{RawResult: tasks.RawResult{ID: "fresh"}}
	retry := &row{RawResult: tasks.RawResult{ID: "retry", Errors: []tasks.TaskError{{Attempt: 1, Type: "*errors.errorString"}}}}
	rescued := &row{RawResult: tasks.RawResult{ID: "rescued", Errors: []tasks.TaskError{{Attempt: 1, Type: WorkerLostType}}}}
	ctx := context.Background()

	t.Run("held ids", func(t *testing.T) {
		t.Parallel()
		var order startOrder
		release := order.hold([]string{"retry", "next"})
		wantReturned(t, "a row not held", awaitDone(ctx, &order, fresh))
		done := awaitDone(ctx, &order, retry)
		wantBlocked(t, "a held row", done)
		release()
		wantReturned(t, "a released row", done)
		wantReturned(t, "after release", awaitDone(ctx, &order, retry))
	})

	t.Run("rescue", func(t *testing.T) {
		t.Parallel()
		var order startOrder
		r1 := order.holdRescue()
		r2 := order.holdRescue() // two workers rescuing at once
		wantReturned(t, "a row without errors", awaitDone(ctx, &order, fresh))
		wantReturned(t, "a row whose last error is not a rescue's", awaitDone(ctx, &order, retry))
		done := awaitDone(ctx, &order, rescued)
		wantBlocked(t, "a rescued row during rescues", done)
		r1()
		wantBlocked(t, "one rescue still sending", done)
		r2()
		wantReturned(t, "rescues done", done)
		r3 := order.holdRescue() // a later rescue starts afresh
		done = awaitDone(ctx, &order, rescued)
		wantBlocked(t, "a later rescue", done)
		r3()
		wantReturned(t, "the later rescue done", done)
	})

	t.Run("context", func(t *testing.T) {
		t.Parallel()
		var order startOrder
		defer order.hold([]string{"rescued"})()
		defer order.holdRescue()()
		cctx, cancel := context.WithCancel(ctx)
		done := awaitDone(cctx, &order, rescued)
		wantBlocked(t, "before cancel", done)
		cancel()
		wantReturned(t, "a stopped worker", done)
	})
}
