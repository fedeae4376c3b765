package database

import (
	"context"
	"errors"
	"testing"
)

// failingRead is SQLite's store with a read of claimed rows that fails.
type failingRead struct {
	*sqliteStore
}

func (failingRead) claimedRows(context.Context, querier, []claimRef) ([]*row, error) {
	return nil, errors.New("the read of claimed rows failed")
}

// TestClaimReadFails: where the claim reads its rows after the write lock
// (SQLite), a read that fails hands the claimed tasks back, READY at their
// attempt before the claim, instead of leaving them RUNNING with nobody to
// run them until a rescue.
func TestClaimReadFails(t *testing.T) {
	t.Parallel()
	fx := newStoreFixture(t, "sqlite")
	rs := fx.add(nil, nil, nil)
	fx.b.store = failingRead{fx.st.(*sqliteStore)}
	_, err := fx.b.claim(fx.ctx, fx.b.claimQuery(nil, nil), 10, "w1", nil, nil, false)
	if err == nil {
		t.Fatal("claim: no error, want the read's")
	}
	for _, r := range rs {
		if st, attempts := fx.column(r.ID, "status"), fx.column(r.ID, "attempts"); st != "READY" || attempts != "0" {
			t.Errorf("%s: %s at attempt %s, want READY at 0", r.ID, st, attempts)
		}
	}
}

// TestCountedFailureUndoesTheChange: on SQLite, when the counters of
// finished tasks cannot be written, the change they count is undone and
// reported as not done: in a transaction of the store's own, and in a
// caller's transaction, which goes on.
func TestCountedFailureUndoesTheChange(t *testing.T) {
	t.Parallel()
	fx := newStoreFixture(t, "sqlite")
	rs := fx.add(nil, nil)
	if _, err := fx.db.ExecContext(fx.ctx, "DROP TABLE gotasks_count"); err != nil {
		t.Fatal(err)
	}
	if ids, err := fx.st.cancelMany(fx.ctx, fx.db, []string{rs[0].ID}, now()); err == nil || ids != nil {
		t.Errorf("cancel: %v (err %v), want an error and nothing cancelled", ids, err)
	}
	tx, err := fx.db.BeginTx(fx.ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback() }()
	if ids, err := fx.st.cancelMany(fx.ctx, tx, []string{rs[1].ID}, now()); err == nil || ids != nil {
		t.Errorf("cancel in a transaction: %v (err %v), want an error and nothing cancelled", ids, err)
	}
	if _, err := tx.ExecContext(fx.ctx, "UPDATE gotasks_task SET priority = 7 WHERE id = $1", rs[1].ID); err != nil {
		t.Fatalf("the caller's transaction after the failed cancel: %v", err)
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if st := fx.column(r.ID, "status"); st != "READY" {
			t.Errorf("%s: %s, want READY", r.ID, st)
		}
	}
	if p := fx.column(rs[1].ID, "priority"); p != "7" {
		t.Errorf("the caller's own change: priority %s, want 7", p)
	}
}
