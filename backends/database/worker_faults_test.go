package database_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// Regression tests for the faults a fault-injection run found (issue 12).
// Each runs on both dialects.

// wkNilErr is an error type whose Error method dereferences its receiver:
// returned as a typed nil, calling Error panics.
type wkNilErr struct{ msg string }

func (e *wkNilErr) Error() string { return e.msg }

var (
	// workerTypedNil returns a typed-nil error: a non-nil error interface
	// holding a nil *wkNilErr.
	workerTypedNil = tasks.Define("database_test.worker_typed_nil", func(ctx context.Context, s string) (int, error) {
		var e *wkNilErr
		return 0, e
	}, tasks.WithMaxAttempts(1))
	// workerGoexit calls runtime.Goexit, as testing.T.FailNow does.
	workerGoexit = tasks.Define("database_test.worker_goexit", func(ctx context.Context, s string) (int, error) {
		runtime.Goexit()
		return 0, nil
	}, tasks.WithMaxAttempts(1))
)

// wkStatusOf reads a task's status with SQL (GetResult cannot read a row
// whose timestamps are broken).
func wkStatusOf(t *testing.T, b *database.Backend, id string) (status string, attempts int, errs string) {
	t.Helper()
	err := b.DB().DB.QueryRowContext(context.Background(),
		`SELECT status, attempts, COALESCE(CAST(errors AS TEXT), '') FROM gotasks_task WHERE id = $1`, id).
		Scan(&status, &attempts, &errs)
	if err != nil {
		t.Fatal(err)
	}
	return status, attempts, errs
}

// TestWorkerMisbehavingTasks: a task that returns a typed-nil error or
// calls runtime.Goexit fails its attempt with a clear error; the worker and
// the tasks claimed with it go on (faults 1 and 4).
func TestWorkerMisbehavingTasks(t *testing.T) {
	t.Parallel()

	t.Run("TypedNilError", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := wkOpen(t, dsn)
			bad := wkEnqueue(t, wkOn(workerTypedNil, b), "x")
			good := wkEnqueue(t, wkOn(workerEcho, b), "innocent")
			if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 2, ExitWhenEmpty: true,
				PollInterval: 10 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			wkRefresh(t, bad)
			if bad.Status != tasks.StatusFailed || bad.Attempts != 1 || len(bad.Errors) != 1 {
				t.Fatalf("typed-nil task: status %s, attempts %d, errors %v; want FAILED after 1 attempt",
					bad.Status, bad.Attempts, bad.Errors)
			}
			if e := bad.Errors[0]; e.Type != "*tasks.BadErrorValue" || !strings.Contains(e.Message, "*database_test.wkNilErr") {
				t.Errorf("error %+v; want a *tasks.BadErrorValue naming *database_test.wkNilErr", e)
			}
			wkRefresh(t, good)
			if diff := cmp.Diff([]any{tasks.StatusSuccessful, 1}, []any{good.Status, good.Attempts}); diff != "" {
				t.Errorf("task claimed alongside (-want +got):\n%s", diff)
			}
		})
	})

	t.Run("Goexit", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := wkOpen(t, dsn)
			// Two Goexit tasks on a worker of concurrency 1: before the fix
			// the first one kept the only slot for good.
			exits := []*tasks.Result[int]{
				wkEnqueue(t, wkOn(workerGoexit, b, tasks.WithPriority(2)), "a"),
				wkEnqueue(t, wkOn(workerGoexit, b, tasks.WithPriority(1)), "b"),
			}
			after := wkEnqueue(t, wkOn(workerEcho, b), "after")
			if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 1, ExitWhenEmpty: true,
				PollInterval: 10 * time.Millisecond}); err != nil {
				t.Fatal(err)
			}
			for _, r := range exits {
				wkRefresh(t, r)
				if r.Status != tasks.StatusFailed || len(r.Errors) != 1 ||
					!strings.Contains(r.Errors[0].Message, "runtime.Goexit") {
					t.Errorf("Goexit task: status %s, errors %v; want FAILED saying it called runtime.Goexit",
						r.Status, r.Errors)
				}
			}
			wkRefresh(t, after)
			if after.Status != tasks.StatusSuccessful {
				t.Errorf("task after the Goexit ones: %s; want SUCCESSFUL", after.Status)
			}
		})
	})
}

