package database_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// The application's dependencies reach the tasks through the worker's
// TaskContext hook (issue 13), without package globals.

// depsApp stands for an application's dependencies (*App, *bun.DB,
// clients, …).
type depsApp struct{ greeting string }

type depsKey struct{}

// depsFrom is the typed accessor an application writes next to its key.
func depsFrom(ctx context.Context) (*depsApp, bool) {
	a, ok := ctx.Value(depsKey{}).(*depsApp)
	return a, ok
}

// workerDeps returns the greeting of the application in its context, or
// fails when there is none.
var workerDeps = tasks.Define("database_test.worker_deps", func(ctx context.Context, name string) (string, error) {
	a, ok := depsFrom(ctx)
	if !ok {
		return "", tasks.ErrInvalidTask // anything: no app in the context
	}
	return a.greeting + ", " + name, nil
}, tasks.WithMaxAttempts(1))

func TestWorkerTaskContext(t *testing.T) {
	t.Parallel()

	wkBehaviour(t, "TaskSeesTheHooksValues", func(t *testing.T, bundle *testBundle) {
		app := &depsApp{greeting: "hello"}
		calls := 0
		cfg := database.WorkerConfig{ExitWhenEmpty: true, TaskContext: func(ctx context.Context) context.Context {
			calls++
			return context.WithValue(ctx, depsKey{}, app)
		}}
		var rs []*tasks.Result[string]
		for _, n := range []string{"ann", "bob", "cy"} {
			rs = append(rs, wkEnqueue(t, wkOn(workerDeps, bundle.b), n))
		}
		if _, err := wkRun(t, bundle.b, cfg); err != nil {
			t.Fatalf("run: %v", err)
		}
		var got []string
		for _, r := range rs {
			wkRefresh(t, r)
			v, err := r.Value()
			if err != nil {
				t.Fatalf("%s: %v (status %s, errors %v)", r.ID, err, r.Status, r.Errors)
			}
			got = append(got, v)
		}
		if diff := cmp.Diff([]string{"hello, ann", "hello, bob", "hello, cy"}, got); diff != "" {
			t.Errorf("values (-want +got):\n%s", diff)
		}
		if calls != 1 {
			t.Errorf("TaskContext called %d times; want once per worker", calls)
		}
	})

	wkBehaviour(t, "CancelOfTheHooksContextIsIgnored", func(t *testing.T, bundle *testBundle) {
		cfg := database.WorkerConfig{ExitWhenEmpty: true, TaskContext: func(ctx context.Context) context.Context {
			ctx, cancel := context.WithCancel(context.WithValue(ctx, depsKey{}, &depsApp{greeting: "hi"}))
			cancel() // values only: the tasks still run
			return ctx
		}}
		r := wkEnqueue(t, wkOn(workerDeps, bundle.b), "dee")
		if _, err := wkRun(t, bundle.b, cfg); err != nil {
			t.Fatalf("run: %v", err)
		}
		wkRefresh(t, r)
		if v, err := r.Value(); err != nil || v != "hi, dee" {
			t.Errorf("value %q, %v (status %s); want \"hi, dee\"", v, err, r.Status)
		}
	})

	wkBehaviour(t, "WithoutAHookNoValue", func(t *testing.T, bundle *testBundle) {
		r := wkEnqueue(t, wkOn(workerDeps, bundle.b), "eve")
		if _, err := wkRun(t, bundle.b, database.WorkerConfig{ExitWhenEmpty: true}); err != nil {
			t.Fatalf("run: %v", err)
		}
		wkRefresh(t, r)
		if r.Status != tasks.StatusFailed {
			t.Errorf("status %s; want FAILED (no app in the context)", r.Status)
		}
	})

	wkBehaviour(t, "HardStopStillCancelsTasks", func(t *testing.T, bundle *testBundle) {
		key := wkName(t)
		cfg := database.WorkerConfig{TaskContext: func(ctx context.Context) context.Context {
			return context.WithValue(ctx, depsKey{}, &depsApp{})
		}}
		r := wkEnqueue(t, wkOn(workerGate, bundle.b), key)
		w := wkStart(t, bundle.b, cfg)
		depsWaitStatus(t, bundle.b, r.ID, tasks.StatusRunning)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.StopAndCancel(ctx); err == nil {
			t.Errorf("StopAndCancel: nil; want ErrHardStop")
		}
		if got := wkGet(t, bundle.b, r.ID); got.Status != tasks.StatusReady || got.Attempts != 0 {
			t.Errorf("after a hard stop: %s, %d attempts; want READY, 0 (handed back)", got.Status, got.Attempts)
		}
	})
}

// depsWaitStatus waits (at most 10 s) for the result id to have status s.
func depsWaitStatus(t *testing.T, b *database.Backend, id string, s tasks.Status) {
	t.Helper()
	dbtest.WaitUntil(t, 10*time.Second, "status "+string(s), func() bool { return wkGet(t, b, id).Status == s })
}
