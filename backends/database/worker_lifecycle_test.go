package database_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// TestWorkerLifecycle: how a worker stops (worker.go): gracefully, hard
// (tasks handed back), by itself, and what it reports.
func TestWorkerLifecycle(t *testing.T) {
	t.Parallel()

	// GracefulStop: Stop stops claiming, lets running tasks finish and records
	// their outcomes; unclaimed tasks stay READY.
	wkBehaviour(t, "GracefulStop", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		key := b.Name()
		var running []*tasks.Result[string]
		for i := range 2 {
			running = append(running, wkEnqueue(t, wkOn(workerGate, b), fmt.Sprint(key, i)))
		}
		var waiting []*tasks.Result[string]
		for i := range 2 {
			waiting = append(waiting, wkEnqueue(t, wkOn(workerEcho, b, tasks.WithPriority(-1)), fmt.Sprint(i)))
		}
		w := wkStart(t, b, database.WorkerConfig{Concurrency: 2, PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "2 running tasks", func() bool {
			return wkCount(t, b, "status = 'RUNNING'") == 2
		})
		// Let the tasks finish a little after Stop began waiting for them.
		release := time.AfterFunc(200*time.Millisecond, func() {
			for i := range 2 {
				close(wkGate(fmt.Sprint(key, i)))
			}
		})
		defer release.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		for _, r := range running {
			wkRefresh(t, r)
			if r.Status != tasks.StatusSuccessful {
				t.Errorf("running task after Stop: %s; want SUCCESSFUL", r.Status)
			}
		}
		for _, r := range waiting {
			wkRefresh(t, r)
			if r.Status != tasks.StatusReady || r.Attempts != 0 {
				t.Errorf("unclaimed task after Stop: %s, attempts %d; want READY, 0", r.Status, r.Attempts)
			}
		}
		if w.Processed() != 2 {
			t.Errorf("processed %d; want 2", w.Processed())
		}
		select {
		case <-w.Done():
		default:
			t.Error("Done not closed after Stop")
		}
	})

	// StopLeavesNothingRunning: however often a busy worker is stopped, no task
	// it claimed is left RUNNING (a claim in flight at Stop must not be lost).
	wkBehaviour(t, "StopLeavesNothingRunning", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		args := make([]int, 400)
		if _, err := wkOn(workerSleep, b).EnqueueMany(context.Background(), args); err != nil {
			t.Fatal(err)
		}
		started := atomic.Int64{}
		t.Cleanup(signals.TaskStarted.Connect(func(ctx context.Context, from string, r *tasks.RawResult) {
			if from == b.Name() {
				started.Add(1)
			}
		}))
		for i := range 10 {
			w := wkStart(t, b, database.WorkerConfig{Concurrency: 1 + i%3, PollInterval: time.Millisecond})
			target := started.Load() + int64(3+i%5)
			dbtest.WaitUntil(t, 5*time.Second, "tasks to start", func() bool { return started.Load() >= target })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := w.Stop(ctx)
			cancel()
			if err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if n := wkCount(t, b, "status = 'RUNNING'"); n != 0 {
				t.Fatalf("round %d: %d tasks left RUNNING after Stop", i, n)
			}
		}
	})

	// HardStop: StopAndCancel (or Stop/Run past their grace period) cancels
	// running tasks and hands them back READY without using up an attempt; a
	// later worker runs them.
	t.Run("HardStop", func(t *testing.T) {
		t.Parallel()
		modes := []struct {
			name string
			stop func(t *testing.T, b *database.Backend, wkWait func()) error
		}{
			{"StopAndCancel", func(t *testing.T, b *database.Backend, wkWait func()) error {
				w := wkStart(t, b, database.WorkerConfig{Concurrency: 3, PollInterval: 10 * time.Millisecond})
				wkWait()
				return w.StopAndCancel(context.Background())
			}},
			{"StopDeadline", func(t *testing.T, b *database.Backend, wkWait func()) error {
				w := wkStart(t, b, database.WorkerConfig{Concurrency: 3, PollInterval: 10 * time.Millisecond})
				wkWait()
				ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				return w.Stop(ctx)
			}},
			{"RunGracePeriod", func(t *testing.T, b *database.Backend, wkWait func()) error {
				w := wkNewWorker(t, b, database.WorkerConfig{Concurrency: 3, PollInterval: 10 * time.Millisecond,
					GracePeriod: 100 * time.Millisecond})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				errc := make(chan error, 1)
				go func() { errc <- w.Run(ctx) }()
				wkWait()
				cancel()
				return <-errc
			}},
		}
		for _, m := range modes {
			wkBehaviour(t, m.name, func(t *testing.T, bundle *testBundle) {
				b := bundle.b
				key := b.Name()
				var rs []*tasks.Result[string]
				for range 3 {
					rs = append(rs, wkEnqueue(t, wkOn(workerGate, b), key))
				}
				err := m.stop(t, b, func() {
					dbtest.WaitUntil(t, 5*time.Second, "3 running tasks", func() bool {
						return wkCount(t, b, "status = 'RUNNING'") == 3
					})
				})
				if !errors.Is(err, database.ErrHardStop) {
					t.Errorf("stop = %v; want ErrHardStop", err)
				}
				for _, r := range rs {
					wkRefresh(t, r)
					if r.Status != tasks.StatusReady || r.Attempts != 0 || len(r.Errors) != 0 || r.FinishedAt != nil {
						t.Errorf("handed-back task: status %s, attempts %d, errors %v, finished %v; want READY, 0, none, nil",
							r.Status, r.Attempts, r.Errors, r.FinishedAt)
					}
				}
				close(wkGate(key))
				if _, err := wkRun(t, b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 10 * time.Millisecond}); err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					wkRefresh(t, r)
					if r.Status != tasks.StatusSuccessful || r.Attempts != 1 {
						t.Errorf("later run: status %s, attempts %d; want SUCCESSFUL, 1", r.Status, r.Attempts)
					}
				}
			})
		}
	})

	// StopNothingRunning: a hard stop of an idle worker hands nothing back and
	// is not an error.
	wkBehaviour(t, "StopNothingRunning", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		w := wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		if err := w.StopAndCancel(context.Background()); err != nil {
			t.Errorf("StopAndCancel of an idle worker = %v; want nil", err)
		}
		if err := w.Stop(context.Background()); err != nil {
			t.Errorf("Stop after StopAndCancel = %v; want nil", err)
		}
	})

	// StopsByItself: MaxTasks, ExitWhenEmpty and Duration.
	t.Run("StopsByItself", func(t *testing.T) {
		t.Parallel()
		wkBehaviour(t, "MaxTasks", func(t *testing.T, bundle *testBundle) {
			b := bundle.b
			for i := range 10 {
				wkEnqueue(t, wkOn(workerEcho, b), fmt.Sprint(i))
			}
			w, err := wkRun(t, b, database.WorkerConfig{MaxTasks: 4, Concurrency: 3, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if w.Processed() != 4 {
				t.Errorf("processed %d; want 4", w.Processed())
			}
			want := map[tasks.Status]int{tasks.StatusSuccessful: 4, tasks.StatusReady: 6}
			if diff := cmp.Diff(want, wkStatusCounts(t, b)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
		wkBehaviour(t, "ExitWhenEmpty", func(t *testing.T, bundle *testBundle) {
			b := bundle.b
			for i := range 5 {
				wkEnqueue(t, wkOn(workerEcho, b), fmt.Sprint(i))
			}
			deferred := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithDelay(time.Hour)), "later")
			// Retried at once (backoff 0): due again, so the worker is not
			// empty until the retry ran.
			var flaky []*tasks.Result[string]
			for i := range 3 {
				flaky = append(flaky, wkEnqueue(t, wkOn(workerFlaky, b), fmt.Sprint(b.Name(), i)))
			}
			w, err := wkRun(t, b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			want := map[tasks.Status]int{tasks.StatusSuccessful: 8, tasks.StatusReady: 1}
			if diff := cmp.Diff(want, wkStatusCounts(t, b)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if w.Processed() != 11 {
				t.Errorf("processed %d; want 11 (5 + 3 × 2 attempts)", w.Processed())
			}
			wkRefresh(t, deferred)
			if deferred.Status != tasks.StatusReady {
				t.Errorf("deferred task: %s; want READY", deferred.Status)
			}
			for _, r := range flaky {
				wkRefresh(t, r)
				if r.Attempts != 2 {
					t.Errorf("flaky task: attempts %d; want 2", r.Attempts)
				}
			}
		})
		wkBehaviour(t, "Duration", func(t *testing.T, bundle *testBundle) {
			b := bundle.b
			start := time.Now()
			w, err := wkRun(t, b, database.WorkerConfig{Duration: 300 * time.Millisecond, PollInterval: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
				t.Errorf("worker ran %v; want about 300ms", d)
			}
			select {
			case <-w.StoppedByItself():
			default:
				t.Error("StoppedByItself not closed")
			}
		})
	})

	// StopReportsLostOutcomes: a stop that gives up recording outcomes because
	// the database is away says so (ErrOutcomesLost), so that dbworker exits
	// non-zero (fault 5).
	wkBehaviour(t, "StopReportsLostOutcomes", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		key := wkName(t)
		r := wkEnqueue(t, wkOn(workerGate, b), key)
		w := wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		// Started, not only claimed: on SQLite the row is RUNNING a moment
		// before the worker has read it.
		select {
		case <-wkGateStarted(key):
		case <-time.After(5 * time.Second):
			wkRefresh(t, r)
			t.Fatalf("the task did not start (status %s)", r.Status)
		}
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
