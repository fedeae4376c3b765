package database_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
)

// TestWorkerReady: Worker.Ready, the worker's part of a readiness probe.
func TestWorkerReady(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.DiscardHandler) // the claim failures below are WARNs

	// notReady checks that err wraps ErrNotReady and why (and no other
	// reason), and says want.
	notReady := func(t *testing.T, err error, why error, want string) {
		t.Helper()
		if !errors.Is(err, database.ErrNotReady) || !strings.Contains(err.Error(), want) {
			t.Errorf("Ready() = %v; want an error wrapping ErrNotReady that says %q", err, want)
		}
		for _, reason := range []error{database.ErrWorkerNotStarted, database.ErrWorkerStopping, database.ErrClaimFailed} {
			if got := errors.Is(err, reason); got != (reason == why) {
				t.Errorf("errors.Is(Ready(), %q) = %v; want %v", reason, got, reason == why)
			}
		}
	}

	wkBehaviour(t, "NotStartedRunningStopped", func(t *testing.T, bundle *testBundle) {
		w := wkNewWorker(t, bundle.b, database.WorkerConfig{Logger: quiet, PollInterval: 20 * time.Millisecond})
		notReady(t, w.Ready(), database.ErrWorkerNotStarted, "not started")
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := w.Ready(); err != nil {
			t.Errorf("Ready() after Start = %v; want nil", err)
		}
		r := wkEnqueue(t, wkOn(workerEcho, bundle.b), "x")
		wkWait(t, r)
		if err := w.Ready(); err != nil {
			t.Errorf("Ready() after a task ran = %v; want nil", err)
		}
		if err := w.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		notReady(t, w.Ready(), database.ErrWorkerStopping, "stopped")
	})

	wkBehaviour(t, "StartFailed", func(t *testing.T, bundle *testBundle) {
		w := wkNewWorker(t, bundle.b, database.WorkerConfig{Logger: quiet})
		wkExec(t, bundle.b, `ALTER TABLE gotasks_task RENAME TO gotasks_task_away`)
		if err := w.Start(context.Background()); err == nil {
			t.Fatal("Start without the task table: nil error")
		}
		notReady(t, w.Ready(), database.ErrWorkerNotStarted, "not started")
	})

	// The fault seam of the worker's other database-outage tests
	// (TestWorkerTransientErrorsLogWarn): the task table renamed away makes
	// every claim fail until it is renamed back.
	wkBehaviour(t, "ClaimsFailThenRecover", func(t *testing.T, bundle *testBundle) {
		w := wkStart(t, bundle.b, database.WorkerConfig{Logger: quiet, PollInterval: 20 * time.Millisecond})
		if err := w.Ready(); err != nil {
			t.Errorf("Ready() after Start = %v; want nil", err)
		}
		wkExec(t, bundle.b, `ALTER TABLE gotasks_task RENAME TO gotasks_task_away`)
		var err error
		dbtest.WaitUntil(t, 10*time.Second, "Ready to fail", func() bool { err = w.Ready(); return err != nil })
		notReady(t, err, database.ErrClaimFailed, "claiming tasks failed")
		// The claim's error is wrapped: the table is missing.
		if !errors.Is(err, database.ErrSchemaMissing) || !strings.Contains(err.Error(), "gotasks_task") {
			t.Errorf("Ready() = %v; want it to wrap the claim's error (ErrSchemaMissing, about gotasks_task)", err)
		}
		wkExec(t, bundle.b, `ALTER TABLE gotasks_task_away RENAME TO gotasks_task`)
		// The claim loop backs off up to 5 s between failed claims.
		dbtest.WaitUntil(t, 15*time.Second, "Ready to recover", func() bool { err = w.Ready(); return err == nil })
		wkWait(t, wkEnqueue(t, wkOn(workerEcho, bundle.b), "after"))
		if err := w.Ready(); err != nil {
			t.Errorf("Ready() after recovery and a task = %v; want nil", err)
		}
	})

	// Not tested here: a round that needs no claim because every slot is
	// busy clearing the error of a failed claim. Slots fill only from
	// claims, so that follows a failed claim only when the claim was for
	// tasks expected to free slots meanwhile (claiming ahead, ahead.go),
	// which depends on measured claim latencies and freeing rates and
	// cannot be staged from outside the package. (After a successful claim
	// Ready is nil already, so a busy worker proves nothing about it.)

	wkBehaviour(t, "StoppingByItself", func(t *testing.T, bundle *testBundle) {
		w := wkStart(t, bundle.b, database.WorkerConfig{Logger: quiet, ExitWhenEmpty: true, PollInterval: 20 * time.Millisecond})
		select {
		case <-w.StoppedByItself():
		case <-time.After(10 * time.Second):
			t.Fatal("an ExitWhenEmpty worker did not stop by itself on an empty queue")
		}
		notReady(t, w.Ready(), database.ErrWorkerStopping, "stopping")
		if err := w.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		notReady(t, w.Ready(), database.ErrWorkerStopping, "stopped")
	})
}