// TestWorkerBadTimestampFailsAlone: a row whose timestamp the worker cannot
// read fails alone with a clear error; the good rows claimed in the same
// batch run (fault 2).
func TestWorkerBadTimestampFailsAlone(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		var good []*tasks.Result[string]
		for range 4 {
			good = append(good, wkEnqueue(t, wkOn(workerEcho, b), "good"))
		}
		var broken []string
		breakRow := func(set string) {
			r := wkEnqueue(t, wkOn(workerEcho, b), "broken")
			wkExec(t, b, `UPDATE gotasks_task SET `+set+` WHERE id = $1`, r.ID)
			broken = append(broken, r.ID)
		}
		if b.Dialect() == database.SQLite {
			breakRow(`run_after = ''`)
			breakRow(`run_after = 0`)
			breakRow(`run_after = '-garbage-'`) // sorts before any date: due
			breakRow(`enqueued_at = 'yesterday'`)
		} else {
			breakRow(`run_after = '-infinity'`)
		}
		if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 10, ExitWhenEmpty: true,
			PollInterval: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		for _, r := range good {
			wkRefresh(t, r)
			if r.Status != tasks.StatusSuccessful || r.Attempts != 1 {
				t.Errorf("good row %s: status %s, attempts %d; want SUCCESSFUL after 1 attempt", r.ID, r.Status, r.Attempts)
			}
		}
		for _, id := range broken {
			status, _, errs := wkStatusOf(t, b, id)
			if status != string(tasks.StatusFailed) || !strings.Contains(errs, "cannot be read") {
				t.Errorf("broken row %s: status %s, errors %s; want FAILED with an error saying it cannot be read",
					id, status, errs)
			}
		}
	})
}

// TestWorkerOneShotRescuesExpiredLocks: a one-shot worker (ExitWhenEmpty,
// dbworker --batch) runs a task whose lock expired instead of exiting
// before the rescue made it READY (fault 7).
func TestWorkerOneShotRescuesExpiredLocks(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		const trials = 5
		for i := range trials {
			r := wkEnqueue(t, wkOn(workerEcho, b), "expired")
			wkClaimAsGhost(t, b, r.ID, time.Now().Add(-time.Minute))
			cfg := wkRescueConfig
			cfg.ExitWhenEmpty = true
			if _, err := wkRun(t, b, cfg); err != nil {
				t.Fatal(err)
			}
			wkRefresh(t, r)
			if r.Status != tasks.StatusSuccessful || r.Attempts != 2 {
				t.Fatalf("trial %d: status %s, attempts %d; want SUCCESSFUL on attempt 2 (rescued, then run)",
					i, r.Status, r.Attempts)
			}
		}
	})
}

// TestWorkerStopReportsLostOutcomes: a stop that gives up recording
// outcomes because the database is away says so (ErrOutcomesLost), so
// that dbworker exits non-zero (fault 5).
func TestWorkerStopReportsLostOutcomes(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		key := wkName(t)
		r := wkEnqueue(t, wkOn(workerGate, b), key)
		w := wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "the task to start", func() bool {
			wkRefresh(t, r)
			return r.Status == tasks.StatusRunning
		})
		if err := b.DB().DB.Close(); err != nil { // the database goes away
			t.Fatal(err)
		}
		close(wkGate(key))
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		err := w.Stop(ctx)
		if !errors.Is(err, database.ErrOutcomesLost) {
			t.Fatalf("Stop = %v; want an error wrapping ErrOutcomesLost", err)
		}
		if errors.Is(err, database.ErrHardStop) {
			t.Errorf("Stop = %v; the task finished in time: not a hard stop", err)
		}
	})
}
