package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/tasks"
)

// Enqueue inside the application's own transaction (SPEC §10): the
// application hands its transaction to the context with WithTx (bun),
// WithSQLTx (database/sql) or WithPgxTx (pgx), and the typed
// task.Enqueue(ctx, args) inserts in it. The context carries it because the
// typed API already takes a context: no second method per task, and code
// deep inside the transaction enqueues with the ctx it was given.

// ErrTxNotPassed reports an enqueue (or cancel) made outside a transaction
// that the same call chain holds open on the backend's SQLite database
// (bun's RunInTx or BeginTx, seen through the backend's query hook): the
// write would wait for that transaction's lock until busy_timeout and then
// fail with SQLITE_BUSY. Pass the transaction with WithTx instead.
var ErrTxNotPassed = errors.New("enqueue outside the transaction this context is in")

type appTxKey struct{}

// appTx is a transaction of the application carried by the context.
type appTx struct {
	q   querier // a database/sql transaction or connection; nil for pgx
	pgx pgx.Tx  // a pgx transaction; nil for database/sql
}

// plainQuerier hides the concrete type of the application's *sql.Tx from
// the statement cache, whose statements belong to the backend's own
// *sql.DB (a statement of another pool cannot run in the transaction).
type plainQuerier struct{ querier }

// WithTx returns a context that carries the application's bun transaction:
// a database backend then inserts the tasks enqueued with that context in
// tx, so that they are committed or rolled back with it, and reads
// (GetResult, List) and Cancel go through tx as well.
//
//	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
//		if _, err := tx.NewInsert().Model(&order).Exec(ctx); err != nil {
//			return err
//		}
//		_, err := jobs.SendReceipt.Enqueue(database.WithTx(ctx, tx), jobs.ReceiptArgs{OrderID: order.ID})
//		return err
//	})
//
// tx is a bun.Tx (or *bun.Tx) or a bun.Conn (its statements run on that
// connection, in whatever transaction it is in); a *bun.DB is not a
// transaction and leaves ctx unchanged. The transaction must be on the
// database that holds the gotasks table. TaskEnqueued is sent when the
// insert succeeded, before the application commits (see the package
// documentation of transactions), unless ctx also carries tasks.TxHooks.
func WithTx(ctx context.Context, tx bun.IDB) context.Context {
	switch x := tx.(type) {
	case bun.Tx:
		return withAppTx(ctx, &appTx{q: plainQuerier{x.Tx}})
	case *bun.Tx:
		if x != nil && x.Tx != nil {
			return withAppTx(ctx, &appTx{q: plainQuerier{x.Tx}})
		}
	case bun.Conn:
		return withAppTx(ctx, &appTx{q: plainQuerier{x.Conn}})
	case *bun.Conn:
		if x != nil && x.Conn != nil {
			return withAppTx(ctx, &appTx{q: plainQuerier{x.Conn}})
		}
	}
	return ctx
}

// WithSQLTx is WithTx for a database/sql transaction.
func WithSQLTx(ctx context.Context, tx *sql.Tx) context.Context {
	if tx == nil {
		return ctx
	}
	return withAppTx(ctx, &appTx{q: plainQuerier{tx}})
}

// WithPgxTx is WithTx for a pgx transaction (PostgreSQL only), for
// applications that use pgx without database/sql. Enqueue and EnqueueMany
// insert in it (EnqueueMany of 1,000 tasks or more with COPY); GetResult,
// List and Cancel do not go through it (they use the backend's pool).
func WithPgxTx(ctx context.Context, tx pgx.Tx) context.Context {
	if tx == nil {
		return ctx
	}
	return withAppTx(ctx, &appTx{pgx: tx})
}

func withAppTx(ctx context.Context, t *appTx) context.Context {
	return context.WithValue(ctx, appTxKey{}, t)
}

func appTxOf(ctx context.Context) *appTx {
	t, _ := ctx.Value(appTxKey{}).(*appTx)
	return t
}

