package database

import (
	"context"
	"database/sql"
	"log/slog"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/tasks"
)

type txKey struct{}

type txState struct {
	db    *bun.DB
	tx    bun.Tx
	q     *sql.Tx
	hooks *tasks.TxHooks
}

// RunInTx runs fn in a transaction of db and commits it when fn returns nil
// (rolls back otherwise). The context given to fn carries the transaction:
//
//   - a database backend on db inserts tasks enqueued with that context in
//     the transaction, so they exist if and only if it commits, and sends
//     TaskEnqueued after the commit;
//   - other backends (dummy, immediate, or a database backend on another
//     database) defer the enqueue to after the commit and drop it on
//     rollback when enqueue-on-commit is on, and enqueue at once when it is
//     off.
//
// Deferred work that fails after the commit is logged, not returned: the
// transaction did commit. A RunInTx inside another on the same db joins it.
func RunInTx(ctx context.Context, db *bun.DB, fn func(ctx context.Context, tx bun.Tx) error) error {
	if st := txStateOf(ctx); st != nil && st.db == db {
		return fn(ctx, st.tx)
	}
	hooks := tasks.NewTxHooks(db)
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		ctx = tasks.ContextWithTx(ctx, hooks)
		ctx = context.WithValue(ctx, txKey{}, &txState{db: db, tx: tx, q: tx.Tx, hooks: hooks})
		return fn(ctx, tx)
	})
	if err != nil {
		hooks.Rollback()
		return err
	}
	if herr := hooks.Commit(ctx); herr != nil {
		slog.ErrorContext(ctx, "gotasks: work deferred to commit failed", "err", herr)
	}
	return nil
}

// RunInTx is RunInTx on the backend's database.
func (b *Backend) RunInTx(ctx context.Context, fn func(ctx context.Context, tx bun.Tx) error) error {
	return RunInTx(ctx, b.db, fn)
}

// JoinsTx implements tasks.TxJoiner: ctx carries a live RunInTx transaction
// of this backend's database, or the application's transaction (WithTx,
// WithSQLTx, WithPgxTx).
func (b *Backend) JoinsTx(ctx context.Context) bool {
	return appTxOf(ctx) != nil || b.txFromContext(ctx) != nil
}

func (b *Backend) txFromContext(ctx context.Context) *txState {
	st := txStateOf(ctx)
	if st == nil || st.db != b.db {
		return nil
	}
	return st
}

// txStateOf returns the live transaction of ctx: the one whose hooks are
// still the context's (after commit the hooks are removed).
func txStateOf(ctx context.Context) *txState {
	st, _ := ctx.Value(txKey{}).(*txState)
	if st == nil || tasks.TxFromContext(ctx) != st.hooks {
		return nil
	}
	return st
}

// TxFromContext returns the bun transaction that RunInTx put in ctx.
func TxFromContext(ctx context.Context) (bun.Tx, bool) {
	st := txStateOf(ctx)
	if st == nil {
		return bun.Tx{}, false
	}
	return st.tx, true
}
