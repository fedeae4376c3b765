package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/tasks"
)

// whoAmI reports what its task context says.
var whoAmI = tasks.Define("example.who_am_i", func(ctx context.Context, _ struct{}) (string, error) {
	tc, ok := tasks.FromContext(ctx)
	if !ok {
		return "not running as a task", nil
	}
	tc.Logger.Debug("asked who I am") // carries task, task_id, attempt, … (tasks.Logger(ctx) is the same)
	return fmt.Sprintf("%s, attempt %d of %d, on backend %s", tc.TaskName, tc.Attempt, tc.MaxAttempts, tc.BackendName), nil
})

// The task context of a running task, on any backend.
func ExampleFromContext() {
	b := immediate.New(immediate.WithConfig(tasks.WithName("example-ctx"), tasks.WithLogger(slog.New(slog.DiscardHandler))))
	defer tasks.RegisterBackend(b)()

	res, err := whoAmI.Using(tasks.WithBackend("example-ctx")).Enqueue(context.Background(), struct{}{})
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := res.Value()
	fmt.Println(v)
	called, _ := whoAmI.Call(context.Background(), struct{}{}) // Call runs the function without a backend
	fmt.Println(called)
	// Output:
	// example.who_am_i, attempt 1 of 1, on backend example-ctx
	// not running as a task
}

// ErrCardDeclined is a failure that no retry can fix.
var ErrCardDeclined = errors.New("card declined")

// throttled counts the calls of chargeCard, which snoozes on its first.
var throttled = 0

var chargeCard = tasks.Define("example.charge_card", func(ctx context.Context, card string) (string, error) {
	throttled++
	switch {
	case throttled == 1:
		return "", tasks.Snooze(time.Minute) // rate limited: again in a minute, the attempt not counted
	case card == "4000-0000-0000-0002":
		return "", tasks.NoRetry(fmt.Errorf("charge %s: %w", card, ErrCardDeclined)) // FAILED now, no retry
	}
	return "charged", nil
}, tasks.WithMaxAttempts(5))

// A task that snoozes, then fails without retrying, on the dummy backend.
func ExampleSnooze() {
	ctx := context.Background()
	throttled = 0
	b := dummy.New(tasks.WithName("example-snooze"), tasks.WithLogger(slog.New(slog.DiscardHandler)))
	defer tasks.RegisterBackend(b)()

	res, _ := chargeCard.Using(tasks.WithBackend("example-snooze")).Enqueue(ctx, "4000-0000-0000-0002")
	_, _ = b.RunReady(ctx) // snoozes
	_ = res.Refresh(ctx)
	fmt.Println(res.Status, res.Attempts, len(res.Errors), res.RunAfter.Sub(*res.StartedAt).Round(time.Minute))

	_, _ = b.RunAll(ctx) // runs it again (RunAll ignores run-after): declined
	_ = res.Refresh(ctx)
	fmt.Println(res.Status, res.Attempts, res.LastError().Message)
	// Output:
	// READY 0 0 1m0s
	// FAILED 1 charge 4000-0000-0000-0002: card declined
}