// enqueueInAppTx inserts rs in the application's transaction. TaskEnqueued
// and the in-process wake-up follow at once, or at the commit when ctx
// carries live tasks.TxHooks. (On PostgreSQL, other processes' workers are
// woken by the statement's NOTIFY, which PostgreSQL delivers at the
// commit.)
func (b *Backend) enqueueInAppTx(ctx context.Context, at *appTx, rs []*tasks.RawResult, t time.Time) error {
	var err error
	switch {
	case at.pgx != nil:
		if b.has(featCopy) && len(rs) >= copyThreshold {
			err = b.store.copyInTx(ctx, at.pgx, rs, t)
		} else {
			err = b.store.insertPgx(ctx, at.pgx, rs, t)
		}
	default:
		// No write lock: the application's transaction holds the
		// database's (on SQLite), and this process's other writers may be
		// waiting for it while holding the lock.
		err = b.store.insert(ctx, at.q, rs, t)
	}
	if err != nil {
		return b.wrapErr("enqueue in the application's transaction", err)
	}
	if h := tasks.TxFromContext(ctx); h != nil {
		sent := cloneAll(rs)
		if h.OnCommit(func(ctx context.Context) error { b.afterEnqueue(ctx, sent, t); return nil }) == nil {
			return nil
		}
	}
	b.afterEnqueue(ctx, cloneAll(rs), t)
	return nil
}

// The SQLite guard: a query hook on the backend's *bun.DB marks the context
// of each bun transaction (bun gives its RunInTx function, and its COMMIT
// and ROLLBACK, the context the BEGIN hook returned). A write of the backend
// outside a transaction with a context so marked would wait for that very
// transaction's lock, so it fails at once with ErrTxNotPassed.

type txMarkKey struct{}

// txMark marks the context of one open bun transaction on db.
type txMark struct {
	db    *sql.DB
	ended atomic.Bool
}

// txGuard is the query hook.
type txGuard struct{ db *sql.DB }

// BeforeQuery implements bun.QueryHook.
func (g txGuard) BeforeQuery(ctx context.Context, ev *bun.QueryEvent) context.Context {
	switch ev.Query {
	case "BEGIN":
		return context.WithValue(ctx, txMarkKey{}, &txMark{db: g.db})
	case "COMMIT", "ROLLBACK":
		if m, _ := ctx.Value(txMarkKey{}).(*txMark); m != nil && m.db == g.db {
			m.ended.Store(true)
		}
	}
	return ctx
}

// AfterQuery implements bun.QueryHook.
func (g txGuard) AfterQuery(ctx context.Context, ev *bun.QueryEvent) {
	if ev.Query == "BEGIN" && ev.Err != nil {
		if m, _ := ctx.Value(txMarkKey{}).(*txMark); m != nil {
			m.ended.Store(true)
		}
	}
}

var guarded sync.Map // *bun.DB → struct{}

// installTxGuard adds the guard to db once (SQLite only: featSingleWriter).
func installTxGuard(db *bun.DB) {
	if _, loaded := guarded.LoadOrStore(db, struct{}{}); !loaded {
		db.AddQueryHook(txGuard{db: db.DB}) //nolint:staticcheck // in place: the application keeps using db
	}
}

// checkNotInOwnTx returns ErrTxNotPassed when ctx is inside an open bun
// transaction on the backend's single-writer database that the write is
// not part of.
func (b *Backend) checkNotInOwnTx(ctx context.Context, op string) error {
	if !b.has(featSingleWriter) {
		return nil
	}
	m, _ := ctx.Value(txMarkKey{}).(*txMark)
	if m == nil || m.db != b.db.DB || m.ended.Load() {
		return nil
	}
	return fmt.Errorf("gotasks %s: %w: the context is inside a bun transaction on the backend's SQLite database, "+
		"which holds the database's write lock, so a write outside it would wait %v and fail with SQLITE_BUSY; "+
		"pass the transaction: ctx = database.WithTx(ctx, tx) (or use database.RunInTx)",
		op, ErrTxNotPassed, sqliteBusyTimeout)
}
