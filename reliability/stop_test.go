package reliability_test

import (
	"context"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/reliability/internal/reltasks"
	"github.com/gotasks/gotasks/tasks"
)

// stopTasks is how many tasks run when the stop request comes: all at once
// (--concurrency stopTasks).
const stopTasks = 50

// startLoaded enqueues stopTasks tasks sleeping sleepMS + 20·i ms, starts a
// worker running all of them at once and waits until every one has started.
func startLoaded(t *testing.T, e *env, id string, sleepMS int, flags ...string) (*proc, map[string]string) {
	t.Helper()
	ids := e.enqueue(recordArgs(id, stopTasks, func(i int) int { return sleepMS + 20*i }))
	p := e.startWorker(id, append([]string{"--concurrency", fmt.Sprint(stopTasks)}, flags...)...)
	waitUntil(t, time.Minute, fmt.Sprintf("%d tasks running on %s", stopTasks, id), func(ctx context.Context) (bool, error) {
		var n int
		err := e.db.QueryRowContext(ctx, `SELECT count(*) FROM rel_exec WHERE worker = $1`, id).Scan(&n)
		return n == stopTasks, err
	})
	return p, ids
}

// waitLog waits until p logged a line containing sub.
func waitLog(t *testing.T, p *proc, sub string) {
	t.Helper()
	waitUntil(t, 30*time.Second, fmt.Sprintf("%s to log %q", p.id, sub), func(context.Context) (bool, error) {
		return len(p.logLines(sub)) > 0, nil
	})
}

// TestGracefulStop: SIGTERM with 50 tasks running lets them finish; the
// worker claims nothing more and exits 0 within the grace period.
func TestGracefulStop(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forDialects(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, true)
		ctx := context.Background()
		const grace = 20 * time.Second
		p, ids := startLoaded(t, e, "soft", 1000, "--grace-period", grace.String())
		sigAt := time.Now()
		p.signal(t, syscall.SIGTERM)
		waitLog(t, p, "stop requested")
		// Enqueued while the running tasks drain (once the first of them
		// finished, so a slot is free): they must stay READY.
		waitUntil(t, 30*time.Second, "a running task to finish", func(ctx context.Context) (bool, error) {
			var n int
			err := e.db.QueryRowContext(ctx, `SELECT count(*) FROM rel_exec WHERE outcome = 'ok'`).Scan(&n)
			return n > 0, err
		})
		late := e.enqueue(recordArgs("late", 10, func(int) int { return 1 }))
		code := p.wait(t, grace+10*time.Second)
		stopped := time.Since(sigAt)
		if code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
		if stopped > grace {
			t.Errorf("stopped %v after SIGTERM, want within the grace period %v", stopped, grace)
		}
		rs := e.results(ctx)
		_, byKey := e.executions(ctx)
		type summary struct {
			Status tasks.Status
			Runs   int
		}
		want, got := map[string]summary{}, map[string]summary{}
		for key, id := range ids {
			want[key] = summary{tasks.StatusSuccessful, 1}
			got[key] = summary{rs[id].Status, len(byKey[key])}
		}
		for key, id := range late {
			want[key] = summary{tasks.StatusReady, 0}
			got[key] = summary{rs[id].Status, len(byKey[key])}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("after a graceful stop (-want +got):\n%s", d)
		}
		checkRecordedOnce(t, rs, byKey)
		t.Logf("FIGURES graceful-stop/%s: running=%d stopped_after=%v grace=%v exit=%d",
			dialect, stopTasks, stopped.Round(time.Millisecond), grace, code)
	})
}

// TestHardStop: a second signal, or a grace period that runs out, cancels
// the running tasks and hands them back for retry (READY, attempt not used
// up, place in the queue kept); the worker exits 3; a later worker finishes
// them all.
func TestHardStop(t *testing.T) {
	skipShort(t)
	t.Parallel()
	for _, mode := range []string{"second-signal", "grace-expired"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			forDialects(t, func(t *testing.T, dialect string) {
				testHardStop(t, dialect, mode)
			})
		})
	}
}

func testHardStop(t *testing.T, dialect, mode string) {
	e := newEnv(t, dialect, true)
	ctx := context.Background()
	grace := "30s"
	if mode == "grace-expired" {
		grace = "500ms"
	}
	p, ids := startLoaded(t, e, "hard", 3000, "--grace-period", grace)
	sigAt := time.Now()
	p.signal(t, syscall.SIGTERM)
	waitLog(t, p, "stop requested")
	if mode == "second-signal" {
		p.signal(t, syscall.SIGTERM)
	}
	code := p.wait(t, 20*time.Second)
	stopped := time.Since(sigAt)
	if code != 3 {
		t.Errorf("exit code %d, want 3 (stopped hard)", code)
	}
	rs := e.results(ctx)
	_, byKey := e.executions(ctx)
	type handedBack struct {
		Status         tasks.Status
		Attempts       int
		Errors         int
		RunAfterKept   bool
		Runs           int
		FirstCancelled bool
	}
	want, got := map[string]handedBack{}, map[string]handedBack{}
	for key, id := range ids {
		r := rs[id]
		want[key] = handedBack{tasks.StatusReady, 0, 0, true, 1, true}
		got[key] = handedBack{r.Status, r.Attempts, len(r.Errors), r.RunAfter.Equal(r.EnqueuedAt), len(byKey[key]),
			len(byKey[key]) > 0 && byKey[key][0].Outcome == reltasks.OutcomeCancelled}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("after the hard stop (-want +got):\n%s", d)
	}

	q := e.startWorker("hard-after", "--batch", "--concurrency", fmt.Sprint(stopTasks))
	if code := q.wait(t, time.Minute); code != 0 {
		t.Errorf("the worker that finishes the handed-back tasks exited %d, want 0", code)
	}
	rs = e.results(ctx)
	_, byKey = e.executions(ctx)
	type finished struct {
		Status   tasks.Status
		Attempts int
		Runs     int
	}
	want2, got2 := map[string]finished{}, map[string]finished{}
	for key, id := range ids {
		want2[key] = finished{tasks.StatusSuccessful, 1, 2}
		got2[key] = finished{rs[id].Status, rs[id].Attempts, len(byKey[key])}
	}
	if d := cmp.Diff(want2, got2); d != "" {
		t.Errorf("after a later worker ran the handed-back tasks (-want +got):\n%s", d)
	}
	checkRecordedOnce(t, rs, byKey)
	t.Logf("FIGURES hard-stop/%s/%s: running=%d handed_back=%d stopped_after=%v exit=%d lost=0",
		mode, dialect, stopTasks, len(ids), stopped.Round(time.Millisecond), code)
}
