package database

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// The admin API's statements (store_admin*.go, store_*_admin.go).
var storeAdminCases = []storeCase{
	{"Admin/ListMergesTheStatusBranchesInIDOrder", func(t *testing.T, fx *storeFixture) {
		ids := stAdminSeed(fx)
		all := ids[tasks.StatusReady]
		for _, s := range []tasks.Status{tasks.StatusRunning, tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled} {
			all = append(all, ids[s]...)
		}
		slices.Sort(all)
		newest := slices.Clone(all)
		slices.Reverse(newest)
		for _, c := range []struct {
			name  string
			p     ListParams
			after *cursor
			limit int
			want  []string
		}{
			{"all, newest first", ListParams{}, nil, 100, newest},
			{"all, oldest first", ListParams{Order: OldestFirst}, nil, 100, all},
			{"a page across branches", ListParams{}, nil, 3, newest[:3]},
			{"after a cursor", ListParams{}, &cursor{id: newest[1]}, 2, newest[2:4]},
			{"oldest first after a cursor", ListParams{Order: OldestFirst}, &cursor{order: OldestFirst, id: all[1]}, 2, all[2:4]},
			{"one finished status", ListParams{TaskFilter: TaskFilter{Statuses: []tasks.Status{tasks.StatusFailed}}}, nil, 100,
				stRev(ids[tasks.StatusFailed])},
			{"a finished and an active status", ListParams{TaskFilter: TaskFilter{
				Statuses: []tasks.Status{tasks.StatusCancelled, tasks.StatusRunning}}}, nil, 100,
				stRev(stSorted(append(slices.Clone(ids[tasks.StatusCancelled]), ids[tasks.StatusRunning]...)))},
			{"a queue", ListParams{TaskFilter: TaskFilter{Queues: []string{"q1"}}}, nil, 100, stRev(stSorted(ids["q1"]))},
		} {
			rows, err := fx.st.adminList(fx.ctx, fx.db, c.p, c.after, c.limit)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			var got []string
			for _, r := range rows {
				got = append(got, r.ID)
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", c.name, diff)
			}
		}
	}},
	{"Admin/SelectIDsKeepsToTheAllowedStatuses", func(t *testing.T, fx *storeFixture) {
		ids := stAdminSeed(fx)
		got, err := fx.st.adminSelectIDs(fx.ctx, fx.db, TaskFilter{}, retryable, "", 100)
		if err != nil {
			t.Fatal(err)
		}
		want := stSorted(append(slices.Clone(ids[tasks.StatusFailed]), ids[tasks.StatusCancelled]...))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("retryable (-want +got):\n%s", diff)
		}
		// Asked for a status the action does not allow: nothing.
		got, err = fx.st.adminSelectIDs(fx.ctx, fx.db, TaskFilter{Statuses: []tasks.Status{tasks.StatusRunning}}, retryable, "", 100)
		if err != nil || len(got) != 0 {
			t.Errorf("RUNNING among the retryable: %v (err %v), want none", got, err)
		}
		got, err = fx.st.adminSelectIDs(fx.ctx, fx.db, TaskFilter{}, deletable, want[0], 1)
		if err != nil || len(got) != 1 || got[0] <= want[0] {
			t.Errorf("one deletable after %s: %v (err %v)", want[0], got, err)
		}
	}},
	{"Admin/CountsByQueueAndStatus", func(t *testing.T, fx *storeFixture) {
		stAdminSeed(fx)
		want := map[string]map[tasks.Status]int64{
			"q1": {tasks.StatusSuccessful: 1, tasks.StatusCancelled: 1},
			"q2": {tasks.StatusFailed: 1},
		}
		got, err := fx.st.finishedCounts(fx.ctx, fx.db, "")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("all queues (-want +got):\n%s", diff)
		}
		got, err = fx.st.finishedCounts(fx.ctx, fx.db, "q2")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[string]map[tasks.Status]int64{"q2": want["q2"]}, got); diff != "" {
			t.Errorf("one queue (-want +got):\n%s", diff)
		}
		depths, err := fx.st.queueDepths(fx.ctx, fx.db, now())
		if err != nil {
			t.Fatal(err)
		}
		wantDepths := []tasks.QueueDepth{{Queue: "q1", Ready: 1, OldestDue: fx.base}, {Queue: "q2", Running: 1}}
		if diff := cmp.Diff(wantDepths, depths); diff != "" {
			t.Errorf("active (-want +got):\n%s", diff)
		}
		names, err := fx.st.queueNames(fx.ctx, fx.db)
		slices.Sort(names)
		if err != nil || !slices.Equal(names, []string{"q1", "q2"}) {
			t.Errorf("queue names %v (err %v), want q1 q2 (not the other backend's)", names, err)
		}
	}},
	{"Admin/QueueDepths", func(t *testing.T, fx *storeFixture) {
		at := now()
		if ds, err := fx.st.queueDepths(fx.ctx, fx.db, at); err != nil || ds != nil {
			t.Fatalf("depths of an empty table: %v (err %v), want none", ds, err)
		}
		older, old := fx.base.Add(-time.Hour), fx.base
		ready := func(queue string, runAfter time.Time) func(r *tasks.RawResult) {
			return func(r *tasks.RawResult) { r.Queue, r.RunAfter = queue, runAfter }
		}
		rs := fx.add(
			ready("mail", old), ready("mail", older), ready("mail", at), // due: the oldest became due at older
			ready("mail", at.Add(10*time.Minute)), ready("mail", at.Add(time.Hour)), // scheduled
			ready("reports", at.Add(time.Hour)),    // scheduled only
			ready("busy", old), ready("busy", old), // both claimed below
			ready("video", old), ready("video", old), // one claimed, one due
			ready("done", old),                   // finished below: not counted
			ready("other", old),                  // another backend's below
			ready("mail", older.Add(-time.Hour)), // another backend's below, older than any of mail's
		)
		fx.exec(`UPDATE gotasks_task SET status = 'RUNNING', worker_id = 'w1', attempts = 1
			WHERE id IN ($1, $2, $3)`, rs[6].ID, rs[7].ID, rs[8].ID)
		fx.exec(`UPDATE gotasks_task SET status = 'SUCCESSFUL', finished_at = $1 WHERE id = $2`, fx.ts(old), rs[10].ID)
		fx.exec(`UPDATE gotasks_task SET backend = 'other' WHERE id IN ($1, $2)`, rs[11].ID, rs[12].ID)
		got, err := fx.st.queueDepths(fx.ctx, fx.db, at)
		if err != nil {
			t.Fatal(err)
		}
		want := []tasks.QueueDepth{
			{Queue: "busy", Running: 2},
			{Queue: "mail", Ready: 3, Scheduled: 2, OldestDue: older},
			{Queue: "reports", Scheduled: 1},
			{Queue: "video", Ready: 1, Running: 1, OldestDue: old},
		}
		stDiff(t, "depths", want, got)

		// Through the backend, which implements tasks.DepthReader, at the
		// time of the call: the same (nothing scheduled came due since).
		var dr tasks.DepthReader = fx.b
		got, err = dr.QueueDepths(fx.ctx)
		if err != nil {
			t.Fatal(err)
		}
		stDiff(t, "QueueDepths", want, got)
	}},
	{"Admin/ActionsCheckTheStatusAsTheyWrite", func(t *testing.T, fx *storeFixture) {
		ids := stAdminSeed(fx)
		every := slices.Concat(ids[tasks.StatusReady], ids[tasks.StatusRunning], ids[tasks.StatusSuccessful],
			ids[tasks.StatusFailed], ids[tasks.StatusCancelled], ids["other"])
		at := fx.base.Add(time.Minute)
		got, err := fx.st.cancelMany(fx.ctx, fx.db, every, at)
		if err != nil || !slices.Equal(got, ids[tasks.StatusReady]) {
			t.Errorf("cancelled %v (err %v), want the READY one", got, err)
		}
		got, err = fx.st.retry(fx.ctx, fx.db, every, at)
		slices.Sort(got)
		want := stSorted(slices.Concat(ids[tasks.StatusReady], ids[tasks.StatusFailed], ids[tasks.StatusCancelled]))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("retried %v (err %v), want %v", got, err, want)
		}
		r := fx.get(ids[tasks.StatusFailed][0])
		if r.Status != tasks.StatusReady || r.FinishedAt != nil || !r.RunAfter.Equal(at) || r.MaxAttempts != 3 {
			t.Errorf("retried row: %+v; want READY, due at %v, unfinished, max attempts kept (3 > attempts)", r, at)
		}
		got, err = fx.st.deleteFinished(fx.ctx, fx.db, every)
		if err != nil || !slices.Equal(got, ids[tasks.StatusSuccessful]) {
			t.Errorf("deleted %v (err %v), want the SUCCESSFUL one", got, err)
		}
		if s := fx.get(ids[tasks.StatusRunning][0]).Status; s != tasks.StatusRunning {
			t.Errorf("the RUNNING row is %s after every action", s)
		}
	}},
	{"Admin/APausedQueueIsNotClaimed", func(t *testing.T, fx *storeFixture) {
		fx.add(func(r *tasks.RawResult) { r.Queue = "slow" }, func(r *tasks.RawResult) { r.Queue = "fast" })
		at := fx.base
		if err := fx.st.setPaused(fx.ctx, fx.db, "slow", &at); err != nil {
			t.Fatal(err)
		}
		if rows := fx.claim(now(), 10, "w1"); len(rows) != 1 || rows[0].Queue != "fast" {
			t.Fatalf("claimed %d rows; want only the fast queue's", len(rows))
		}
		later := at.Add(time.Hour) // pausing again keeps the first pause time
		if err := fx.st.setPaused(fx.ctx, fx.db, "slow", &later); err != nil {
			t.Fatal(err)
		}
		states, err := fx.st.queueStates(fx.ctx, fx.db)
		if err != nil || len(states) != 1 || !states[0].Paused || states[0].Name != "slow" || !states[0].PausedAt.Equal(at) {
			t.Errorf("queue states %+v (err %v); want slow paused at %v", states, err, at)
		}
		if err := fx.st.setPaused(fx.ctx, fx.db, "slow", nil); err != nil {
			t.Fatal(err)
		}
		if rows := fx.claim(now(), 10, "w1"); len(rows) != 1 || rows[0].Queue != "slow" {
			t.Fatalf("after resume claimed %d rows; want the slow queue's", len(rows))
		}
	}},
	{"Admin/WorkerRows", func(t *testing.T, fx *storeFixture) {
		start := fx.base
		w := WorkerInfo{ID: "w1", Host: "h", PID: 7, Queues: []string{"a", "b"}, Concurrency: 4, StartedAt: start}
		if err := fx.st.registerWorker(fx.ctx, fx.db, w); err != nil {
			t.Fatal(err)
		}
		if err := fx.st.registerWorker(fx.ctx, fx.db, WorkerInfo{ID: "old", StartedAt: start.Add(-time.Hour)}); err != nil {
			t.Fatal(err)
		}
		beat := start.Add(time.Minute)
		if found, err := fx.st.touchWorker(fx.ctx, fx.db, "w1", beat, 3); err != nil || !found {
			t.Fatalf("touch: found %v, err %v", found, err)
		}
		if found, err := fx.st.touchWorker(fx.ctx, fx.db, "gone", beat, 0); err != nil || found {
			t.Errorf("touch of a missing row: found %v, err %v", found, err)
		}
		if n, err := fx.st.pruneWorkers(fx.ctx, fx.db, start.Add(-time.Minute)); err != nil || n != 1 {
			t.Errorf("pruned %d (err %v), want the old one", n, err)
		}
		ws, err := fx.st.workers(fx.ctx, fx.db)
		if err != nil {
			t.Fatal(err)
		}
		w.HeartbeatAt, w.Running = beat, 3
		if diff := cmp.Diff([]WorkerInfo{w}, ws, cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })); diff != "" {
			t.Errorf("workers (-want +got):\n%s", diff)
		}
		if err := fx.st.unregisterWorker(fx.ctx, fx.db, "w1"); err != nil {
			t.Fatal(err)
		}
		if ws, err := fx.st.workers(fx.ctx, fx.db); err != nil || len(ws) != 0 {
			t.Errorf("after unregister: %v (err %v)", ws, err)
		}
	}},
}

