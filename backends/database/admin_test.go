package database_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// TestAdmin is the admin API (issue 14), behaviour by behaviour, each on
// both dialects with a fresh database (see wkBehaviour).
func TestAdmin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	wkBehaviour(t, "ListPagesWithACursor", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		all := adminIDs(t, bundle.b, database.ListParams{Limit: database.MaxPageSize})
		want := slices.Clone(fx.all)
		slices.Sort(want)
		slices.Reverse(want)
		if diff := cmp.Diff(want, all); diff != "" {
			t.Fatalf("newest first (-want +got):\n%s", diff)
		}
		for _, order := range []database.Order{database.NewestFirst, database.OldestFirst} {
			var got []string
			p := database.ListParams{Order: order, Limit: 3}
			for pages := 0; ; pages++ {
				page, err := bundle.b.ListTasks(ctx, p)
				if err != nil {
					t.Fatal(err)
				}
				for _, ti := range page.Tasks {
					got = append(got, ti.ID)
				}
				if page.NextCursor == "" {
					break
				}
				if pages > 10 {
					t.Fatal("the cursor does not end")
				}
				p.Cursor = page.NextCursor
			}
			w := slices.Clone(want)
			if order == database.OldestFirst {
				slices.Reverse(w)
			}
			if diff := cmp.Diff(w, got); diff != "" {
				t.Errorf("%s first, pages of 3 (-want +got):\n%s", order, diff)
			}
		}
	})

	wkBehaviour(t, "ACursorBelongsToItsOrder", func(t *testing.T, bundle *testBundle) {
		adminSeed(t, bundle)
		page, err := bundle.b.ListTasks(ctx, database.ListParams{Limit: 1})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []string{page.NextCursor, "!!not base64", "eA"} {
			_, err = bundle.b.ListTasks(ctx, database.ListParams{Order: database.OldestFirst, Cursor: c})
			if !errors.Is(err, database.ErrBadCursor) {
				t.Errorf("cursor %q: err = %v, want ErrBadCursor", c, err)
			}
		}
	})

	wkBehaviour(t, "ListFilters", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		b := bundle.b
		first := adminTask(t, b, fx.succeeded[0])
		cases := []struct {
			name string
			f    database.TaskFilter
			want []string
		}{
			{"status", database.TaskFilter{Statuses: []tasks.Status{tasks.StatusFailed}}, fx.failed},
			{"statuses", database.TaskFilter{Statuses: []tasks.Status{tasks.StatusFailed, tasks.StatusReady}},
				concat(fx.failed, fx.ready)},
			{"queue", database.TaskFilter{Queues: []string{"mail"}}, concat(fx.succeeded, fx.ready)},
			{"queues", database.TaskFilter{Queues: []string{"mail", "reports"}}, fx.all},
			{"task", database.TaskFilter{TaskNames: []string{workerPanic.Name()}}, fx.failed},
			{"task and status", database.TaskFilter{TaskNames: []string{workerEcho.Name()},
				Statuses: []tasks.Status{tasks.StatusReady}}, fx.ready},
			{"creator", database.TaskFilter{Creator: "ops@example.com"}, fx.ready},
			{"verbose name", database.TaskFilter{VerboseName: "Nightly report"}, fx.failed},
			{"id prefix", database.TaskFilter{IDPrefix: first.ID}, []string{first.ID}},
			{"id prefix, none", database.TaskFilter{IDPrefix: "zz"}, nil},
			{"enqueued after", database.TaskFilter{EnqueuedAfter: fx.readyFrom}, fx.ready},
			{"enqueued before", database.TaskFilter{EnqueuedBefore: fx.readyFrom}, concat(fx.succeeded, fx.failed)},
			{"finished", database.TaskFilter{FinishedAfter: first.FinishedAt.Add(-time.Hour),
				FinishedBefore: time.Now().Add(time.Hour)}, concat(fx.succeeded, fx.failed)},
			{"finished before", database.TaskFilter{FinishedBefore: first.FinishedAt.Add(-time.Hour)}, nil},
		}
		for _, c := range cases {
			got := adminIDs(t, b, database.ListParams{TaskFilter: c.f, Order: database.OldestFirst})
			want := slices.Clone(c.want)
			slices.Sort(want)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.name, diff)
			}
		}
	})

	wkBehaviour(t, "GetTaskShowsWhatAnOperatorNeeds", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		ti := adminTask(t, bundle.b, fx.failed[0])
		if ti.Status != tasks.StatusFailed || len(ti.Errors) != 1 || !strings.Contains(ti.Errors[0].Message, "boom") ||
			ti.Errors[0].Stack == "" || len(ti.WorkerIDs) != 1 || ti.VerboseName != "Nightly report" {
			t.Errorf("failed task = %+v; want FAILED with one error with its stack, one worker id, its verbose name", ti)
		}
		if _, err := bundle.b.GetTask(ctx, "no-such-task"); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("missing task: err = %v, want ErrResultNotFound", err)
		}
	})

	wkBehaviour(t, "RetryMakesAFailedTaskReadyAndKeepsItsHistory", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		b := bundle.b
		id := fx.failed[0]
		before := adminTask(t, b, id)
		if err := b.RetryTask(ctx, id); err != nil {
			t.Fatal(err)
		}
		after := adminTask(t, b, id)
		if after.Status != tasks.StatusReady || after.FinishedAt != nil || after.Attempts != before.Attempts ||
			len(after.Errors) != len(before.Errors) || after.MaxAttempts != before.Attempts+1 ||
			after.RunAfter.After(time.Now()) {
			t.Fatalf("after retry = %+v; want READY, due, attempts and errors kept, max attempts %d",
				after, before.Attempts+1)
		}
		// It runs again (and fails again: the task panics each time).
		wkRun(t, b, database.WorkerConfig{ExitWhenEmpty: true})
		again := adminTask(t, b, id)
		if again.Status != tasks.StatusFailed || again.Attempts != 2 || len(again.Errors) != 2 {
			t.Errorf("after the retried run: %s, %d attempts, %d errors; want FAILED, 2, 2", again.Status,
				again.Attempts, len(again.Errors))
		}
	})

	wkBehaviour(t, "RetryCancelDeleteRefuseOtherStatuses", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		b := bundle.b
		if err := b.RetryTask(ctx, fx.succeeded[0]); !errors.Is(err, database.ErrNotRetryable) {
			t.Errorf("retry SUCCESSFUL: err = %v, want ErrNotRetryable", err)
		}
		if err := b.RetryTask(ctx, fx.ready[0]); !errors.Is(err, database.ErrNotRetryable) {
			t.Errorf("retry READY: err = %v, want ErrNotRetryable", err)
		}
		if err := b.DeleteTask(ctx, fx.ready[0]); !errors.Is(err, database.ErrNotDeletable) {
			t.Errorf("delete READY: err = %v, want ErrNotDeletable", err)
		}
		if err := b.Cancel(ctx, fx.failed[0]); !errors.Is(err, tasks.ErrNotCancellable) {
			t.Errorf("cancel FAILED: err = %v, want ErrNotCancellable", err)
		}
		for name, err := range map[string]error{"retry": b.RetryTask(ctx, "nope"), "delete": b.DeleteTask(ctx, "nope")} {
			if !errors.Is(err, tasks.ErrResultNotFound) {
				t.Errorf("%s of a missing task: err = %v, want ErrResultNotFound", name, err)
			}
		}
		if err := b.DeleteTask(ctx, fx.succeeded[0]); err != nil {
			t.Fatal(err)
		}
		if _, err := b.GetTask(ctx, fx.succeeded[0]); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("deleted task: err = %v, want ErrResultNotFound", err)
		}
	})

	wkBehaviour(t, "BulkByIDsActsOnTheAllowedOnly", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		b := bundle.b
		res, err := b.CancelTasks(ctx, fx.all)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sorted(fx.ready), sorted(res.IDs)); diff != "" {
			t.Errorf("cancelled (-want +got):\n%s", diff)
		}
		res, err = b.RetryTasks(ctx, fx.all) // the failed and the just cancelled
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sorted(concat(fx.failed, fx.ready)), sorted(res.IDs)); diff != "" {
			t.Errorf("retried (-want +got):\n%s", diff)
		}
		res, err = b.DeleteTasks(ctx, fx.all)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(sorted(fx.succeeded), sorted(res.IDs)); diff != "" {
			t.Errorf("deleted (-want +got):\n%s", diff)
		}
	})

	wkBehaviour(t, "BulkByFilterGoesInBatches", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		args := make([]string, 2500)
		if _, err := wkOn(workerEcho, b, tasks.WithQueue("bulk")).Using(tasks.WithDelay(time.Hour)).
			EnqueueMany(ctx, args); err != nil {
			t.Fatal(err)
		}
		other := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue("other")).Using(tasks.WithDelay(time.Hour)), "x")
		res, err := b.CancelMatching(ctx, database.TaskFilter{Queues: []string{"bulk"}})
		if err != nil {
			t.Fatal(err)
		}
		if res.Affected != 2500 {
			t.Errorf("cancelled %d, want 2500", res.Affected)
		}
		if res, err = b.RetryMatching(ctx, database.TaskFilter{Queues: []string{"bulk"},
			Statuses: []tasks.Status{tasks.StatusCancelled, tasks.StatusSuccessful}}); err != nil || res.Affected != 2500 {
			t.Errorf("retried %d (err %v), want 2500", res.Affected, err)
		}
		if _, err = b.CancelMatching(ctx, database.TaskFilter{}); err != nil {
			t.Fatal(err)
		}
		if res, err = b.DeleteMatching(ctx, database.TaskFilter{Statuses: []tasks.Status{tasks.StatusCancelled}}); err != nil || res.Affected != 2501 {
			t.Errorf("deleted %d (err %v), want 2501", res.Affected, err)
		}
		if _, err := b.GetTask(ctx, other.ID); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("the other queue's cancelled task: err = %v, want deleted", err)
		}
	})

	wkBehaviour(t, "BulkNeverTouchesARunningTask", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		key := wkName(t)
		running := wkEnqueue(t, wkOn(workerGate, b), key)
		w := wkStart(t, b, database.WorkerConfig{PollInterval: 20 * time.Millisecond})
		dbtest.WaitUntil(t, 10*time.Second, "the task to run", func() bool {
			return adminTask(t, b, running.ID).Status == tasks.StatusRunning
		})
		all := database.TaskFilter{}
		for name, f := range map[string]func(context.Context, database.TaskFilter) (database.BulkResult, error){
			"retry": b.RetryMatching, "cancel": b.CancelMatching, "delete": b.DeleteMatching} {
			if res, err := f(ctx, all); err != nil || res.Affected != 0 {
				t.Errorf("%s matching everything: %d affected (err %v), want 0", name, res.Affected, err)
			}
		}
		for name, f := range map[string]func(context.Context, []string) (database.BulkResult, error){
			"retry": b.RetryTasks, "cancel": b.CancelTasks, "delete": b.DeleteTasks} {
			if res, err := f(ctx, []string{running.ID}); err != nil || res.Affected != 0 {
				t.Errorf("%s by id: %d affected (err %v), want 0", name, res.Affected, err)
			}
		}
		close(wkGate(key))
		wkWait(t, running)
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
	})

	wkBehaviour(t, "RecountFinishedAfterAHandEdit", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		b := bundle.b
		// An operator fails a successful task by hand and deletes a failed one.
		wkExec(t, b, "UPDATE gotasks_task SET status = 'FAILED' WHERE id = $1", fx.succeeded[0])
		wkExec(t, b, "DELETE FROM gotasks_task WHERE id = $1", fx.failed[0])
		if err := b.RecountFinished(ctx); err != nil {
			t.Fatal(err)
		}
		want := map[string]map[tasks.Status]int64{
			"mail": {tasks.StatusSuccessful: int64(len(fx.succeeded) - 1), tasks.StatusFailed: 1,
				tasks.StatusReady: int64(len(fx.ready))},
			"reports": {tasks.StatusFailed: int64(len(fx.failed) - 1)},
		}
		if diff := cmp.Diff(want, adminCounts(adminStats(t, b))); diff != "" {
			t.Errorf("counts after the recount (-want +got):\n%s", diff)
		}
		// And the counters go on from there.
		if _, err := b.DeleteTasks(ctx, fx.succeeded[1:2]); err != nil {
			t.Fatal(err)
		}
		want["mail"][tasks.StatusSuccessful]--
		if diff := cmp.Diff(want, adminCounts(adminStats(t, b))); diff != "" {
			t.Errorf("counts after a delete (-want +got):\n%s", diff)
		}
	})

	wkBehaviour(t, "StatsCountsAgesAndThroughput", func(t *testing.T, bundle *testBundle) {
		fx := adminSeed(t, bundle)
		b := bundle.b
		due := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue("reports")), "due now")
		wkExec(t, b, "UPDATE gotasks_task SET run_after = $1 WHERE id = $2", adminTS(b, time.Now().Add(-90*time.Second)), due.ID)
		st := adminStats(t, b)
		got := adminCounts(st)
		want := map[string]map[tasks.Status]int64{
			"mail":    {tasks.StatusSuccessful: int64(len(fx.succeeded)), tasks.StatusReady: int64(len(fx.ready))},
			"reports": {tasks.StatusFailed: int64(len(fx.failed)), tasks.StatusReady: 1},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("counts (-want +got):\n%s", diff)
		}
		for _, q := range st.Queues {
			switch q.Queue {
			case "reports":
				if q.Age < 90*time.Second || q.Age > 10*time.Minute {
					t.Errorf("reports: oldest due age %v, want about 90 s", q.Age)
				}
			case "mail": // its READY tasks are not due
				if q.Age != 0 || !q.OldestDue.IsZero() {
					t.Errorf("mail: oldest due %v (age %v), want none", q.OldestDue, q.Age)
				}
			}
		}
		if n := len(st.Throughput); n != 61 && n != 62 {
			t.Errorf("%d minutes in an hour's throughput, want 61 or 62", n)
		}
		var ok, failed int64
		for i, m := range st.Throughput {
			ok, failed = ok+m.Successful, failed+m.Failed
			if i > 0 && m.Minute.Sub(st.Throughput[i-1].Minute) != time.Minute {
				t.Fatalf("minute %d: %v after %v", i, m.Minute, st.Throughput[i-1].Minute)
			}
		}
		if ok != int64(len(fx.succeeded)) || failed != int64(len(fx.failed)) {
			t.Errorf("throughput totals: %d successful, %d failed; want %d, %d", ok, failed, len(fx.succeeded), len(fx.failed))
		}
	})

	wkBehaviour(t, "WorkersRegisterBeatAndLeave", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		id := "worker-" + b.Name()
		w := wkStart(t, b, database.WorkerConfig{WorkerID: id, Queues: []string{"mail"}, Concurrency: 3,
			HeartbeatInterval: 30 * time.Millisecond, RescueAfter: 300 * time.Millisecond})
		// A worker that vanished long ago, whose row a rescuer forgets.
		wkExec(t, b, `INSERT INTO gotasks_worker (id, backend, host, pid, queues, concurrency, started_at, heartbeat_at)
			VALUES ('gone', $1, 'h', 1, '[]', 1, $2, $2)`, b.Name(), adminTS(b, time.Now().Add(-time.Hour)))
		var first time.Time
		dbtest.WaitUntil(t, 10*time.Second, "the worker's heartbeat and the vanished worker forgotten", func() bool {
			ws, err := b.Workers(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(ws) != 1 {
				return false
			}
			if first.IsZero() {
				first = ws[0].HeartbeatAt
			}
			return ws[0].HeartbeatAt.After(first)
		})
		ws, _ := b.Workers(ctx)
		got := ws[0]
		if got.ID != id || got.Concurrency != 3 || !slices.Equal(got.Queues, []string{"mail"}) ||
			got.Host == "" || got.PID == 0 || got.StartedAt.IsZero() || got.HeartbeatAt.Before(got.StartedAt) {
			t.Errorf("worker = %+v", got)
		}
		// A row lost meanwhile (forgotten by a rescuer after an outage) is
		// written again at the next heartbeat.
		wkExec(t, b, "DELETE FROM gotasks_worker")
		dbtest.WaitUntil(t, 10*time.Second, "the worker to register again", func() bool {
			ws, err := b.Workers(ctx)
			return err == nil && len(ws) == 1 && ws[0].ID == id
		})
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if ws, err := b.Workers(ctx); err != nil || len(ws) != 0 {
			t.Errorf("after stop: workers %+v (err %v), want none", ws, err)
		}
	})

	wkBehaviour(t, "APausedQueueIsNotClaimedUntilResumed", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		if err := b.PauseQueue(ctx, "slow"); err != nil {
			t.Fatal(err)
		}
		paused := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue("slow")), "waits") // enqueueing still works
		w := wkStart(t, b, database.WorkerConfig{PollInterval: 20 * time.Millisecond})
		// Tasks of other queues run meanwhile, over many polls.
		for i := range 5 {
			r := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue("fast")), "runs")
			wkWait(t, r)
			if i == 0 {
				time.Sleep(100 * time.Millisecond) // several polls; nothing signals "did not claim"
			}
		}
		if s := adminTask(t, b, paused.ID).Status; s != tasks.StatusReady {
			t.Fatalf("task of the paused queue is %s, want READY", s)
		}
		qs, err := b.ListQueues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]database.QueueInfo{{Name: "fast"}, {Name: "slow", Paused: true}}, qs,
			cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".PausedAt" }, cmp.Ignore())); diff != "" {
			t.Errorf("queues (-want +got):\n%s", diff)
		}
		if err := b.PauseQueue(ctx, "slow"); err != nil { // again: no error
			t.Fatal(err)
		}
		if err := b.ResumeQueue(ctx, "slow"); err != nil {
			t.Fatal(err)
		}
		wkWait(t, paused)
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		if err := b.PauseQueue(ctx, ""); !errors.Is(err, database.ErrBadQueue) {
			t.Errorf("pause of an empty name: err = %v, want ErrBadQueue", err)
		}
	})
}

