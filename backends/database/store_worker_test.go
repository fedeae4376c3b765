package database

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// The worker's statements: claim, complete, heartbeat, release, rescue.
var storeWorkerCases = []storeCase{
	{"Claim/DueRowsInClaimOrder", func(t *testing.T, fx *storeFixture) {
		later := fx.base.Add(time.Minute)
		rs := fx.add(
			func(r *tasks.RawResult) { r.Priority = 0; r.RunAfter = later },
			func(r *tasks.RawResult) { r.Priority = 5; r.RunAfter = later },
			func(r *tasks.RawResult) { r.Priority = 0 },
			func(r *tasks.RawResult) { r.Priority = 5 },
			func(r *tasks.RawResult) { r.RunAfter = now().Add(time.Hour) }, // not due
			func(r *tasks.RawResult) { r.Priority = -3 },
		)
		fx.exec(`UPDATE gotasks_task SET backend = 'other' WHERE id = $1`, rs[5].ID) // another backend's
		at := now()
		got := fx.claim(at, 3, "w1")
		stDiff(t, "first claim", []string{rs[3].ID, rs[1].ID, rs[2].ID}, stIDs(got))
		got = fx.claim(at, 10, "w1")
		stDiff(t, "second claim", []string{rs[0].ID}, stIDs(got))
		if got := fx.claim(at, 10, "w1"); len(got) != 0 {
			t.Errorf("third claim: %v; want nothing (the rest is not due or not this backend's)", stIDs(got))
		}
	}},
	{"Claim/StartsTheLease", func(t *testing.T, fx *storeFixture) {
		r := fx.add()[0]
		at := now()
		got := fx.claim(at, 10, "w1")
		if len(got) != 1 {
			t.Fatalf("claimed %d rows, want 1", len(got))
		}
		stDiff(t, "claimed row", stClaimed(r, at, "w1"), &got[0].RawResult)
		if got[0].workerID.String != "w1" || got[0].bad != nil {
			t.Errorf("worker_id %v, bad %v; want w1 and nil", got[0].workerID, got[0].bad)
		}
		if hb := fx.timeColumn(r.ID, "heartbeat_at"); hb == nil || !hb.Equal(at) {
			t.Errorf("heartbeat_at %v, want the claim's time %v", hb, at)
		}
		stDiff(t, "stored row", stClaimed(r, at, "w1"), fx.get(r.ID))

		// A later claim (after a retry) keeps started_at and appends the worker.
		fx.exec(`UPDATE gotasks_task SET status = 'READY', worker_id = NULL WHERE id = $1`, r.ID)
		at2 := at.Add(time.Second)
		got = fx.claim(at2, 10, "w2")
		stDiff(t, "claimed again", []*tasks.RawResult{stClaimed(stClaimed(r, at, "w1"), at2, "w2")}, stRaws(got))
	}},
	{"Claim/QueueSelection", func(t *testing.T, fx *storeFixture) {
		rs := fx.add(
			func(r *tasks.RawResult) { r.Queue = "a" },
			func(r *tasks.RawResult) { r.Queue = "b" },
			func(r *tasks.RawResult) { r.Queue = "c" },
		)
		claim := func(include, exclude []string) []string {
			t.Helper()
			q := fx.st.claimQuery(include, exclude)
			rows, err := fx.st.claim(fx.ctx, fx.db, q, now(), 10, "w1", include, exclude)
			if err != nil {
				t.Fatalf("claim include %v exclude %v: %v", include, exclude, err)
			}
			return stIDs(rows)
		}
		stDiff(t, "exclude a, b", []string{rs[2].ID}, claim(nil, []string{"a", "b"}))
		stDiff(t, "include a, b, c exclude a", []string{rs[1].ID}, claim([]string{"a", "b", "c"}, []string{"a"}))
		stDiff(t, "include a", []string{rs[0].ID}, claim([]string{"a"}, nil))
	}},
	{"Complete/RecordsEachOutcome", func(t *testing.T, fx *storeFixture) {
		rs := fx.add(stPriority(4), stPriority(3), stPriority(2), stPriority(1)) // claimed in this order
		at := now()
		rows := fx.claim(at, 10, "w1")
		fin := at.Add(time.Second)
		retryAt := at.Add(time.Minute)
		te := tasks.TaskError{Attempt: 1, Type: "*errors.errorString", Message: "boom", At: fin}
		succeeded, retried, failed, handedBack := rows[0], rows[1], rows[2], rows[3]
		outs := []*outcome{
			stOutcome(succeeded, tasks.StatusSuccessful, fin, func(o *outcome) { o.rec.ReturnValue = json.RawMessage(`{"ok":true}`) }),
			stOutcome(retried, tasks.StatusReady, fin, func(o *outcome) { o.rec.RunAfter = retryAt; o.newErr = &te }),
			stOutcome(failed, tasks.StatusFailed, fin, func(o *outcome) { o.newErr = &te }),
			stOutcome(handedBack, tasks.StatusReady, fin, func(o *outcome) { o.handBack = true }),
		}
		done, err := fx.st.complete(fx.ctx, fx.db, "w1", "\n/* gotasks plan 1 */", outs)
		if err != nil {
			t.Fatal(err)
		}
		stDiff(t, "recorded", map[string]bool{rs[0].ID: true, rs[1].ID: true, rs[2].ID: true, rs[3].ID: true}, done)

		want := stClaimed(rs[0], at, "w1")
		want.Status, want.FinishedAt, want.ReturnValue = tasks.StatusSuccessful, &fin, json.RawMessage(`{"ok":true}`)
		stDiff(t, "SUCCESSFUL", want, fx.get(rs[0].ID))
		want = stClaimed(rs[1], at, "w1")
		want.Status, want.RunAfter, want.Errors = tasks.StatusReady, retryAt, []tasks.TaskError{te}
		stDiff(t, "retried", want, fx.get(rs[1].ID))
		want = stClaimed(rs[2], at, "w1")
		want.Status, want.FinishedAt, want.Errors = tasks.StatusFailed, &fin, []tasks.TaskError{te}
		stDiff(t, "FAILED", want, fx.get(rs[2].ID))
		want = stClaimed(rs[3], at, "w1")
		want.Status, want.Attempts = tasks.StatusReady, 0
		stDiff(t, "handed back", want, fx.get(rs[3].ID))
		for _, r := range rs {
			if w := fx.column(r.ID, "worker_id") + " " + fx.column(r.ID, "heartbeat_at"); w != "NULL NULL" {
				t.Errorf("%s: worker_id and heartbeat_at %s after completion; want NULL NULL", r.ID, w)
			}
		}
	}},
	{"Complete/GuardedByWorkerAndAttempt", func(t *testing.T, fx *storeFixture) {
		fx.add(nil, nil)
		rows := fx.claim(now(), 10, "w1")
		fin := now()
		wrongAttempt := stOutcome(rows[0], tasks.StatusSuccessful, fin, func(o *outcome) { o.attempt = 2 })
		done, err := fx.st.complete(fx.ctx, fx.db, "w1", "", []*outcome{wrongAttempt})
		if err != nil || len(done) != 0 {
			t.Errorf("completion at another attempt: recorded %v, %v; want nothing", done, err)
		}
		other := stOutcome(rows[1], tasks.StatusSuccessful, fin, nil)
		done, err = fx.st.complete(fx.ctx, fx.db, "w2", "", []*outcome{other})
		if err != nil || len(done) != 0 {
			t.Errorf("completion by another worker: recorded %v, %v; want nothing", done, err)
		}
		stDiff(t, "statuses", map[string]tasks.Status{rows[0].ID: tasks.StatusRunning, rows[1].ID: tasks.StatusRunning},
			fx.statuses(rows[0].ID, rows[1].ID))
	}},
	{"Complete/InsertsNextRunInTheSameTransaction", func(t *testing.T, fx *storeFixture) {
		r := fx.add(func(r *tasks.RawResult) { r.Repeat = time.Hour })[0]
		rows := fx.claim(now(), 10, "w1")
		fin := now()
		o := stOutcome(rows[0], tasks.StatusSuccessful, fin, nil)
		next := fx.newRaw(func(n *tasks.RawResult) { n.Repeat, n.RunAfter, n.EnqueuedAt = time.Hour, fin.Add(time.Hour), fin })
		o.next = next
		done, err := fx.b.complete(fx.ctx, "w1", "", []*outcome{o})
		if err != nil || len(done) != 1 {
			t.Fatalf("complete: %d recorded, %v", len(done), err)
		}
		stDiff(t, "statuses", map[string]tasks.Status{r.ID: tasks.StatusSuccessful, next.ID: tasks.StatusReady},
			fx.statuses(r.ID, next.ID))
		stDiff(t, "next run", next, fx.get(next.ID))
	}},
	{"Heartbeat/OnlyTheWorkersOwnTasks", func(t *testing.T, fx *storeFixture) {
		fx.add(nil, nil, nil)
		at := now()
		mine := fx.claim(at, 2, "w1")
		theirs := fx.claim(at, 1, "w2")
		hb := at.Add(time.Minute)
		if err := fx.st.heartbeat(fx.ctx, fx.db, hb, "w1", []string{mine[0].ID, theirs[0].ID}); err != nil {
			t.Fatal(err)
		}
		got := map[string]time.Time{}
		for _, id := range append(stIDs(mine), theirs[0].ID) {
			got[id] = *fx.timeColumn(id, "heartbeat_at")
		}
		stDiff(t, "heartbeat_at", map[string]time.Time{mine[0].ID: hb, mine[1].ID: at, theirs[0].ID: at}, got)
	}},
	{"Release/AsIfNeverClaimed", func(t *testing.T, fx *storeFixture) {
		rs := fx.add(stPriority(2), stPriority(1)) // claimed in this order
		at := now()
		rows := fx.claim(at, 10, "w1")
		n, err := fx.st.release(fx.ctx, fx.db, "w1", []claimRef{
			{id: rows[0].ID, attempts: rows[0].Attempts},
			{id: rows[1].ID, attempts: rows[1].Attempts + 1}, // a stale reference: left alone
		})
		if err != nil || n != 1 {
			t.Fatalf("release: %d, %v; want 1 released", n, err)
		}
		want := rs[0].Clone()
		want.LastAttemptedAt = &at // keeps the claim's time
		stDiff(t, "released", want, fx.get(rs[0].ID))
		stDiff(t, "stale", stClaimed(rs[1], at, "w1"), fx.get(rs[1].ID))
	}},
	{"Rescue/ExpiredHeartbeatOrRunTime", func(t *testing.T, fx *storeFixture) {
		at := now()
		long := at.Add(-time.Hour)
		// RUNNING rows: worker, heartbeat, attempt start, max attempts.
		running := []struct {
			worker        string
			hb, attempted time.Time
			maxAttempts   int
		}{
			{"dead", at.Add(-2 * time.Minute), at.Add(-2 * time.Minute), 3}, // 0: heartbeat expired
			{"alive", at, at.Add(-time.Minute), 3},                          // 1: alive
			{"self", at.Add(-2 * time.Minute), at.Add(-2 * time.Minute), 3}, // 2: the caller's own
			{"slow", at, long.Add(-time.Second), 3},                         // 3: ran too long
			{"dead", at.Add(-2 * time.Minute), at.Add(-2 * time.Minute), 1}, // 4: out of attempts
		}
		rs := make([]*tasks.RawResult, len(running))
		for i, c := range running {
			rs[i] = fx.add(func(r *tasks.RawResult) { r.MaxAttempts = c.maxAttempts })[0]
			fx.exec(`UPDATE gotasks_task SET status = 'RUNNING', attempts = 1, worker_id = $1, heartbeat_at = $2,
				started_at = $3, last_attempted_at = $3, worker_ids = $4 WHERE id = $5`,
				c.worker, fx.ts(c.hb), fx.ts(c.attempted), `["`+c.worker+`"]`, rs[i].ID)
		}
		got, err := fx.st.rescue(fx.ctx, fx.db, at, "self", at.Add(-time.Minute), long, "")
		if err != nil {
			t.Fatal(err)
		}
		stDiff(t, "rescued", []string{rs[0].ID, rs[3].ID, rs[4].ID}, stSortedIDs(got))
		stDiff(t, "statuses", map[string]tasks.Status{rs[0].ID: tasks.StatusReady, rs[1].ID: tasks.StatusRunning,
			rs[2].ID: tasks.StatusRunning, rs[3].ID: tasks.StatusReady, rs[4].ID: tasks.StatusFailed},
			fx.statuses(stIDs(rs)...))
		for i, wantMsg := range map[int]string{
			0: "worker stopped heartbeating while running the task: dead",
			3: "task ran longer than the maximum run time on worker slow",
			4: "worker stopped heartbeating while running the task: dead",
		} {
			r := fx.get(rs[i].ID)
			if len(r.Errors) != 1 || r.Errors[0].Type != WorkerLostType || r.Errors[0].Message != wantMsg {
				t.Errorf("%s: errors %+v; want one %s saying %q", r.ID, r.Errors, WorkerLostType, wantMsg)
			}
		}
		if r := fx.get(rs[4].ID); r.FinishedAt == nil || !r.FinishedAt.Equal(at) {
			t.Errorf("out of attempts: finished_at %v, want %v", r.FinishedAt, at)
		}
	}},
	{"Rescue/OrphansOfTheWorkersOwnID", func(t *testing.T, fx *storeFixture) {
		fx.add(nil, nil)
		at := now()
		mine := fx.claim(at, 1, "me")
		theirs := fx.claim(at, 1, "other")
		got, err := fx.st.rescue(fx.ctx, fx.db, at, "me", time.Time{}, time.Time{}, "me")
		if err != nil {
			t.Fatal(err)
		}
		stDiff(t, "rescued", stIDs(mine), stIDs(got))
		stDiff(t, "statuses", map[string]tasks.Status{mine[0].ID: tasks.StatusReady, theirs[0].ID: tasks.StatusRunning},
			fx.statuses(mine[0].ID, theirs[0].ID))
	}},
}

// stOutcome returns the outcome status of a claimed row, finished at fin
// (unless READY), changed by mod.
func stOutcome(r *row, status tasks.Status, fin time.Time, mod func(o *outcome)) *outcome {
	rec := r.RawResult.Clone()
	rec.Status = status
	if status != tasks.StatusReady {
		rec.FinishedAt = &fin
	}
	o := &outcome{rec: rec, attempt: r.Attempts}
	if mod != nil {
		mod(o)
	}
	return o
}

// stPriority sets a result's priority.
func stPriority(p int) func(r *tasks.RawResult) { return func(r *tasks.RawResult) { r.Priority = p } }
