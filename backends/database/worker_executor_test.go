package database_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// TestWorkerExecutor: running attempts and what comes of them (executor.go,
// through tasks.RunAttempt, recorded by completer.go): retries and their
// backoff, timeouts, bad rows and misbehaving tasks that fail alone, the
// return value, the signals, and repeating tasks.
func TestWorkerExecutor(t *testing.T) {
	t.Parallel()

	// RetryDefaultBackoff: after a failed attempt the task is READY again with
	// run_after = finish time + (attempt⁴ + 5) s ±10 % (DefaultBackoff's jitter).
	wkBehaviour(t, "RetryDefaultBackoff", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		r := wkEnqueue(t, wkOn(workerFailDefault, b), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "the first failure", func() bool {
			wkRefresh(t, r)
			return len(r.Errors) > 0 && r.Status == tasks.StatusReady
		})
		type view struct {
			Status      tasks.Status
			Attempts    int
			MaxAttempts int
			Backoff     time.Duration
			FinishedAt  *time.Time
			Error       tasks.TaskError
		}
		got := view{r.Status, r.Attempts, r.MaxAttempts, r.RunAfter.Sub(r.Errors[0].At), r.FinishedAt, r.Errors[0]}
		got.Error.At = time.Time{}
		if got.Backoff >= 5400*time.Millisecond && got.Backoff <= 6600*time.Millisecond {
			got.Backoff = 6 * time.Second // DefaultBackoff's ±10 % jitter
		}
		want := view{tasks.StatusReady, 1, tasks.DefaultMaxAttempts, 6 * time.Second, nil,
			tasks.TaskError{Attempt: 1, Type: "*errors.errorString", Message: "always fails"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stored row after the first failure (-want +got):\n%s", diff)
		}
		if _, err := r.Value(); !errors.Is(err, tasks.ErrNotFinished) {
			t.Errorf("Value() = %v; want ErrNotFinished", err)
		}
	})

	// RetryUntilFailed: with a short backoff the task is retried until
	// MaxAttempts and ends FAILED with one error per attempt.
	wkBehaviour(t, "RetryUntilFailed", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		rec := bundle.signals(t)
		r := wkEnqueue(t, wkOn(workerFailFast, b), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		wkWait(t, r)
		if r.Status != tasks.StatusFailed || r.Attempts != 3 || r.FinishedAt == nil {
			t.Fatalf("status %s, attempts %d, finished %v; want FAILED, 3, set", r.Status, r.Attempts, r.FinishedAt)
		}
		var got []tasks.TaskError
		for _, e := range r.Errors {
			e.At = time.Time{}
			got = append(got, e)
		}
		var want []tasks.TaskError
		for i := 1; i <= 3; i++ {
			want = append(want, tasks.TaskError{Attempt: i, Type: "*errors.errorString", Message: "always fails"})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
		if _, err := r.Value(); !errors.Is(err, tasks.ErrTaskFailed) || !strings.Contains(err.Error(), "always fails") {
			t.Errorf("Value() = %v; want ErrTaskFailed with the last message", err)
		}
		// Each retry was scheduled at finish time + backoff(attempt).
		dbtest.WaitUntil(t, 5*time.Second, "3 TaskFinished signals", func() bool {
			return len(rec.resultsOf("finished", r.ID)) == 3
		})
		var backoffs []time.Duration
		for _, f := range rec.resultsOf("finished", r.ID) {
			if f.Status == tasks.StatusReady {
				backoffs = append(backoffs, f.RunAfter.Sub(f.LastError().At))
			}
		}
		if diff := cmp.Diff([]time.Duration{workerFastBackoff(1), workerFastBackoff(2)}, backoffs); diff != "" {
			t.Errorf("retry delays (-want +got):\n%s", diff)
		}
		if len(r.WorkerIDs) != 3 {
			t.Errorf("worker ids %v; want one per attempt", r.WorkerIDs)
		}
	})

	// Timeout: an attempt that overruns its timeout fails with a
	// *tasks.TimeoutError.
	wkBehaviour(t, "Timeout", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		r := wkEnqueue(t, wkOn(workerTimeout, b), "slow")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		wkWait(t, r)
		if r.Status != tasks.StatusFailed || len(r.Errors) != 1 {
			t.Fatalf("status %s, errors %v; want FAILED with one error", r.Status, r.Errors)
		}
		if e := r.Errors[0]; e.Type != "*tasks.TimeoutError" || !strings.Contains(e.Message, "timed out after 50ms") {
			t.Errorf("error %+v; want a *tasks.TimeoutError after 50ms", e)
		}
	})

	// BadRows: undecodable arguments and a panic each fail their task with a
	// clear error, an unknown task name is retried with backoff (a worker
	// that defines it may run it: a rolling deploy), and the worker goes on.
	wkBehaviour(t, "BadRows", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		unknown := wkEnqueue(t, wkOn(workerEcho, b), "unknown")
		wkExec(t, b, `UPDATE gotasks_task SET task_name = 'database_test.worker_not_registered' WHERE id = $1`, unknown.ID)
		badArgs := wkEnqueue(t, wkOn(workerInt, b), wkIntArgs{X: 1})
		wkExec(t, b, `UPDATE gotasks_task SET args = '{"x": "not-an-int"}' WHERE id = $1`, badArgs.ID)
		ids := []string{badArgs.ID}
		if b.Dialect() == database.SQLite { // PostgreSQL's json column refuses it
			badJSON := wkEnqueue(t, wkOn(workerInt, b), wkIntArgs{X: 2})
			wkExec(t, b, `UPDATE gotasks_task SET args = '[' WHERE id = $1`, badJSON.ID)
			ids = append(ids, badJSON.ID)
		}
		panicky := wkEnqueue(t, wkOn(workerPanic, b), "x")
		after := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithPriority(-1)), "after")
		if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 1, ExitWhenEmpty: true,
			PollInterval: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		if r := wkGet(t, b, unknown.ID); r.Status != tasks.StatusReady || r.Attempts != 1 || len(r.Errors) != 1 {
			t.Errorf("unknown task: status %s, attempts %d, errors %v; want READY after 1 attempt with 1 error",
				r.Status, r.Attempts, r.Errors)
		} else {
			e := r.Errors[0]
			exe, _ := os.Executable()
			if !strings.Contains(e.Message, "not registered") || !strings.Contains(e.Message, "database_test.worker_not_registered") ||
				!strings.Contains(e.Message, filepath.Base(exe)) {
				t.Errorf("unknown task: error %+v; want it to say the task is not registered in %s", e, filepath.Base(exe))
			}
			if !r.RunAfter.After(e.At) {
				t.Errorf("unknown task: run_after %v, want a backoff after the failure at %v", r.RunAfter, e.At)
			}
		}
		for _, id := range ids {
			r := wkGet(t, b, id)
			if r.Status != tasks.StatusFailed || r.Attempts != 1 || len(r.Errors) != 1 {
				t.Errorf("%s (%s): status %s, attempts %d, errors %v; want FAILED after 1 attempt with 1 error",
					r.TaskName, r.Args, r.Status, r.Attempts, r.Errors)
				continue
			}
			if e := r.Errors[0]; e.Type != "*tasks.ArgsError" {
				t.Errorf("args %s: error type %q (%s); want *tasks.ArgsError", r.Args, e.Type, e.Message)
			}
		}
		wkRefresh(t, panicky)
		if panicky.Status != tasks.StatusFailed || len(panicky.Errors) != 1 {
			t.Fatalf("panicking task: status %s, errors %v", panicky.Status, panicky.Errors)
		}
		if e := panicky.Errors[0]; e.Type != "panic" || !strings.Contains(e.Message, "boom: x") ||
			!strings.Contains(e.Stack, "worker_test.go") {
			t.Errorf("panic error %+v; want type panic, the value and a stack", e)
		}
		wkRefresh(t, after)
		if v, err := after.Value(); err != nil || v != "after" {
			t.Errorf("task after the bad ones: %q, %v; want it SUCCESSFUL", v, err)
		}
	})

	// MisbehavingTasks: a task that returns a typed-nil error or calls
	// runtime.Goexit fails its attempt with a clear error; the worker and the
	// tasks claimed with it go on (faults 1 and 4).
	t.Run("MisbehavingTasks", func(t *testing.T) {
		t.Parallel()

		wkBehaviour(t, "TypedNilError", func(t *testing.T, bundle *testBundle) {
			b := bundle.b
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

		wkBehaviour(t, "Goexit", func(t *testing.T, bundle *testBundle) {
			b := bundle.b
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

	// BadTimestampFailsAlone: a row whose timestamp the worker cannot read
	// fails alone with a clear error; the good rows claimed in the same batch
	// run (fault 2).
	wkBehaviour(t, "BadTimestampFailsAlone", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
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

	// BadMetadataFailsAlone: a row whose metadata does not decode (written
	// by hand) fails alone, without running, with an error that says so;
	// the rows claimed with it run.
	wkBehaviour(t, "BadMetadataFailsAlone", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		md := map[string]string{"tenant": "acme"}
		var good []*tasks.Result[string]
		for range 4 {
			good = append(good, wkEnqueue(t, wkOn(workerEcho, b, tasks.WithMetadata(md)), "good"))
		}
		var broken []string
		for _, bad := range []string{`{"tenant": 42}`, `["tenant"]`} {
			r := wkEnqueue(t, wkOn(workerEcho, b), "broken")
			wkExec(t, b, `UPDATE gotasks_task SET metadata = $1 WHERE id = $2`, bad, r.ID)
			broken = append(broken, r.ID)
		}
		if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 10, ExitWhenEmpty: true,
			PollInterval: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		for _, r := range good {
			wkRefresh(t, r)
			if diff := cmp.Diff([]any{tasks.StatusSuccessful, 1, md}, []any{r.Status, r.Attempts, r.Metadata}); diff != "" {
				t.Errorf("good row %s: status, attempts, metadata (-want +got):\n%s", r.ID, diff)
			}
		}
		for _, id := range broken {
			status, attempts, errs := wkStatusOf(t, b, id)
			if status != string(tasks.StatusFailed) || attempts != 1 || !strings.Contains(errs, "stored metadata") ||
				!strings.Contains(errs, "cannot be read") {
				t.Errorf("broken row %s: status %s, attempt %d, errors %s; want FAILED after 1 attempt, with an error saying its metadata cannot be read",
					id, status, attempts, errs)
			}
		}
	})

	// ReturnValueVerbatim: the stored return value is the text the task
	// produced, byte for byte (key order, escapes, non-ASCII, a NUL escape),
	// and decodes to the value returned.
	wkBehaviour(t, "ReturnValueVerbatim", func(t *testing.T, bundle *testBundle) {
		tricky := []string{
			`plain`,
			`quote " backslash \ slash / tab	 newline
	 end`,
			"nul \x00 and bell \a",
			`unicode ü € 😀 and an escape \u0041`,
			`{"looks": "like json"}`,
		}
		b := bundle.b
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		var rs []*tasks.Result[string]
		for _, s := range tricky {
			rs = append(rs, wkEnqueue(t, wkOn(workerEcho, b), s))
		}
		for i, r := range rs {
			wkWait(t, r)
			got, err := r.Value()
			if err != nil {
				t.Fatalf("%q: Value: %v", tricky[i], err)
			}
			if diff := cmp.Diff(tricky[i], got); diff != "" {
				t.Errorf("return value (-want +got):\n%s", diff)
			}
			want, _ := json.Marshal(tricky[i])
			if diff := cmp.Diff(string(want), string(wkGet(t, b, r.ID).ReturnValue)); diff != "" {
				t.Errorf("stored return value text (-want +got):\n%s", diff)
			}
		}
	})

	// Signals: TaskStarted (RUNNING) then TaskFinished (READY for a retry,
	// SUCCESSFUL or FAILED) for each attempt.
	wkBehaviour(t, "Signals", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		rec := bundle.signals(t)
		flaky := wkEnqueue(t, wkOn(workerFlaky, b), b.Name())
		failing := wkEnqueue(t, wkOn(workerFailFast, b, tasks.WithMaxAttempts(1)), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "6 signals", func() bool { return len(rec.of(flaky.ID))+len(rec.of(failing.ID)) == 6 })
		if diff := cmp.Diff(wkFailedOnce(flaky.ID), rec.of(flaky.ID)); diff != "" {
			t.Errorf("retried task (-want +got):\n%s", diff)
		}
		want := []wkEvent{
			{"started", failing.ID, tasks.StatusRunning, 1, 0},
			{"finished", failing.ID, tasks.StatusFailed, 1, 1},
		}
		if diff := cmp.Diff(want, rec.of(failing.ID)); diff != "" {
			t.Errorf("failed task (-want +got):\n%s", diff)
		}
		if fs := rec.resultsOf("finished", flaky.ID); len(fs) == 2 && string(fs[1].ReturnValue) != fmt.Sprintf("%q", b.Name()) {
			t.Errorf("TaskFinished return value %s", fs[1].ReturnValue)
		}
	})

	// RetrySignalsInOrder: a retry with no backoff is claimable as soon as the
	// failed attempt is recorded, before the worker has sent that attempt's
	// TaskFinished; TaskStarted of the retry still comes after it, even when a
	// TaskFinished receiver is slow.
	wkBehaviour(t, "RetrySignalsInOrder", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		flaky := wkOn(workerFlaky, b)
		r, err := flaky.Enqueue(context.Background(), b.Name())
		if err != nil {
			t.Fatal(err)
		}
		id := r.ID // the receivers run while Wait refreshes r
		retryStarted := make(chan struct{})
		var once sync.Once
		t.Cleanup(signals.TaskStarted.Connect(func(ctx context.Context, from string, got *tasks.RawResult) {
			if from == b.Name() && got.ID == id && got.Attempts == 2 {
				once.Do(func() { close(retryStarted) })
			}
		}))
		// Connected before the recorder, so that the recorder sees the
		// TaskFinished of the first attempt only once this receiver returns:
		// it holds that signal until the retry has been claimed again, and
		// a little longer for a TaskStarted that must not come.
		t.Cleanup(signals.TaskFinished.Connect(func(ctx context.Context, from string, got *tasks.RawResult) {
			if from != b.Name() || got.ID != id || got.Status != tasks.StatusReady {
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				cur, err := b.GetResult(context.Background(), id)
				if err != nil {
					t.Errorf("GetResult: %v", err)
					return
				}
				if cur.Status == tasks.StatusRunning && cur.Attempts == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("the retry was not claimed while TaskFinished of the first attempt was being sent")
					return
				}
				time.Sleep(5 * time.Millisecond) // polling the database
			}
			select {
			case <-retryStarted:
			case <-time.After(300 * time.Millisecond):
			}
		}))
		rec := bundle.signals(t)
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		wkWait(t, r)
		dbtest.WaitUntil(t, 5*time.Second, "4 signals", func() bool { return len(rec.of(r.ID)) == 4 })
		if diff := cmp.Diff(wkFailedOnce(r.ID), rec.of(r.ID)); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
	})

	// Repeat: after a success the next run is enqueued at scheduled time +
	// interval stepped past now, with the same arguments and metadata, until
	// RepeatUntil; a final failure ends the chain.
	wkBehaviour(t, "Repeat", func(t *testing.T, bundle *testBundle) {
		ctx := context.Background()
		b := bundle.b
		// Runs at scheduled + 1 s, 2 s and 3 s are already missed.
		scheduled := time.Now().UTC().Add(-3500 * time.Millisecond).Truncate(time.Microsecond)
		until := scheduled.Add(5500 * time.Millisecond)
		md := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
		task := wkOn(workerEcho, b, tasks.WithRunAfter(scheduled), tasks.WithRepeat(time.Second), tasks.WithRepeatUntil(until),
			tasks.WithMetadata(md))
		first := wkEnqueue(t, task, "tick")
		failing := wkEnqueue(t, wkOn(workerFailFast, b, tasks.WithMaxAttempts(1), tasks.WithRepeat(time.Second)), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		// The next run is inserted with the outcome of the last: when none is
		// READY or RUNNING, the chain has ended.
		dbtest.WaitUntil(t, 10*time.Second, "the end of the chain", func() bool {
			return wkCount(t, b, "task_name = $2 AND status IN ('READY', 'RUNNING')", workerEcho.Name()) == 0
		})
		list := func(name string) []*tasks.RawResult {
			rs, err := b.List(ctx, database.Filter{TaskName: name})
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(rs, func(i, j int) bool { return rs[i].RunAfter.Before(rs[j].RunAfter) })
			return rs
		}
		// nextAfter is the next run after r: scheduled time + interval,
		// stepped forward past the end of r's run.
		nextAfter := func(r *tasks.RawResult) time.Time {
			next := r.RunAfter.Add(r.Repeat)
			for !next.After(*r.FinishedAt) {
				next = next.Add(r.Repeat)
			}
			return next
		}
		type run struct {
			Status      tasks.Status
			Args        string
			RunAfter    time.Time
			Repeat      time.Duration
			RepeatUntil *time.Time
			Metadata    map[string]string
		}
		rs := list(workerEcho.Name())
		if len(rs) < 2 || rs[0].ID != first.ID {
			t.Fatalf("%d runs, the first %s; want at least 2, the first %s", len(rs), rs[0].ID, first.ID)
		}
		var want, got []run
		for i, r := range rs {
			ra := scheduled
			if i > 0 {
				ra = nextAfter(rs[i-1])
			}
			want = append(want, run{tasks.StatusSuccessful, `"tick"`, ra, time.Second, &until, md})
			got = append(got, run{r.Status, string(r.Args), r.RunAfter, r.Repeat, r.RepeatUntil, r.Metadata})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("runs (-want +got):\n%s", diff)
		}
		if d := rs[1].RunAfter.Sub(scheduled); d < 4*time.Second {
			t.Errorf("second run %v after the first's schedule; want the missed runs skipped (at least 4s)", d)
		}
		if last := rs[len(rs)-1]; !nextAfter(last).After(until) {
			t.Errorf("the chain ended at %v though the next run %v is before RepeatUntil %v", last.RunAfter, nextAfter(last), until)
		}
		wkWait(t, failing)
		if got := list(workerFailFast.Name()); len(got) != 1 || got[0].Status != tasks.StatusFailed {
			t.Errorf("failed repeating task: %d results; want the one FAILED (the chain ends)", len(got))
		}
	})
}
