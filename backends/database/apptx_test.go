package database_test

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// dbtAppTx is one way an application holds its own transaction: begin
// returns the context to enqueue with (the transaction passed in it) and
// the end of the transaction.
type dbtAppTx struct {
	name  string
	begin func(t *testing.T, ctx context.Context, b *database.Backend) (context.Context, func(commit bool) error)
}

func dbtAppTxKinds(dsn string) []dbtAppTx {
	kinds := []dbtAppTx{
		{"bun.Tx", func(t *testing.T, ctx context.Context, b *database.Backend) (context.Context, func(bool) error) {
			tx, err := b.DB().BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return database.WithTx(ctx, tx), dbtEnd(tx.Commit, tx.Rollback)
		}},
		{"*sql.Tx", func(t *testing.T, ctx context.Context, b *database.Backend) (context.Context, func(bool) error) {
			tx, err := b.DB().DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return database.WithSQLTx(ctx, tx), dbtEnd(tx.Commit, tx.Rollback)
		}},
		// The application's own pool on the same database: the statement
		// cache of the backend's pool must not be used in it.
		{"*sql.Tx of another pool", func(t *testing.T, ctx context.Context, b *database.Backend) (context.Context, func(bool) error) {
			driver, conn := "sqlite", "file:"+strings.TrimPrefix(dsn, "sqlite://")+"?_pragma=busy_timeout(30000)&_txlock=immediate"
			if dbtIsPostgres(dsn) {
				driver, conn = "pgx", dsn
			}
			db, err := sql.Open(driver, conn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			tx, err := db.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			return database.WithSQLTx(ctx, tx), dbtEnd(tx.Commit, tx.Rollback)
		}},
	}
	if dbtIsPostgres(dsn) {
		kinds = append(kinds, dbtAppTx{"pgx.Tx", func(t *testing.T, ctx context.Context, b *database.Backend) (context.Context, func(bool) error) {
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close(context.Background()) })
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return database.WithPgxTx(ctx, tx), dbtEnd(func() error { return tx.Commit(ctx) }, func() error { return tx.Rollback(ctx) })
		}})
	}
	return kinds
}

func dbtEnd(commit, rollback func() error) func(bool) error {
	return func(c bool) error {
		if c {
			return commit()
		}
		return rollback()
	}
}

// The application's own transaction: its rollback leaves no task, its
// commit exactly the ones enqueued in it (Enqueue and EnqueueMany, all or
// none), on every kind of transaction.
func TestAppTxCommitAndRollback(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		for _, kind := range dbtAppTxKinds(dsn) {
			t.Run(kind.name, func(t *testing.T) {
				ctx := dbtCtx(t)
				b := dbtOpen(t, dsn)
				task := dbtAdd.Using(tasks.WithBackend(b.Name()))
				enq := dbtRecord(t, signals.TaskEnqueued, b.Name())
				for _, commit := range []bool{false, true} {
					txCtx, end := kind.begin(t, ctx, b)
					one, err := task.Enqueue(txCtx, dbtArgs{A: 1, B: 2})
					if err != nil {
						t.Fatalf("commit=%v: Enqueue: %v", commit, err)
					}
					many, err := task.EnqueueMany(txCtx, []dbtArgs{{A: 1}, {A: 2}, {A: 3}})
					if err != nil {
						t.Fatalf("commit=%v: EnqueueMany: %v", commit, err)
					}
					ids := []string{one.ID}
					for _, r := range many {
						ids = append(ids, r.ID)
					}
					if one.Status != tasks.StatusReady || one.EnqueuedAt.IsZero() {
						t.Errorf("commit=%v: handle %s enqueued at %v, want READY with an enqueue time", commit, one.Status, one.EnqueuedAt)
					}
					// Not visible outside the transaction before it ends.
					if rs, err := b.List(ctx, database.Filter{}); err != nil || len(rs) != 0 {
						t.Errorf("commit=%v: %d results outside the transaction before its end (%v)", commit, len(rs), err)
					}
					if err := end(commit); err != nil {
						t.Fatalf("commit=%v: end: %v", commit, err)
					}
					rs, err := b.List(ctx, database.Filter{})
					if err != nil {
						t.Fatal(err)
					}
					var want []string
					if commit {
						want = ids
					}
					got := dbtIDs(rs)
					if diff := cmp.Diff(dbtSorted(want), got); diff != "" {
						t.Errorf("commit=%v: stored tasks (-want +got):\n%s", commit, diff)
					}
				}
				// TaskEnqueued is sent at the insert: for both transactions.
				if n := enq.count(); n != 8 {
					t.Errorf("%d TaskEnqueued, want 8 (sent at the insert, before the transaction ends)", n)
				}
				// The committed tasks run.
				dbtDrain(t, b)
				if rs, err := b.List(ctx, database.Filter{Statuses: []tasks.Status{tasks.StatusSuccessful}}); err != nil || len(rs) != 4 {
					t.Errorf("%d successful results (%v), want 4", len(rs), err)
				}
			})
		}
	})
}

