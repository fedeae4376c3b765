package workercmd_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// Command.Setup, the registration of the worker's backend, and the logs of
// the tasks (issue 13).

// setupApp stands for an application's dependencies.
type setupApp struct{ greeting string }

type setupKey struct{}

var (
	// setupRetry fails its first attempt and has no backoff of its own:
	// the backend's default decides when its retry runs.
	setupRetry = tasks.Define("workercmd_test.retry", func(ctx context.Context, _ string) (int, error) {
		tc, _ := tasks.FromContext(ctx)
		if tc.Attempt == 1 {
			return 0, errors.New("first attempt fails")
		}
		return tc.Attempt, nil
	}, tasks.WithMaxAttempts(2))

	// setupDeps returns the greeting of the application in its context.
	setupDeps = tasks.Define("workercmd_test.deps", func(ctx context.Context, name string) (string, error) {
		a, ok := ctx.Value(setupKey{}).(*setupApp)
		if !ok {
			return "", errors.New("no app in the task's context")
		}
		return a.greeting + ", " + name, nil
	}, tasks.WithMaxAttempts(1))
	// setupFollowUp enqueues a deferred follow-up that names no backend and
	// returns its id.
	setupFollowUp = tasks.Define("workercmd_test.followup", func(ctx context.Context, n int) (string, error) {
		r, err := exampletasks.Sum.Using(tasks.WithDelay(time.Hour)).Enqueue(ctx, []int{n})
		if err != nil {
			return "", err
		}
		return r.ID, nil
	}, tasks.WithMaxAttempts(1))
	// setupLog logs through the process's default slog logger.
	setupLog = tasks.Define("workercmd_test.log", func(ctx context.Context, s string) (string, error) {
		slog.Info("from the task", "arg", s, "took", 1500*time.Millisecond)
		return s, nil
	})
)

// TestSetup: the hook gets a usable backend, database and logger, and the
// tasks see the values of the context it returns.
func TestSetup(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		rs, err := setupDeps.Using(tasks.WithBackend(b.Name())).EnqueueMany(ctx, []string{"ann", "bob"})
		if err != nil {
			t.Fatal(err)
		}
		var env workercmd.Env
		calls := 0
		cmd := workercmd.Command{Name: "dbworker", Setup: func(ctx context.Context, e workercmd.Env) (context.Context, error) {
			calls++
			env = e
			if e.Backend == nil || e.DB == nil || e.Logger == nil {
				return nil, errors.New("incomplete env")
			}
			if err := e.DB.PingContext(ctx); err != nil {
				return nil, err
			}
			if err := e.Backend.Check(ctx); err != nil {
				return nil, err
			}
			return context.WithValue(ctx, setupKey{}, &setupApp{greeting: "hello"}), nil
		}}
		code, _, stderr := runCmd(t, cmd, nil, workerArgs(b, dsn, "--batch")...)
		if code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		if calls != 1 || env.Backend.Name() != b.Name() || env.DB != env.Backend.DB() {
			t.Errorf("Setup called %d times with backend %q; want once with %q and its DB", calls, env.Backend.Name(), b.Name())
		}
		var got []string
		for _, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			v, err := r.Value()
			if err != nil {
				t.Errorf("%s: %v", r.ID, err)
			}
			got = append(got, v)
		}
		if diff := cmp.Diff([]string{"hello, ann", "hello, bob"}, got); diff != "" {
			t.Errorf("values (-want +got):\n%s", diff)
		}
	})
}

// TestSetupError: a failing hook stops the command with exit 1 and one
// line, before anything is claimed.
func TestSetupError(t *testing.T) {
	t.Parallel()
	dsn := dbtest.SQLiteDSN(t)
	b := openBackend(t, dsn)
	r, err := setupDeps.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), "x")
	if err != nil {
		t.Fatal(err)
	}
	cmd := workercmd.Command{Name: "dbworker", Setup: func(context.Context, workercmd.Env) (context.Context, error) {
		return nil, errors.New("no API key")
	}}
	code, _, stderr := runCmd(t, cmd, nil, workerArgs(b, dsn, "--batch", "--log-level", "warn")...)
	if code != workercmd.ExitError {
		t.Errorf("exit %d; want %d", code, workercmd.ExitError)
	}
	oneLine(t, stderr, "dbworker: setup: no API key")
	if err := r.Refresh(context.Background()); err != nil || r.Status != tasks.StatusReady {
		t.Errorf("task %s, %v; want READY (nothing claimed)", r.Status, err)
	}
}

// TestRegistersItsBackend: while it runs, the worker's backend is
// registered under its name and as "default" (when nothing else is), so
// that code of the binary outside the tasks enqueues a READY row to it;
// afterwards the registry is as before. (Not parallel, not even its
// dialects with each other: it reads and changes the process's "default".)
func TestRegistersItsBackend(t *testing.T) {
	dbtest.ForEachDialectSerial(t, registersItsBackend)
	t.Run("KeepsAnotherDefault", func(t *testing.T) {
		dsn := dbtest.SQLiteDSN(t)
		b := openBackend(t, dsn)
		other := immediate.New(immediate.WithConfig(tasks.WithName(tasks.DefaultBackendName)))
		defer tasks.RegisterBackend(other)()
		var def tasks.Backend
		cmd := workercmd.Command{Name: "dbworker", Setup: func(ctx context.Context, env workercmd.Env) (context.Context, error) {
			def, _ = tasks.LookupBackend(tasks.DefaultBackendName)
			return ctx, nil
		}}
		if code, _, stderr := runCmd(t, cmd, nil, workerArgs(b, dsn, "--batch")...); code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		if def != tasks.Backend(other) {
			t.Errorf(`"default" during the run: %v; want the one registered before`, def)
		}
	})
}

