package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// GetResult implements tasks.Backend: any task's result stored by this
// backend (rows of other backends sharing the table are not visible).
func (b *Backend) GetResult(ctx context.Context, id string) (*tasks.RawResult, error) {
	r, err := b.getRow(ctx, b.queryer(ctx), id)
	if err != nil {
		return nil, err
	}
	return &r.RawResult, nil
}

func (b *Backend) getRow(ctx context.Context, q querier, id string) (*row, error) {
	r, err := b.store.get(ctx, q, id)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("backend %q: result %q: %w", b.Name(), id, tasks.ErrResultNotFound)
	}
	if err != nil {
		return nil, b.wrapErr("get result", err)
	}
	return r, nil
}

// queryer returns the application's database/sql transaction of ctx, or
// the RunInTx transaction of ctx on this backend's database, else the
// database.
func (b *Backend) queryer(ctx context.Context) querier {
	if at := appTxOf(ctx); at != nil && at.q != nil {
		return at.q
	}
	if tx := b.txFromContext(ctx); tx != nil {
		return tx.q
	}
	return b.db.DB
}

// Cancel implements tasks.Backend: a READY task becomes CANCELLED and never
// runs. Anything else is an error wrapping tasks.ErrNotCancellable (or
// tasks.ErrResultNotFound).
func (b *Backend) Cancel(ctx context.Context, id string) error {
	t := now()
	// Inside the caller's transaction the write goes to that transaction,
	// which already holds SQLite's write lock: taking writeMu there could
	// wait for a goroutine that holds writeMu while it waits for this
	// transaction's lock.
	unlock := func() {}
	if at := appTxOf(ctx); (at == nil || at.q == nil) && b.txFromContext(ctx) == nil {
		if err := b.checkNotInOwnTx(ctx, "cancel"); err != nil {
			return err
		}
		unlock = b.writeLock()
	}
	done, err := b.store.cancelMany(ctx, b.queryer(ctx), []string{id}, t)
	unlock()
	if err != nil {
		return b.wrapErr("cancel", err)
	}
	if len(done) == 1 {
		b.hub.finished(id)
		return nil
	}
	r, err := b.GetResult(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("backend %q: cancel %q (%s): %w", b.Name(), id, r.Status, tasks.ErrNotCancellable)
}

// Filter selects results for List. Zero fields match everything. (The
// admin API's TaskFilter has more fields and takes several values per
// field.)
type Filter struct {
	TaskName    string
	Statuses    []tasks.Status
	Queue       string
	VerboseName string
	Creator     string
	// EnqueuedAfter and EnqueuedBefore bound the enqueue time.
	EnqueuedAfter, EnqueuedBefore time.Time
	// Limit caps the number of results (default 100, at most 10,000).
	Limit int
}

// taskFilter is f as a TaskFilter. EnqueuedAfter is exclusive here and
// inclusive there: stored times have microseconds, so the next microsecond
// is the same bound.
func (f Filter) taskFilter() TaskFilter {
	tf := TaskFilter{Statuses: f.Statuses, Creator: f.Creator, VerboseName: f.VerboseName,
		EnqueuedBefore: f.EnqueuedBefore}
	if f.TaskName != "" {
		tf.TaskNames = []string{f.TaskName}
	}
	if f.Queue != "" {
		tf.Queues = []string{f.Queue}
	}
	if !f.EnqueuedAfter.IsZero() {
		tf.EnqueuedAfter = f.EnqueuedAfter.Truncate(time.Microsecond).Add(time.Microsecond)
	}
	return tf
}

// List returns this backend's results that match f, newest first (in
// enqueue order: see ListTasks, of which it is the one-page form). Inside
// the application's or RunInTx's transaction it reads that transaction.
func (b *Backend) List(ctx context.Context, f Filter) ([]*tasks.RawResult, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	rows, err := b.store.adminList(ctx, b.queryer(ctx), ListParams{TaskFilter: f.taskFilter()}, nil, limit)
	if err != nil {
		return nil, b.wrapErr("list", err)
	}
	var out []*tasks.RawResult
	for _, r := range rows {
		out = append(out, &r.RawResult)
	}
	return out, nil
}

// WaitResult implements tasks.Waiter: it returns when the result is
// finished, woken by the worker's completion notice (LISTEN/NOTIFY on
// PostgreSQL, in-process on SQLite) and polling as a backstop.
func (b *Backend) WaitResult(ctx context.Context, id string) (*tasks.RawResult, error) {
	ch, cancel := b.hub.waitFor(id)
	defer cancel()
	backstop := 50 * time.Millisecond
	maxBackstop := time.Second
	if b.has(featNotify) { // notified across processes: polling is only the backstop
		backstop = 250 * time.Millisecond
		maxBackstop = 2 * time.Second
	}
	timer := time.NewTimer(backstop)
	defer timer.Stop()
	for {
		r, err := b.GetResult(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("wait for result %s: %w", id, err)
		}
		if r.Status.Finished() {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for result %s: %w", id, context.Cause(ctx))
		case <-ch:
		case <-timer.C:
			backstop = min(backstop*2, maxBackstop)
			timer.Reset(backstop)
		}
	}
}