// adminFixture is what adminSeed made: ids by what became of them, each
// in enqueue order.
type adminFixture struct {
	succeeded, failed, ready, all []string
	// readyFrom is a time between the finished tasks' enqueue and the
	// ready ones'.
	readyFrom time.Time
}

// adminSeed makes, on the bundle's backend, 4 SUCCESSFUL tasks in queue
// mail, 3 FAILED (panicked) in reports with a verbose name, then 2 READY
// (not due) in mail by a creator.
func adminSeed(t *testing.T, bundle *testBundle) *adminFixture {
	t.Helper()
	b := bundle.b
	fx := &adminFixture{}
	for i := range 4 {
		fx.succeeded = append(fx.succeeded, wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue("mail")), strings.Repeat("x", i)).ID)
	}
	for range 3 {
		fx.failed = append(fx.failed, wkEnqueue(t, wkOn(workerPanic, b, tasks.WithQueue("reports"),
			tasks.WithVerboseName("Nightly report")), "boom").ID)
	}
	wkRun(t, b, database.WorkerConfig{ExitWhenEmpty: true})
	time.Sleep(5 * time.Millisecond) // enqueue times strictly apart
	fx.readyFrom = time.Now()
	for range 2 {
		fx.ready = append(fx.ready, wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue("mail"), tasks.WithCreator("ops@example.com"),
			tasks.WithDelay(time.Hour)), "later").ID)
	}
	fx.all = concat(fx.succeeded, fx.failed, fx.ready)
	return fx
}

// adminStats returns the backend's overview over the default window.
func adminStats(t *testing.T, b *database.Backend) *database.Stats {
	t.Helper()
	st, err := b.Stats(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// adminCounts returns the overview's counts by queue and status.
func adminCounts(st *database.Stats) map[string]map[tasks.Status]int64 {
	got := map[string]map[tasks.Status]int64{}
	for _, q := range st.Queues {
		got[q.Queue] = q.Counts
	}
	return got
}

func adminIDs(t *testing.T, b *database.Backend, p database.ListParams) []string {
	t.Helper()
	page, err := b.ListTasks(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, ti := range page.Tasks {
		ids = append(ids, ti.ID)
	}
	return ids
}

func adminTask(t *testing.T, b *database.Backend, id string) *database.TaskInfo {
	t.Helper()
	ti, err := b.GetTask(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// adminTS is a time as the backend's dialect stores it.
func adminTS(b *database.Backend, t time.Time) any {
	if b.Dialect() == database.SQLite {
		return t.UTC().Format("2006-01-02 15:04:05.000000")
	}
	return t.UTC()
}

func concat(ss ...[]string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, s...)
	}
	return out
}

func sorted(ss []string) []string {
	s := slices.Clone(ss)
	slices.Sort(s)
	return s
}
