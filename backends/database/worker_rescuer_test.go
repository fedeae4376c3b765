package database_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// TestWorkerRescuer: tasks left RUNNING by workers that vanished go back
// to READY (or FAILED), and only those (rescuer.go, heartbeat.go).
func TestWorkerRescuer(t *testing.T) {
	t.Parallel()

	// RescuesVanishedWorker: a RUNNING task whose worker stopped heartbeating
	// goes back to READY with a WorkerLost error and runs again.
	wkBehaviour(t, "RescuesVanishedWorker", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		rec := bundle.signals(t)
		r := wkEnqueue(t, wkOn(workerEcho, b), "orphan")
		wkClaimAsGhost(t, b, r.ID, time.Now().Add(-time.Minute))
		w := wkStart(t, b, wkRescueConfig)
		wkWait(t, r)
		if r.Status != tasks.StatusSuccessful || r.Attempts != 2 || len(r.Errors) != 1 {
			t.Fatalf("status %s, attempts %d, errors %v; want SUCCESSFUL, 2, one error", r.Status, r.Attempts, r.Errors)
		}
		e := r.Errors[0]
		if e.Type != database.WorkerLostType || e.Attempt != 1 || !strings.Contains(e.Message, "ghost") {
			t.Errorf("error %+v; want %s of attempt 1 naming the ghost worker", e, database.WorkerLostType)
		}
		if diff := cmp.Diff([]string{"ghost", w.ID()}, r.WorkerIDs); diff != "" {
			t.Errorf("worker ids (-want +got):\n%s", diff)
		}
		dbtest.WaitUntil(t, 5*time.Second, "3 signals", func() bool { return len(rec.of(r.ID)) == 3 })
		want := []wkEvent{
			{"finished", r.ID, tasks.StatusReady, 1, 1}, // the rescue
			{"started", r.ID, tasks.StatusRunning, 2, 1},
			{"finished", r.ID, tasks.StatusSuccessful, 2, 1},
		}
		if diff := cmp.Diff(want, rec.of(r.ID)); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
	})

	// RescueOutOfAttempts: a rescued task without attempts left ends FAILED.
	wkBehaviour(t, "RescueOutOfAttempts", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		r := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithMaxAttempts(1)), "orphan")
		wkClaimAsGhost(t, b, r.ID, time.Now().Add(-time.Minute))
		wkStart(t, b, wkRescueConfig)
		wkWait(t, r)
		if r.Status != tasks.StatusFailed || r.Attempts != 1 || len(r.Errors) != 1 || r.FinishedAt == nil {
			t.Fatalf("status %s, attempts %d, errors %v, finished %v; want FAILED, 1, one error, set",
				r.Status, r.Attempts, r.Errors, r.FinishedAt)
		}
		if r.Errors[0].Type != database.WorkerLostType {
			t.Errorf("error type %q; want %q", r.Errors[0].Type, database.WorkerLostType)
		}
		if _, err := r.Value(); !errors.Is(err, tasks.ErrTaskFailed) {
			t.Errorf("Value() = %v; want ErrTaskFailed", err)
		}
	})

	// LiveTaskNotRescued: a long task of a live worker keeps its lease through
	// heartbeats; another worker's rescue leaves it alone.
	wkBehaviour(t, "LiveTaskNotRescued", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		other := wkOpenNamed(t, bundle.dsn, b.Name())
		r := wkEnqueue(t, wkOn(workerSleep, b), 1000)
		w := wkStart(t, b, wkRescueConfig)
		dbtest.WaitUntil(t, 5*time.Second, "the task to run", func() bool {
			return wkGet(t, b, r.ID).Status == tasks.StatusRunning
		})
		// It rescues at start and every ~150-300 ms; it has nothing to claim.
		otherCfg := wkRescueConfig
		otherCfg.PollInterval = time.Minute
		wkStart(t, other, otherCfg)
		wkWait(t, r)
		if r.Status != tasks.StatusSuccessful || r.Attempts != 1 || len(r.Errors) != 0 {
			t.Fatalf("status %s, attempts %d, errors %v; want SUCCESSFUL, 1, none", r.Status, r.Attempts, r.Errors)
		}
		if diff := cmp.Diff([]string{w.ID()}, r.WorkerIDs); diff != "" {
			t.Errorf("worker ids (-want +got):\n%s", diff)
		}
	})

	// OneShotRescuesExpiredLocks: a one-shot worker (ExitWhenEmpty, dbworker
	// --batch) runs a task whose lock expired instead of exiting before the
	// rescue made it READY (fault 7).
	wkBehaviour(t, "OneShotRescuesExpiredLocks", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
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

// wkClaimAsGhost marks the READY task id RUNNING by a worker "ghost" whose
// last heartbeat was at hb, as a worker that then vanished leaves it.
func wkClaimAsGhost(t *testing.T, b *database.Backend, id string, hb time.Time) {
	t.Helper()
	n := wkExec(t, b, `UPDATE gotasks_task SET status = 'RUNNING', worker_id = 'ghost', attempts = attempts + 1,
		started_at = $1, last_attempted_at = $1, heartbeat_at = $1, worker_ids = '["ghost"]'
		WHERE id = $2 AND status = 'READY'`, wkTS(b, hb), id)
	if n != 1 {
		t.Fatalf("ghost claim updated %d rows", n)
	}
}

var wkRescueConfig = database.WorkerConfig{PollInterval: 10 * time.Millisecond,
	HeartbeatInterval: 50 * time.Millisecond, RescueAfter: 300 * time.Millisecond}
