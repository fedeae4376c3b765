package database

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// storeCountCases: the overview's counts of finished tasks follow every
// statement that finishes a task or takes a finished one away. On SQLite
// they are counters kept beside the rows (store_sqlite_counts.go), so a
// path that forgot them would drift; on PostgreSQL they are counted from
// the rows.
var storeCountCases = []storeCase{
	{"Counts/FollowEveryPath", func(t *testing.T, fx *storeFixture) {
		// check compares the counts with the rows, for all queues and for one.
		check := func(step string) {
			t.Helper()
			want := map[string]map[tasks.Status]int64{}
			rows, err := fx.db.QueryContext(fx.ctx, `SELECT queue, status, count(*) FROM gotasks_task
				WHERE backend = $1 AND status IN `+finishedStatuses+` GROUP BY queue, status`, storeBackendName)
			if err != nil {
				t.Fatal(err)
			}
			for rows.Next() {
				var q, s string
				var n int64
				if err := rows.Scan(&q, &s, &n); err != nil {
					t.Fatal(err)
				}
				if want[q] == nil {
					want[q] = map[tasks.Status]int64{}
				}
				want[q][tasks.Status(s)] = n
			}
			if err := rows.Close(); err != nil {
				t.Fatal(err)
			}
			got, err := fx.st.finishedCounts(fx.ctx, fx.db, "")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after %s: counts (-rows +counted):\n%s", step, diff)
			}
			got, err = fx.st.finishedCounts(fx.ctx, fx.db, "b")
			if err != nil {
				t.Fatal(err)
			}
			wantB := map[string]map[tasks.Status]int64{}
			if want["b"] != nil {
				wantB["b"] = want["b"]
			}
			if diff := cmp.Diff(wantB, got); diff != "" {
				t.Errorf("after %s: counts of queue b (-rows +counted):\n%s", step, diff)
			}
		}
		queues := []string{"a", "b", "c"}
		for i := range 12 {
			fx.add(func(r *tasks.RawResult) { r.Queue = queues[i%3]; r.MaxAttempts = 1 })
		}
		at := now()
		claimed := fx.claim(at, 8, "w1")
		fin := at.Add(time.Second)
		te := tasks.TaskError{Attempt: 1, Type: "boom", Message: "boom", At: fin}
		outs := []*outcome{
			stOutcome(claimed[0], tasks.StatusSuccessful, fin, nil),
			stOutcome(claimed[1], tasks.StatusSuccessful, fin, nil),
			stOutcome(claimed[2], tasks.StatusSuccessful, fin, nil),
			stOutcome(claimed[3], tasks.StatusFailed, fin, func(o *outcome) { o.newErr = &te }),
			stOutcome(claimed[4], tasks.StatusFailed, fin, func(o *outcome) { o.newErr = &te }),
			stOutcome(claimed[5], tasks.StatusReady, fin, func(o *outcome) { o.rec.RunAfter = fin; o.newErr = &te }),
			stOutcome(claimed[6], tasks.StatusReady, fin, func(o *outcome) { o.handBack = true }),
		}
		// A batch whose outcomes all find their rows, then one with a
		// stale outcome (another attempt's), which changes nothing and
		// counts nothing.
		if done, err := fx.st.complete(fx.ctx, fx.db, "w1", "", outs[:4]); err != nil || len(done) != 4 {
			t.Fatalf("complete: %v (err %v), want 4 recorded", done, err)
		}
		check("a completion")
		stale := stOutcome(claimed[7], tasks.StatusSuccessful, fin, func(o *outcome) { o.attempt = 7 })
		done, err := fx.st.complete(fx.ctx, fx.db, "w1", "", append(outs[4:], stale))
		if err != nil || len(done) != 3 || done[claimed[7].ID] {
			t.Fatalf("complete: %v (err %v), want the 3 that are not stale", done, err)
		}
		check("a completion with a stale outcome")

		// The task still running, out of attempts: rescue fails it.
		rescued, err := fx.st.rescue(fx.ctx, fx.db, fin, "me", time.Time{}, time.Time{}, "w1")
		if err != nil || len(rescued) != 1 || rescued[0].Status != tasks.StatusFailed {
			t.Fatalf("rescue: %v (err %v), want the running task FAILED", rescued, err)
		}
		check("rescue")

		ready, err := fx.st.adminSelectIDs(fx.ctx, fx.db, TaskFilter{}, []tasks.Status{tasks.StatusReady}, "", 100)
		if err != nil || len(ready) < 3 {
			t.Fatalf("READY tasks: %v (err %v)", ready, err)
		}
		if got, err := fx.st.cancelMany(fx.ctx, fx.db, ready[:3], fin); err != nil || len(got) != 3 {
			t.Fatalf("cancel: %v (err %v)", got, err)
		}
		check("cancel")

		failed, err := fx.st.adminSelectIDs(fx.ctx, fx.db, TaskFilter{}, []tasks.Status{tasks.StatusFailed, tasks.StatusCancelled}, "", 100)
		if err != nil || len(failed) < 2 {
			t.Fatalf("FAILED and CANCELLED tasks: %v (err %v)", failed, err)
		}
		if got, err := fx.st.retry(fx.ctx, fx.db, append(failed[:2], ready[3:]...), fin); err != nil || len(got) != 2 {
			t.Fatalf("retry: %v (err %v), want the 2 finished ones", got, err)
		}
		check("retry")

		succeeded, err := fx.st.adminSelectIDs(fx.ctx, fx.db, TaskFilter{}, []tasks.Status{tasks.StatusSuccessful}, "", 100)
		if err != nil || len(succeeded) != 3 {
			t.Fatalf("SUCCESSFUL tasks: %v (err %v)", succeeded, err)
		}
		if got, err := fx.st.deleteFinished(fx.ctx, fx.db, append(succeeded[:1], ready[3:]...)); err != nil || len(got) != 1 {
			t.Fatalf("delete: %v (err %v), want the finished one", got, err)
		}
		check("delete")

		ph := prunePhase{statuses: []tasks.Status{tasks.StatusSuccessful, tasks.StatusCancelled}, cutoff: fin.Add(time.Hour)}
		rep, err := fx.st.pruneBatch(fx.ctx, fx.db, ph, nil, 2)
		if err != nil || rep.Successful+rep.Cancelled != 2 {
			t.Fatalf("prune: %+v (err %v), want 2", rep, err)
		}
		check("a prune batch")
		rep, err = fx.st.pruneBatch(fx.ctx, fx.db, ph, []string{"b"}, 100)
		if err != nil {
			t.Fatal(err)
		}
		check("a prune of queue b")
	}},
}
