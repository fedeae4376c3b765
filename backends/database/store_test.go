package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// TestStore runs every statement of the store seam on both dialects,
// through the store interface, each subtest on a fresh database of its own.
// What differs between the dialects is asked as a feature, as the backend
// does.
func TestStore(t *testing.T) {
	t.Parallel()
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			for _, c := range storeCases {
				t.Run(c.name, func(t *testing.T) {
					t.Parallel()
					c.run(t, newStoreFixture(t, dialect))
				})
			}
		})
	}
}

// storeCase is one behaviour of the store, run on each dialect.
type storeCase struct {
	name string
	run  func(t *testing.T, fx *storeFixture)
}

// storeCases are TestStore's subtests, by statement (see the files
// store_*_test.go).
var storeCases = concatCases(storeWorkerCases, storeFaultCases, storeTaskCases, storeAdminCases, storeMetadataCases, storeCountCases)

func concatCases(groups ...[]storeCase) []storeCase {
	var all []storeCase
	for _, g := range groups {
		all = append(all, g...)
	}
	return all
}

// storeFixture is a migrated backend on a fresh database, and its store.
type storeFixture struct {
	t       *testing.T
	ctx     context.Context
	dialect string // dbtest's name of the dialect
	b       *Backend
	st      store
	db      *sql.DB
	base    time.Time // enqueue time of the rows add inserts (an hour ago)
	n       int
}

const storeBackendName = "store"

