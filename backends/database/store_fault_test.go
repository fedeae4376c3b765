package database

import (
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Regression tests of the faults that fault injection found in the store's
// statements (issue 12).
var storeFaultCases = []storeCase{
	// Fault 2: one row whose timestamp cannot be read made the whole claim
	// fail, and every good row claimed with it stayed RUNNING without anyone
	// running it.
	{"Claim/UnreadableRowComesBackFlagged", func(t *testing.T, fx *storeFixture) {
		type breakage struct{ set, col, stored string }
		broken := map[string][]breakage{
			"sqlite": {
				{`run_after = ''`, "run_after", `""`},
				{`run_after = 0`, "run_after", `"0"`},
				{`run_after = '-garbage-'`, "run_after", `"-garbage-"`}, // sorts before any date: due
				{`enqueued_at = 'yesterday'`, "enqueued_at", `"yesterday"`},
			},
			"postgres": {
				{`run_after = '-infinity'`, "run_after", `"-infinity"`},
				{`enqueued_at = 'infinity'`, "enqueued_at", `"infinity"`},
			},
		}[fx.dialect]
		if len(broken) == 0 {
			t.Fatalf("no broken rows for dialect %s", fx.dialect)
		}
		good := fx.add(func(r *tasks.RawResult) { r.Priority = -1 })[0]
		badIDs := make([]string, len(broken))
		for i, br := range broken {
			badIDs[i] = fx.add()[0].ID
			fx.exec(`UPDATE gotasks_task SET `+br.set+` WHERE id = $1`, badIDs[i])
		}
		at := now()
		rows := fx.claim(at, 10, "w1")
		byID := map[string]*row{}
		for _, r := range rows {
			byID[r.ID] = r
		}
		if len(rows) != 1+len(broken) {
			t.Fatalf("claimed %v; want the good row and the %d broken ones", stIDs(rows), len(broken))
		}
		if r := byID[good.ID]; r.bad != nil {
			t.Errorf("good row: bad %v", r.bad)
		} else {
			stDiff(t, "good row", stClaimed(good, at, "w1"), &r.RawResult)
		}
		for i, br := range broken {
			r := byID[badIDs[i]]
			want := fmt.Sprintf("stored %s %s of task %s cannot be read", br.col, br.stored, r.ID)
			if !stErrorContains(r.bad, want) {
				t.Errorf("%s (%s): bad %v; want an error saying %q", r.ID, br.set, r.bad, want)
			}
			if r.Status != tasks.StatusRunning || r.Attempts != 1 || r.workerID.String != "w1" {
				t.Errorf("%s: %s, attempt %d, worker %q; the other columns should read as claimed",
					r.ID, r.Status, r.Attempts, r.workerID.String)
			}
		}

		// The worker fails each broken row, without running it, through the
		// normal completion, in one batch with the others.
		fin := at.Add(time.Millisecond)
		outs := make([]*outcome, len(rows))
		for i, r := range rows {
			outs[i] = stOutcome(r, tasks.StatusFailed, fin, func(o *outcome) {
				if r.bad != nil {
					te := tasks.NewTaskError(r.Attempts, fin, r.bad)
					o.newErr = &te
				}
			})
		}
		done, err := fx.st.complete(fx.ctx, fx.db, "w1", "", outs)
		if err != nil {
			t.Fatalf("complete: %v", err)
		}
		if len(done) != len(rows) {
			t.Errorf("recorded %v; want every row", done)
		}
		want := map[string]tasks.Status{}
		for _, r := range rows {
			want[r.ID] = tasks.StatusFailed
		}
		stDiff(t, "statuses", want, fx.statuses(stIDs(rows)...))
		for _, id := range badIDs {
			if e := fx.column(id, "errors"); !stErrorContains(fmt.Errorf("%s", e), "cannot be read", id) {
				t.Errorf("%s: errors %s; want the unreadable column's error", id, e)
			}
		}

		// Reading such a row back may fail, clearly, and never panics.
		for _, id := range badIDs {
			if _, err := fx.b.GetResult(fx.ctx, id); err != nil && !stErrorContains(err, id) {
				t.Errorf("GetResult(%s): %v; want an error that names the row", id, err)
			}
		}
		if _, err := fx.b.List(fx.ctx, Filter{}); err != nil && !stErrorContains(err, "cannot be read") {
			t.Errorf("List: %v; want an error that says what cannot be read", err)
		}
	}},

	// Fault 3: the PostgreSQL claim committed asynchronously (it turned
	// synchronous_commit off for its transaction), so a database crash
	// could undo a claim whose task was running, and another worker ran it
	// again at the same time. The claim must leave its transaction's
	// durability as it found it.
	{"Claim/CommitsDurably", func(t *testing.T, fx *storeFixture) {
		durability := map[string]string{
			"postgres": `SELECT current_setting('synchronous_commit')`,
			"sqlite":   `PRAGMA synchronous`,
		}[fx.dialect]
		fx.add()
		tx, err := fx.db.BeginTx(fx.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		setting := func() string {
			t.Helper()
			var v string
			if err := tx.QueryRowContext(fx.ctx, durability).Scan(&v); err != nil {
				t.Fatalf("%s: %v", durability, err)
			}
			return v
		}
		before := setting()
		rows, err := fx.st.claim(fx.ctx, tx, fx.st.claimQuery(nil, nil), now(), 10, "w1", nil, nil)
		if err != nil || len(rows) != 1 {
			t.Fatalf("claim: %d rows, %v; want 1", len(rows), err)
		}
		stDiff(t, "durability setting of the claim's transaction ("+durability+")", before, setting())
	}},

	// Fault 6: a RUNNING row without a heartbeat time was never rescued
	// (NULL < cutoff is not true). Its lease now counts from the start of
	// its attempt, and so does its run time when last_attempted_at is
	// missing too.
	{"Rescue/MissingHeartbeatCountsFromTheAttempt", func(t *testing.T, fx *storeFixture) {
		at := now()
		old := at.Add(-2 * time.Minute) // older than the rescue delay, well within the run time
		type running struct {
			worker             any // nil: NULL
			hb, started, tried any
			rescued            bool
			msg                string
		}
		cases := []running{
			{"dead", nil, fx.ts(old), fx.ts(old), true, "worker stopped heartbeating while running the task: dead"},
			{nil, nil, fx.ts(old), fx.ts(old), true, "worker stopped heartbeating while running the task: ?"},
			{"dead", nil, fx.ts(old), nil, true, "worker stopped heartbeating while running the task: dead"},
			{"slow", fx.ts(at), fx.ts(at.Add(-2 * time.Hour)), nil, true, "task ran longer than the maximum run time on worker slow"},
			{"young", nil, fx.ts(at), fx.ts(at), false, ""},  // its attempt just started
			{"self", nil, fx.ts(old), fx.ts(old), false, ""}, // the caller's own
			{"alive", fx.ts(at), fx.ts(old), fx.ts(old), false, ""},
		}
		rs := make([]*tasks.RawResult, len(cases))
		for i, c := range cases {
			rs[i] = fx.add()[0]
			fx.exec(`UPDATE gotasks_task SET status = 'RUNNING', attempts = 1, worker_id = $1, heartbeat_at = $2,
				started_at = $3, last_attempted_at = $4 WHERE id = $5`, c.worker, c.hb, c.started, c.tried, rs[i].ID)
		}
		got, err := fx.st.rescue(fx.ctx, fx.db, at, "self", at.Add(-time.Minute), at.Add(-time.Hour), "")
		if err != nil {
			t.Fatal(err)
		}
		var wantIDs []string
		wantStatus, gotMsg, wantMsg := map[string]tasks.Status{}, map[string]string{}, map[string]string{}
		for i, c := range cases {
			wantStatus[rs[i].ID] = tasks.StatusRunning
			if c.rescued {
				wantIDs = append(wantIDs, rs[i].ID)
				wantStatus[rs[i].ID] = tasks.StatusReady
				wantMsg[rs[i].ID] = c.msg
				if r := fx.get(rs[i].ID); len(r.Errors) == 1 {
					gotMsg[r.ID] = r.Errors[0].Message
				}
			}
		}
		stDiff(t, "rescued", wantIDs, stSortedIDs(got))
		stDiff(t, "statuses", wantStatus, fx.statuses(stIDs(rs)...))
		stDiff(t, "errors recorded", wantMsg, gotMsg)
	}},
}