// registersItsBackend is TestRegistersItsBackend on the database dsn.
func registersItsBackend(t *testing.T, dsn string) {
	b := openBackend(t, dsn) // registered under its name
	if _, ok := tasks.LookupBackend(tasks.DefaultBackendName); ok {
		t.Fatal(`something is registered under "default" before the test`)
	}
	type seen struct {
		Own, Default bool
		Status       tasks.Status
	}
	var got seen
	cmd := workercmd.Command{Name: "dbworker", Setup: func(ctx context.Context, env workercmd.Env) (context.Context, error) {
		own, _ := tasks.LookupBackend(b.Name())
		def, _ := tasks.LookupBackend(tasks.DefaultBackendName)
		got.Own, got.Default = own == env.Backend, def == env.Backend
		// Code outside the tasks enqueues to "default": the worker's backend.
		r, err := exampletasks.Sum.Enqueue(ctx, []int{1, 2})
		if err != nil {
			return nil, err
		}
		got.Status = r.Status
		return ctx, nil
	}}
	code, _, stderr := runCmd(t, cmd, nil, workerArgs(b, dsn, "--batch")...)
	if code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if diff := cmp.Diff(seen{Own: true, Default: true, Status: tasks.StatusReady}, got); diff != "" {
		t.Errorf("during Setup (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[tasks.Status]int{tasks.StatusSuccessful: 1}, statuses(t, b)); diff != "" {
		t.Errorf("rows after the run (-want +got):\n%s", diff)
	}
	if own, _ := tasks.LookupBackend(b.Name()); own != tasks.Backend(b) {
		t.Errorf("after the run, %q is %v; want the test's backend again", b.Name(), own)
	}
	if def, ok := tasks.LookupBackend(tasks.DefaultBackendName); ok {
		t.Errorf(`after the run, "default" is still registered (%s)`, def.Name())
	}
}

// TestFollowUpIsARow: a task run by the worker that enqueues a follow-up
// (deferred, naming no backend) creates a READY row on the worker's
// backend: it is not run inline.
func TestFollowUpIsARow(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		r, err := setupFollowUp.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := run(t, nil, workerArgs(b, dsn, "--batch")...); code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		if err := r.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		id, err := r.Value()
		if err != nil {
			t.Fatalf("parent: %v (status %s, errors %v)", err, r.Status, r.Errors)
		}
		got, err := b.GetResult(ctx, id)
		if err != nil {
			t.Fatalf("the follow-up %s is not a row of the worker's backend: %v", id, err)
		}
		if got.Status != tasks.StatusReady || got.Backend != b.Name() {
			t.Errorf("follow-up: %s on %q; want READY on %q", got.Status, got.Backend, b.Name())
		}
	})
}

// TestTaskLogsFollowLogFormat: under --log-format json, a task's own
// slog.Info is a JSON line, with durations as text; the process's default
// logger is restored afterwards. (Not parallel, not even its dialects with
// each other: it changes the default slog logger.)
func TestTaskLogsFollowLogFormat(t *testing.T) {
	before := slog.Default()
	dbtest.ForEachDialectSerial(t, func(t *testing.T, dsn string) {
		b := openBackend(t, dsn)
		if _, err := setupLog.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), "x"); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := run(t, nil, workerArgs(b, dsn, "--batch", "--log-format", "json", "--grace-period", "90s")...)
		if code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		type entry struct {
			Level, Msg, Arg, Took string
		}
		var fromTask []entry
		for _, l := range lines(stderr) {
			var e struct {
				Level string `json:"level"`
				Msg   string `json:"msg"`
				Arg   string `json:"arg"`
				Took  any    `json:"took"`
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Errorf("not a JSON line: %q", l)
				continue
			}
			if e.Msg == "from the task" {
				took, _ := e.Took.(string)
				fromTask = append(fromTask, entry{e.Level, e.Msg, e.Arg, took})
			}
		}
		if diff := cmp.Diff([]entry{{"INFO", "from the task", "x", "1.5s"}}, fromTask); diff != "" {
			t.Errorf("the task's log line (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
	})
	if slog.Default() != before {
		t.Error("the default slog logger was not restored")
	}
}

// TestDurationsReadable: the worker's own duration attributes print like
// "1.5s" in JSON too.
func TestDurationsReadable(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, nil, "--database", dbtest.SQLiteDSN(t), "--batch", "--log-format", "json",
		"--startup-jitter", "1ns", "--log-level", "info")
	if code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, `"delay":"0s"`) {
		t.Errorf("the jitter's delay is not a text duration:\n%s", stderr)
	}
	if strings.Contains(stderr, `"delay":0`) {
		t.Errorf("a duration printed as nanoseconds:\n%s", stderr)
	}
}

// TestBackendOptions: Command.BackendOptions configure the worker's
// backend; here a default backoff of 0 makes a task without a backoff of
// its own retry at once, within one --batch run (the default backoff
// would wait about 6 s).
func TestBackendOptions(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		r, err := setupRetry.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		cmd := workercmd.Command{Name: "dbworker", BackendOptions: []database.Option{
			database.WithBackendOptions(tasks.WithDefaultBackoff(tasks.ConstantBackoff(0))),
		}}
		code, _, stderr := runCmd(t, cmd, nil, workerArgs(b, dsn, "--batch")...)
		if code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		if err := r.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := r.Value(); err != nil || v != 2 {
			t.Errorf("after one --batch run: status %s, value %d, %v; want SUCCESSFUL on attempt 2", r.Status, v, err)
		}
	})
}
