package tasks

import (
	"context"
	"errors"
	"sync"
)

// This file is for backend authors and authors of transaction helpers: how
// a transaction is made visible to Enqueue (enqueue-on-commit, SPEC §5).

// TxHooks collects the work deferred to the commit of one transaction
// (enqueue-on-commit, and signals of tasks inserted in the transaction). It
// is storage-agnostic: a transaction helper (such as the database backend's
// RunInTx) creates one, puts it in the context with ContextWithTx, and calls
// Commit after the transaction committed or Rollback after it rolled back.
type TxHooks struct {
	owner any

	mu    sync.Mutex
	fns   []func(context.Context) error
	ended bool
}

// NewTxHooks returns hooks for a transaction. owner identifies the
// transaction's database (for example a *bun.DB) so that a backend can
// tell whether it can join the transaction; it may be nil.
func NewTxHooks(owner any) *TxHooks { return &TxHooks{owner: owner} }

// Owner returns what NewTxHooks was given.
func (h *TxHooks) Owner() any { return h.owner }

// ErrTxDone is returned when work is deferred to a transaction that has
// already committed or rolled back (a context kept past its transaction).
var ErrTxDone = errors.New("the transaction in the context has already ended")

// OnCommit registers fn to run after commit. It returns ErrTxDone when the
// transaction already ended.
func (h *TxHooks) OnCommit(fn func(context.Context) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended {
		return ErrTxDone
	}
	h.fns = append(h.fns, fn)
	return nil
}

// Commit runs the registered functions in order, with a context that no
// longer carries the transaction, and returns their errors joined. Each runs
// even if an earlier one failed.
func (h *TxHooks) Commit(ctx context.Context) error {
	fns := h.end()
	ctx = ContextWithTx(context.WithoutCancel(ctx), nil)
	var errs []error
	for _, fn := range fns {
		if err := fn(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Rollback drops the registered functions.
func (h *TxHooks) Rollback() { h.end() }

func (h *TxHooks) end() []func(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	fns := h.fns
	h.fns, h.ended = nil, true
	return fns
}

type txKey struct{}

// ContextWithTx returns a context that carries h; Enqueue then treats the
// caller as inside a transaction. A nil h marks the context as outside any
// transaction.
func ContextWithTx(ctx context.Context, h *TxHooks) context.Context {
	return context.WithValue(ctx, txKey{}, h)
}

// TxFromContext returns the hooks of the transaction ctx is in, or nil.
func TxFromContext(ctx context.Context) *TxHooks { return txFromContext(ctx) }

func txFromContext(ctx context.Context) *TxHooks {
	h, _ := ctx.Value(txKey{}).(*TxHooks)
	return h
}