// Reads and Cancel with the application's database/sql transaction go
// through it.
func TestAppTxReadsAndCancel(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		err := b.DB().RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			txCtx := database.WithTx(ctx, tx)
			r, err := task.Enqueue(txCtx, dbtArgs{A: 1})
			if err != nil {
				return err
			}
			got, err := task.GetResult(txCtx, r.ID)
			if err != nil {
				return err
			}
			if diff := cmp.Diff(r.Raw(), got.Raw()); diff != "" {
				t.Errorf("GetResult in the transaction (-want +got):\n%s", diff)
			}
			if rs, err := b.List(txCtx, database.Filter{}); err != nil || len(rs) != 1 {
				t.Errorf("List in the transaction: %d, %v; want 1", len(rs), err)
			}
			return r.Cancel(txCtx)
		})
		if err != nil {
			t.Fatalf("RunInTx: %v", err)
		}
		rs, err := b.List(ctx, database.Filter{Statuses: []tasks.Status{tasks.StatusCancelled}})
		if err != nil || len(rs) != 1 {
			t.Errorf("%d cancelled results after commit (%v), want 1", len(rs), err)
		}
	})
}

// A big EnqueueMany in a pgx transaction uses COPY in it: all or none.
func TestAppTxPgxCopy(t *testing.T) {
	t.Parallel()
	dsn := dbtest.DSN(t, "postgres")
	ctx := dbtCtx(t)
	b := dbtOpen(t, dsn)
	task := dbtAdd.Using(tasks.WithBackend(b.Name()))
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	batch := make([]dbtArgs, 1500)
	for i := range batch {
		batch[i].A = i
	}
	for _, commit := range []bool{false, true} {
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// The rows are in the transaction, which stays usable.
		rs, err := task.EnqueueMany(database.WithPgxTx(ctx, tx), batch)
		if err != nil {
			t.Fatalf("commit=%v: EnqueueMany: %v", commit, err)
		}
		var inTx int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM gotasks_task WHERE backend = $1`, b.Name()).Scan(&inTx); err != nil {
			t.Fatal(err)
		}
		if inTx != len(batch) {
			t.Errorf("commit=%v: %d rows in the transaction, want %d", commit, inTx, len(batch))
		}
		if commit {
			err = tx.Commit(ctx)
		} else {
			err = tx.Rollback(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
		counts, err := dbtest.StatusCounts(ctx, b.DB().DB, b.Name())
		if err != nil {
			t.Fatal(err)
		}
		want := map[tasks.Status]int{}
		if commit {
			want[tasks.StatusReady] = len(batch)
		}
		if diff := cmp.Diff(want, counts); diff != "" {
			t.Errorf("commit=%v: stored (-want +got):\n%s", commit, diff)
		}
		if commit {
			got, err := b.GetResult(ctx, rs[len(rs)-1].ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rs[len(rs)-1].Raw(), got); diff != "" {
				t.Errorf("last result (-want +got):\n%s", diff)
			}
		}
	}
}

// A pgx transaction on SQLite is a clear error, not a silent enqueue
// outside it.
func TestAppTxPgxOnSQLite(t *testing.T) {
	t.Parallel()
	ctx := dbtCtx(t)
	b := dbtOpen(t, dbtest.DSN(t, "sqlite"))
	task := dbtAdd.Using(tasks.WithBackend(b.Name()))
	var tx pgx.Tx = dbtFakePgxTx{}
	if _, err := task.Enqueue(database.WithPgxTx(ctx, tx), dbtArgs{}); err == nil || !strings.Contains(err.Error(), "pgx") {
		t.Errorf("Enqueue with a pgx.Tx on SQLite = %v, want an error naming pgx", err)
	}
	if rs, err := b.List(ctx, database.Filter{}); err != nil || len(rs) != 0 {
		t.Errorf("%d results (%v), want 0", len(rs), err)
	}
}

// dbtFakePgxTx is a pgx.Tx that is never used.
type dbtFakePgxTx struct{ pgx.Tx }

// On SQLite, an enqueue outside a bun transaction that its context is in
// fails at once with ErrTxNotPassed instead of waiting out the busy
// timeout; with the transaction passed, it works.
func TestAppTxSQLiteFailsFastOutsideOwnTx(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		var outside *tasks.Result[dbtSum]
		err := b.DB().RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			start := time.Now()
			r, err := task.Enqueue(ctx, dbtArgs{A: 1})
			took := time.Since(start)
			if took > 2*time.Second {
				t.Errorf("the enqueue outside the transaction took %v", took)
			}
			if dbtIsPostgres(dsn) {
				// PostgreSQL has no single writer: the enqueue works,
				// outside the transaction.
				if err != nil {
					t.Errorf("PostgreSQL: Enqueue outside the transaction: %v", err)
				}
				outside = r
			} else {
				if !errors.Is(err, database.ErrTxNotPassed) {
					t.Errorf("SQLite: Enqueue outside the transaction = %v, want ErrTxNotPassed", err)
				} else if !strings.Contains(err.Error(), "database.WithTx") {
					t.Errorf("the error does not say what to do: %v", err)
				}
			}
			_, err = task.Enqueue(database.WithTx(ctx, tx), dbtArgs{A: 2})
			return err
		})
		if err != nil {
			t.Fatalf("RunInTx: %v", err)
		}
		want := 1
		if outside != nil {
			want = 2
		}
		if rs, err := b.List(ctx, database.Filter{}); err != nil || len(rs) != want {
			t.Errorf("%d results (%v), want %d", len(rs), err, want)
		}
		// After the transaction, the same kind of context enqueues again.
		err = b.DB().RunInTx(ctx, nil, func(txCtx context.Context, tx bun.Tx) error {
			ctx = txCtx
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := task.Enqueue(ctx, dbtArgs{A: 3}); err != nil {
			t.Errorf("Enqueue with the context of an ended transaction: %v", err)
		}
	})
}

// With tasks.TxHooks in the context too, TaskEnqueued of an enqueue in the
// application's transaction waits for the hooks' Commit, and a rollback
// sends none.
func TestAppTxWithHooksSignalsAfterCommit(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		enq := dbtRecord(t, signals.TaskEnqueued, b.Name())
		visible := dbtVisibleOnEnqueue(t, b)
		for _, commit := range []bool{false, true} {
			tx, err := b.DB().DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			hooks := tasks.NewTxHooks(nil)
			txCtx := database.WithSQLTx(tasks.ContextWithTx(ctx, hooks), tx)
			r, err := task.Enqueue(txCtx, dbtArgs{A: 1})
			if err != nil {
				t.Fatal(err)
			}
			if r.EnqueuedAt.IsZero() {
				t.Error("a task inserted in the transaction has no enqueue time")
			}
			if n := enq.count(); n != 0 {
				t.Errorf("commit=%v: %d TaskEnqueued before the commit, want 0", commit, n)
			}
			if commit {
				if err := tx.Commit(); err != nil {
					t.Fatal(err)
				}
				if err := hooks.Commit(ctx); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([]string{r.ID}, enq.all()); diff != "" {
					t.Errorf("TaskEnqueued after the commit (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(map[string]bool{r.ID: true}, visible()); diff != "" {
					t.Errorf("visible when TaskEnqueued was sent (-want +got):\n%s", diff)
				}
			} else {
				if err := tx.Rollback(); err != nil {
					t.Fatal(err)
				}
				hooks.Rollback()
				if n := enq.count(); n != 0 {
					t.Errorf("%d TaskEnqueued after the rollback, want 0", n)
				}
				if _, err := b.GetResult(ctx, r.ID); !errors.Is(err, tasks.ErrResultNotFound) {
					t.Errorf("GetResult after the rollback: %v, want ErrResultNotFound", err)
				}
			}
		}
	})
}