func newStoreFixture(t *testing.T, dialect string) *storeFixture {
	t.Helper()
	ctx := context.Background()
	b, err := Open(ctx, dbtest.DSN(t, dialect), WithAutoMigrate(true), WithName(storeBackendName),
		WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return &storeFixture{t: t, ctx: ctx, dialect: dialect, b: b, st: b.store, db: b.db.DB,
		base: now().Add(-time.Hour)}
}

// has reports whether the store has feature f.
func (fx *storeFixture) has(f feature) bool { return fx.st.features().has(f) }

// newRaw returns a READY result of the fixture's backend, due at the base
// time, changed by mods.
func (fx *storeFixture) newRaw(mods ...func(r *tasks.RawResult)) *tasks.RawResult {
	fx.n++
	r := &tasks.RawResult{ID: fmt.Sprintf("t%03d", fx.n), TaskName: "store.task", Status: tasks.StatusReady,
		Args: json.RawMessage(`{"n":1}`), Queue: "default", Backend: storeBackendName, RunAfter: fx.base,
		EnqueuedAt: fx.base, MaxAttempts: 3}
	for _, m := range mods {
		if m != nil {
			m(r)
		}
	}
	return r
}

// add inserts results made by newRaw, one per mod (nil: a plain result;
// one plain result when none), enqueued at the base time, and returns them
// as stored.
func (fx *storeFixture) add(mods ...func(r *tasks.RawResult)) []*tasks.RawResult {
	fx.t.Helper()
	if len(mods) == 0 {
		mods = append(mods, nil)
	}
	rs := make([]*tasks.RawResult, len(mods))
	for i, m := range mods {
		rs[i] = fx.newRaw(m)
	}
	if err := fx.st.insert(fx.ctx, fx.db, rs, fx.base); err != nil {
		fx.t.Fatalf("insert: %v", err)
	}
	return rs
}

// exec runs a statement ($n placeholders work on both dialects).
func (fx *storeFixture) exec(query string, args ...any) {
	fx.t.Helper()
	if _, err := fx.db.ExecContext(fx.ctx, query, args...); err != nil {
		fx.t.Fatalf("%s: %v", query, err)
	}
	// A hand edit of the tasks bypasses SQLite's counters of finished tasks.
	dml := strings.HasPrefix(query, "UPDATE gotasks_task") || strings.HasPrefix(query, "INSERT INTO gotasks_task") ||
		strings.HasPrefix(query, "DELETE FROM gotasks_task")
	if sq, ok := fx.st.(*sqliteStore); ok && dml {
		if err := sq.recountFinished(fx.ctx, fx.db); err != nil {
			fx.t.Fatalf("recount: %v", err)
		}
	}
}

// ts encodes a time as the dialect stores it.
func (fx *storeFixture) ts(t time.Time) any { return fx.b.dialect.ts(t) }

// claim claims up to limit tasks for workerID at at, all queues.
func (fx *storeFixture) claim(at time.Time, limit int, workerID string) []*row {
	fx.t.Helper()
	rows, err := fx.st.claim(fx.ctx, fx.db, fx.st.claimQuery(nil, nil), at, limit, workerID, nil, nil)
	if err != nil {
		fx.t.Fatalf("claim: %v", err)
	}
	return rows
}

// get reads a result back through the store.
func (fx *storeFixture) get(id string) *tasks.RawResult {
	fx.t.Helper()
	r, err := fx.st.get(fx.ctx, fx.db, id)
	if err != nil {
		fx.t.Fatalf("get %s: %v", id, err)
	}
	return &r.RawResult
}

// column reads one column of a row as text ("NULL" for NULL).
func (fx *storeFixture) column(id, col string) string {
	fx.t.Helper()
	var v sql.NullString
	if err := fx.db.QueryRowContext(fx.ctx, `SELECT CAST(`+col+` AS TEXT) FROM gotasks_task WHERE id = $1`, id).
		Scan(&v); err != nil {
		fx.t.Fatalf("read %s of %s: %v", col, id, err)
	}
	if !v.Valid {
		return "NULL"
	}
	return v.String
}

// timeColumn reads a time column of a row (nil for NULL).
func (fx *storeFixture) timeColumn(id, col string) *time.Time {
	fx.t.Helper()
	var t *time.Time
	if err := fx.db.QueryRowContext(fx.ctx, `SELECT `+col+` FROM gotasks_task WHERE id = $1`, id).
		Scan(dbTime{&t}); err != nil {
		fx.t.Fatalf("read %s of %s: %v", col, id, err)
	}
	return t
}

// statuses returns the status of each of ids.
func (fx *storeFixture) statuses(ids ...string) map[string]tasks.Status {
	fx.t.Helper()
	out := map[string]tasks.Status{}
	for _, id := range ids {
		out[id] = tasks.Status(fx.column(id, "status"))
	}
	return out
}

// stClaimed is what r looks like after claim number attempt by workerID at
// at (the first claim sets started_at).
func stClaimed(r *tasks.RawResult, at time.Time, workerID string) *tasks.RawResult {
	c := r.Clone()
	c.Status = tasks.StatusRunning
	c.Attempts++
	if c.StartedAt == nil {
		c.StartedAt = &at
	}
	c.LastAttemptedAt = &at
	c.WorkerIDs = append(c.WorkerIDs, workerID)
	return c
}

// stRaws returns the results of rows.
func stRaws(rows []*row) []*tasks.RawResult {
	out := make([]*tasks.RawResult, len(rows))
	for i, r := range rows {
		out[i] = &r.RawResult
	}
	return out
}

// stIDs returns the ids of rs.
func stIDs[T interface{ *row | *tasks.RawResult }](rs []T) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		switch x := any(r).(type) {
		case *row:
			out[i] = x.ID
		case *tasks.RawResult:
			out[i] = x.ID
		}
	}
	return out
}

// stSortedIDs returns the ids of rows, sorted.
func stSortedIDs(rows []*row) []string {
	out := stIDs(rows)
	slices.Sort(out)
	return out
}

// stErrorContains reports whether err's message has every one of parts.
func stErrorContains(err error, parts ...string) bool {
	if err == nil {
		return false
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			return false
		}
	}
	return true
}

// stDiff fails the test with a (-want +got) diff when want and got differ.
func stDiff(t *testing.T, what string, want, got any, opts ...cmp.Option) {
	t.Helper()
	if d := cmp.Diff(want, got, opts...); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

// stIsNoRows reports sql.ErrNoRows.
func stIsNoRows(err error) bool { return errors.Is(err, sql.ErrNoRows) }
