package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
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
	r, err := scanResult(b.sq(q).QueryRowContext(ctx,
		`SELECT `+resultColumns+` FROM gotasks_task WHERE id = $1 AND backend = $2`, id, b.Name()))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("backend %q: result %q: %w", b.Name(), id, tasks.ErrResultNotFound)
	}
	if err != nil {
		return nil, b.wrapErr("get result", err)
	}
	return r, nil
}

// queryer returns the caller's transaction when ctx carries one of this
// backend's database, else the database.
func (b *Backend) queryer(ctx context.Context) querier {
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
	if b.txFromContext(ctx) == nil {
		unlock = b.writeLock()
	}
	res, err := b.queryer(ctx).ExecContext(ctx, `UPDATE gotasks_task SET status = 'CANCELLED', finished_at = $1
		WHERE id = $2 AND backend = $3 AND status = 'READY'`, b.dialect.ts(t), id, b.Name())
	unlock()
	if err != nil {
		return b.wrapErr("cancel", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		b.hub.finished(id)
		return nil
	}
	r, err := b.GetResult(ctx, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("backend %q: cancel %q (%s): %w", b.Name(), id, r.Status, tasks.ErrNotCancellable)
}

// Filter selects results for List. Zero fields match everything.
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

// List returns this backend's results that match f, newest first.
func (b *Backend) List(ctx context.Context, f Filter) ([]*tasks.RawResult, error) {
	var (
		where []string
		args  []any
	)
	add := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", fmt.Sprintf("$%d", len(args))))
	}
	add("backend = ?", b.Name())
	if f.TaskName != "" {
		add("task_name = ?", f.TaskName)
	}
	if f.Queue != "" {
		add("queue = ?", f.Queue)
	}
	if f.VerboseName != "" {
		add("verbose_name = ?", f.VerboseName)
	}
	if f.Creator != "" {
		add("creator = ?", f.Creator)
	}
	if !f.EnqueuedAfter.IsZero() {
		add("enqueued_at > ?", b.dialect.ts(f.EnqueuedAfter))
	}
	if !f.EnqueuedBefore.IsZero() {
		add("enqueued_at < ?", b.dialect.ts(f.EnqueuedBefore))
	}
	if len(f.Statuses) > 0 {
		ph := make([]string, len(f.Statuses))
		for i, s := range f.Statuses {
			args = append(args, string(s))
			ph[i] = fmt.Sprintf("$%d", len(args))
		}
		where = append(where, "status IN ("+strings.Join(ph, ",")+")")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 10000)
	q := fmt.Sprintf("SELECT %s FROM gotasks_task WHERE %s ORDER BY enqueued_at DESC, id DESC LIMIT %d",
		resultColumns, strings.Join(where, " AND "), limit)
	rows, err := b.queryer(ctx).QueryContext(ctx, q, args...)
	if err != nil {
		return nil, b.wrapErr("list", err)
	}
	defer rows.Close()
	var out []*tasks.RawResult
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, b.wrapErr("list", err)
		}
		out = append(out, &r.RawResult)
	}
	return out, b.wrapErr("list", rows.Err())
}

// WaitResult implements tasks.Waiter: it returns when the result is
// finished, woken by the worker's completion notice (LISTEN/NOTIFY on
// PostgreSQL, in-process on SQLite) and polling as a backstop.
func (b *Backend) WaitResult(ctx context.Context, id string) (*tasks.RawResult, error) {
	ch, cancel := b.hub.waitFor(id)
	defer cancel()
	backstop := 50 * time.Millisecond
	maxBackstop := time.Second
	if b.dialect == Postgres {
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