// stAdminSeed stores one row per status (READY, SUCCESSFUL, CANCELLED in
// queue q1; RUNNING, FAILED in q2) and one FAILED row of another backend,
// and returns their ids by status, by queue ("q1", "q2") and "other".
func stAdminSeed(fx *storeFixture) map[any][]string {
	fx.t.Helper()
	out := map[any][]string{}
	fin := fx.base.Add(time.Second)
	for _, c := range []struct {
		status tasks.Status
		queue  string
	}{
		{tasks.StatusReady, "q1"}, {tasks.StatusRunning, "q2"}, {tasks.StatusSuccessful, "q1"},
		{tasks.StatusFailed, "q2"}, {tasks.StatusCancelled, "q1"},
	} {
		r := fx.add(func(r *tasks.RawResult) { r.Queue = c.queue })[0]
		if c.status != tasks.StatusReady {
			var finished any
			if c.status.Finished() {
				finished = fx.ts(fin)
			}
			fx.exec(`UPDATE gotasks_task SET status = $1, finished_at = $2 WHERE id = $3`, string(c.status), finished, r.ID)
		}
		out[c.status] = append(out[c.status], r.ID)
		out[c.queue] = append(out[c.queue], r.ID)
	}
	other := fx.add()[0]
	fx.exec(`UPDATE gotasks_task SET status = 'FAILED', finished_at = $1, backend = 'other' WHERE id = $2`, fx.ts(fin), other.ID)
	out["other"] = []string{other.ID}
	return out
}

func stSorted(ss []string) []string {
	s := slices.Clone(ss)
	slices.Sort(s)
	return s
}

func stRev(ss []string) []string {
	s := slices.Clone(ss)
	slices.Reverse(s)
	return s
}
