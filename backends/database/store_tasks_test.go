package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"testing"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// The statements other than the worker's: enqueue, results, prune,
// schema, notifications.
var storeTaskCases = []storeCase{
	{"Insert/EveryColumnReadsBack", func(t *testing.T, fx *storeFixture) {
		until := fx.base.Add(48 * time.Hour)
		rs := fx.add(func(r *tasks.RawResult) {
			r.Priority, r.Queue, r.RunAfter = 7, "mail", fx.base.Add(time.Minute)
			r.MaxAttempts, r.Timeout = 9, 1500*time.Millisecond
			r.VerboseName, r.Creator = "Send \"mail\"\n", "alice"
			r.Repeat, r.RepeatUntil = time.Hour, &until
			r.Args = []byte(`{"to":["a@b.c"],"n":2}`)
			r.Metadata = map[string]string{"tenant": "acme", "traceparent": "00-ab-cd-01"}
		}, nil)
		for _, r := range rs {
			stDiff(t, "row "+r.ID, r, fx.get(r.ID))
		}
		if _, err := fx.st.get(fx.ctx, fx.db, "no-such-id"); !stIsNoRows(err) {
			t.Errorf("get of a missing id: %v, want sql.ErrNoRows", err)
		}
		fx.exec(`UPDATE gotasks_task SET backend = 'other' WHERE id = $1`, rs[1].ID)
		if _, err := fx.st.get(fx.ctx, fx.db, rs[1].ID); !stIsNoRows(err) {
			t.Errorf("get of another backend's row: %v, want sql.ErrNoRows", err)
		}
	}},
	{"Insert/ManyInOneStatementInACallersTransaction", func(t *testing.T, fx *storeFixture) {
		rs := make([]*tasks.RawResult, 300)
		for i := range rs {
			rs[i] = fx.newRaw()
		}
		tx, err := fx.db.BeginTx(fx.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := fx.st.insert(fx.ctx, tx, rs, fx.base); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		if _, err := fx.st.get(fx.ctx, fx.db, rs[0].ID); !stIsNoRows(err) {
			t.Errorf("get after rollback: %v, want sql.ErrNoRows", err)
		}
		if err := fx.st.insert(fx.ctx, fx.db, rs, fx.base); err != nil {
			t.Fatal(err)
		}
		stDiff(t, "last row", rs[299], fx.get(rs[299].ID))
		if err := fx.st.insert(fx.ctx, fx.db, rs[:1], fx.base); err == nil {
			t.Error("insert of an existing id succeeded")
		}
	}},
	{"CopyIn/BulkLoad", func(t *testing.T, fx *storeFixture) {
		rs := []*tasks.RawResult{fx.newRaw(), fx.newRaw(func(r *tasks.RawResult) {
			until := fx.base.Add(time.Hour)
			r.Repeat, r.RepeatUntil, r.Priority = time.Minute, &until, -4
		})}
		err := fx.st.copyIn(fx.ctx, rs, fx.base)
		if !fx.has(featCopy) {
			if !errors.Is(err, errNoCopy) {
				t.Errorf("copyIn without featCopy: %v, want errNoCopy", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			stDiff(t, "row "+r.ID, r, fx.get(r.ID))
		}
	}},
	{"List/FiltersNewestFirst", func(t *testing.T, fx *storeFixture) {
		rs := fx.add(
			func(r *tasks.RawResult) { r.TaskName = "a" },
			func(r *tasks.RawResult) { r.TaskName = "b"; r.Queue = "q" },
			func(r *tasks.RawResult) { r.TaskName = "a"; r.Creator = "bob" },
		)
		fx.exec(`UPDATE gotasks_task SET enqueued_at = $1 WHERE id = $2`, fx.ts(fx.base.Add(time.Minute)), rs[2].ID)
		fx.exec(`UPDATE gotasks_task SET status = 'CANCELLED' WHERE id = $1`, rs[1].ID)
		list := func(f Filter, limit int) []string {
			t.Helper()
			got, err := fx.st.adminList(fx.ctx, fx.db, ListParams{TaskFilter: f.taskFilter()}, nil, limit)
			if err != nil {
				t.Fatalf("list %+v: %v", f, err)
			}
			return stIDs(got)
		}
		stDiff(t, "all", []string{rs[2].ID, rs[1].ID, rs[0].ID}, list(Filter{}, 100))
		stDiff(t, "limit", []string{rs[2].ID}, list(Filter{}, 1))
		stDiff(t, "task name", []string{rs[2].ID, rs[0].ID}, list(Filter{TaskName: "a"}, 100))
		stDiff(t, "queue and status", []string{rs[1].ID}, list(Filter{Queue: "q",
			Statuses: []tasks.Status{tasks.StatusCancelled, tasks.StatusFailed}}, 100))
		stDiff(t, "creator", []string{rs[2].ID}, list(Filter{Creator: "bob"}, 100))
		stDiff(t, "enqueued after", []string{rs[2].ID}, list(Filter{EnqueuedAfter: fx.base}, 100))
		stDiff(t, "enqueued before", []string{rs[1].ID, rs[0].ID},
			list(Filter{EnqueuedBefore: fx.base.Add(time.Second)}, 100))
	}},
	{"Cancel/OnlyReady", func(t *testing.T, fx *storeFixture) {
		rs := fx.add(nil, nil)
		fx.claim(now(), 1, "w1") // rs[0] is RUNNING
		at := now()
		for i, want := range []bool{false, true, false} {
			id := rs[min(i, 1)].ID
			done, err := fx.st.cancelMany(fx.ctx, fx.db, []string{id}, at)
			got := len(done) == 1
			if err != nil || got != want {
				t.Errorf("cancel %d (%s): %v, %v; want %v", i, id, got, err, want)
			}
		}
		want := rs[1].Clone()
		want.Status, want.FinishedAt = tasks.StatusCancelled, &at
		stDiff(t, "cancelled", want, fx.get(rs[1].ID))
	}},
	{"Prune/BatchAndCount", func(t *testing.T, fx *storeFixture) {
		old, recent := fx.base.Add(-48*time.Hour), fx.base
		var rs []*tasks.RawResult
		for _, c := range []struct {
			status tasks.Status
			fin    time.Time
			queue  string
		}{
			{tasks.StatusSuccessful, old, "a"}, {tasks.StatusSuccessful, old, "b"}, {tasks.StatusFailed, old, "a"},
			{tasks.StatusCancelled, old, "a"}, {tasks.StatusSuccessful, recent, "a"}, {tasks.StatusReady, old, "a"},
		} {
			r := fx.add(func(r *tasks.RawResult) { r.Queue = c.queue })[0]
			fx.exec(`UPDATE gotasks_task SET status = $1, finished_at = $2 WHERE id = $3`, string(c.status), fx.ts(c.fin), r.ID)
			rs = append(rs, r)
		}
		ph := prunePhase{[]tasks.Status{tasks.StatusSuccessful, tasks.StatusCancelled, tasks.StatusFailed}, fx.base.Add(-24 * time.Hour)}
		count, err := fx.st.pruneCount(fx.ctx, fx.db, ph, []string{"a"})
		if err != nil {
			t.Fatal(err)
		}
		stDiff(t, "count of queue a", PruneReport{Successful: 1, Cancelled: 1, Failed: 1}, count)
		batch, err := fx.st.pruneBatch(fx.ctx, fx.db, ph, nil, 2)
		if err != nil {
			t.Fatal(err)
		}
		if batch.Total() != 2 {
			t.Errorf("first batch deleted %+v, want 2 rows", batch)
		}
		batch, err = fx.st.pruneBatch(fx.ctx, fx.db, ph, nil, 2)
		if err != nil || batch.Total() != 2 {
			t.Errorf("second batch deleted %+v, %v; want the last 2 old finished rows", batch, err)
		}
		var left []string
		for _, r := range rs {
			if _, err := fx.st.get(fx.ctx, fx.db, r.ID); err == nil {
				left = append(left, r.ID)
			}
		}
		stDiff(t, "left", []string{rs[4].ID, rs[5].ID}, left)
	}},
	{"Schema/AppliedMigrationsAndMissingTable", func(t *testing.T, fx *storeFixture) {
		applied, err := fx.st.appliedMigrations(fx.ctx, fx.db)
		if err != nil || len(applied) == 0 {
			t.Fatalf("applied migrations: %v, %v; want some", applied, err)
		}
		if pending, err := pendingMigrations(fx.ctx, fx.b.dialect, fx.st, fx.db); err != nil || len(pending) != 0 {
			t.Errorf("pending migrations: %v, %v; want none", pending, err)
		}
		fx.exec(`DROP TABLE gotasks_task`)
		fx.exec(`DROP TABLE ` + migrationsTable)
		if _, err := fx.st.appliedMigrations(fx.ctx, fx.db); !schemaMissing(err) {
			t.Errorf("applied migrations without their table: %v; want an error classified as schemaMissing", err)
		}
		_, err = fx.st.get(fx.ctx, fx.db, "x")
		if !schemaMissing(err) {
			t.Errorf("get without the table: %v; want an error classified as schemaMissing", err)
		}
		if werr := fx.b.wrapErr("get result", err); !errors.Is(werr, ErrSchemaMissing) {
			t.Errorf("wrapErr: %v; want ErrSchemaMissing", werr)
		}
		if schemaMissing(errors.New("no such table: gotasks_task")) || schemaMissing(context.Canceled) {
			t.Error("schemaMissing classifies errors by their text")
		}
	}},
	{"Listen/WakeAndFinished", func(t *testing.T, fx *storeFixture) {
		if !fx.has(featListen) {
			if err := fx.st.listen(fx.ctx, listener{}); err == nil {
				t.Error("listen without featListen succeeded")
			}
			return
		}
		ctx, cancel := context.WithCancel(fx.ctx)
		listening, woken, finished := make(chan struct{}), make(chan struct{}, 10), make(chan []string, 10)
		stopped := make(chan error)
		go func() {
			stopped <- fx.st.listen(ctx, listener{
				listening: func() { close(listening) },
				wake:      func() { woken <- struct{}{} },
				finished:  func(ids []string) { finished <- ids },
			})
		}()
		defer func() {
			cancel()
			<-stopped
		}()
		wait := func(what string, ch <-chan struct{}) {
			t.Helper()
			select {
			case <-ch:
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s after 10 s", what)
			}
		}
		wait("LISTEN", listening)
		r := fx.add()[0]
		wait("wake-up after a due insert", woken)
		rows := fx.claim(now(), 1, "w1")
		if _, err := fx.st.complete(fx.ctx, fx.db, "w1", "", []*outcome{stOutcome(rows[0], tasks.StatusSuccessful, now(), nil)}); err != nil {
			t.Fatal(err)
		}
		// Notices of other tests' backends on the same server may come
		// too (the channel is server-wide): wait for this task's.
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ids := <-finished:
				if slices.Contains(ids, r.ID) {
					return
				}
			case <-deadline:
				t.Fatal("no finished notice for the task after 10 s")
			}
		}
	}},
	{"AdvisoryLock/Exclusive", func(t *testing.T, fx *storeFixture) {
		h := fnv.New64a()
		fmt.Fprintf(h, "store test %s", t.Name())
		key := int64(h.Sum64())
		conn, err := fx.db.Conn(fx.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		unlock, err := fx.st.advisoryLock(fx.ctx, conn, key)
		if !fx.has(featAdvisoryLock) {
			if err == nil {
				t.Error("advisoryLock without featAdvisoryLock succeeded")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		conn2, err := fx.db.Conn(fx.ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn2.Close()
		ctx, cancel := context.WithTimeout(fx.ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := fx.st.advisoryLock(ctx, conn2, key); err == nil {
			t.Fatal("a second connection took the lock too")
		}
		unlock(fx.ctx)
		conn3, err := fx.db.Conn(fx.ctx) // conn2's wait was cancelled: pgx may have closed it
		if err != nil {
			t.Fatal(err)
		}
		defer conn3.Close()
		unlock2, err := fx.st.advisoryLock(fx.ctx, conn3, key)
		if err != nil {
			t.Fatalf("lock after unlock: %v", err)
		}
		unlock2(fx.ctx)
	}},
	{"ClaimTurn", func(t *testing.T, fx *storeFixture) {
		// lockTimedOut reports PostgreSQL's lock_not_available (55P03): a
		// lock was not granted within lock_timeout.
		lockTimedOut := func(err error) bool { return pgCode(err) == "55P03" }
		begin := func() *sql.Tx {
			t.Helper()
			tx, err := fx.db.BeginTx(fx.ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = tx.Rollback() })
			return tx
		}
		tx1 := begin()
		err := fx.st.claimTurn(fx.ctx, tx1)
		if !fx.has(featClaimTurns) {
			if err == nil {
				t.Error("claimTurn without featClaimTurns succeeded")
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		// The claim after the turn waits for row locks as before: the
		// turn's lock_timeout is put back.
		var lt string
		if err := tx1.QueryRowContext(fx.ctx, "SHOW lock_timeout").Scan(&lt); err != nil {
			t.Fatal(err)
		}
		if lt != "0" {
			t.Errorf("lock_timeout after claimTurn = %q, want the session's %q", lt, "0")
		}
		// A second transaction waits claimTurnWait, then gives up with
		// lock_not_available.
		tx2 := begin()
		if err := fx.st.claimTurn(fx.ctx, tx2); !lockTimedOut(err) {
			t.Fatalf("claimTurn while another transaction holds it: %v, want lock_not_available (55P03)", err)
		}
		// The turn ends with its transaction.
		if err := tx1.Commit(); err != nil {
			t.Fatal(err)
		}
		if err := fx.st.claimTurn(fx.ctx, begin()); err != nil {
			t.Fatalf("claimTurn after the holder committed: %v", err)
		}
	}},
	{"ClaimTurnBackend", func(t *testing.T, fx *storeFixture) {
		if !fx.has(featClaimTurns) {
			t.Skip("no claim turns on this dialect")
		}
		// A claim whose turn does not come within claimTurnWait claims
		// beside the holder: a stuck turn never stops the worker.
		rs := fx.add(make([]func(*tasks.RawResult), claimTurnMin)...)
		tx, err := fx.db.BeginTx(fx.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx.Rollback() }()
		if err := fx.st.claimTurn(fx.ctx, tx); err != nil {
			t.Fatal(err)
		}
		got, err := fx.b.claim(fx.ctx, fx.b.store.claimQuery(nil, nil), claimTurnMin, "w1", nil, nil, true)
		if err != nil {
			t.Fatalf("claim while the turn is held: %v", err)
		}
		if len(got) != len(rs) {
			t.Fatalf("claimed %d rows while the turn is held, want %d", len(got), len(rs))
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		// In turn: the claim waits for the holder, then claims.
		fx.add(make([]func(*tasks.RawResult), claimTurnMin)...)
		tx2, err := fx.db.BeginTx(fx.ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = tx2.Rollback() }()
		if err := fx.st.claimTurn(fx.ctx, tx2); err != nil {
			t.Fatal(err)
		}
		done := make(chan int, 1)
		defer func() {
			select { // never let the claim outlive the test
			case <-done:
			case <-time.After(10 * time.Second):
			}
		}()
		go func() {
			rows, err := fx.b.claim(fx.ctx, fx.b.store.claimQuery(nil, nil), claimTurnMin, "w2", nil, nil, true)
			if err != nil {
				t.Error(err)
			}
			done <- len(rows)
		}()
		// Wait until the claim waits for its turn (well within claimTurnWait).
		deadline := time.Now().Add(900 * time.Millisecond)
		for {
			var waiting int
			if err := fx.db.QueryRowContext(fx.ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
				AND NOT granted AND classid::bigint = $1 AND objid::bigint = (`+claimTurnKey+`)::bigint & 4294967295`,
				claimTurnClass, storeBackendName).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the claim did not wait for its turn")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := tx2.Commit(); err != nil {
			t.Fatal(err)
		}
		committed := time.Now()
		n := <-done
		done <- n // for the deferred wait
		if n != claimTurnMin {
			t.Errorf("claimed %d rows after the holder committed, want %d", n, claimTurnMin)
		}
		// In turn, not after giving up on it.
		if d := time.Since(committed); d > 500*time.Millisecond {
			t.Errorf("the claim returned %v after the holder committed; it should have had its turn at once", d)
		}
	}},
}
