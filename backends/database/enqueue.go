package database

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// Enqueue implements tasks.Backend. With the application's transaction in
// ctx (WithTx, WithSQLTx, WithPgxTx) it inserts in that transaction; inside
// RunInTx it inserts in RunInTx's transaction and sends TaskEnqueued after
// the commit.
func (b *Backend) Enqueue(ctx context.Context, req *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	out, err := b.EnqueueMany(ctx, []*tasks.EnqueueRequest{req})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// EnqueueMany implements tasks.Backend: one INSERT statement for the whole
// batch on both dialects (COPY for large batches on PostgreSQL through pgx),
// in the transaction of ctx as Enqueue.
func (b *Backend) EnqueueMany(ctx context.Context, reqs []*tasks.EnqueueRequest) ([]*tasks.RawResult, error) {
	if len(reqs) == 0 {
		return nil, nil
	}
	t := now()
	out := make([]*tasks.RawResult, len(reqs))
	for i, req := range reqs {
		if err := checkRequest(req); err != nil {
			return nil, err
		}
		r := req.NewRawResult(b.Name(), t)
		if r.MaxAttempts <= 0 {
			r.MaxAttempts = b.DefaultMaxAttempts()
		}
		r.RunAfter = r.RunAfter.Truncate(time.Microsecond)
		if len(r.Metadata) == 0 {
			r.Metadata = nil // stored as NULL, read back as nil
		}
		out[i] = r
	}
	if states := uniqueStates(reqs); states != nil {
		return b.enqueueUnique(ctx, out, states, t)
	}
	if at := appTxOf(ctx); at != nil {
		if err := b.enqueueInAppTx(ctx, at, out, t); err != nil {
			return nil, err
		}
		return out, nil
	}
	if tx := b.txFromContext(ctx); tx != nil {
		inserted := false
		if err := tx.hooks.OnCommit(func(ctx context.Context) error {
			if inserted {
				b.afterEnqueue(ctx, out, t)
			}
			return nil
		}); err != nil {
			return nil, fmt.Errorf("gotasks enqueue: %w", err)
		}
		if err := b.insert(ctx, tx.q, out, t); err != nil {
			return nil, err
		}
		inserted = true
		return cloneAll(out), nil
	}
	if err := b.checkNotInOwnTx(ctx, "enqueue"); err != nil {
		return nil, err
	}
	if err := b.insertAutocommit(ctx, out, t); err != nil {
		return nil, err
	}
	b.afterEnqueue(ctx, out, t) // signals get copies; out is the caller's now
	return out, nil
}

func cloneAll(rs []*tasks.RawResult) []*tasks.RawResult {
	c := make([]*tasks.RawResult, len(rs))
	for i, r := range rs {
		c[i] = r.Clone()
	}
	return c
}

// afterEnqueue wakes this process's workers and sends TaskEnqueued.
func (b *Backend) afterEnqueue(ctx context.Context, rs []*tasks.RawResult, t time.Time) {
	for _, r := range rs {
		if !r.RunAfter.After(t) {
			b.hub.wake()
			break
		}
	}
	if signals.TaskEnqueued.Len() > 0 {
		for _, r := range rs {
			signals.TaskEnqueued.Send(ctx, b.Name(), r)
		}
	}
}

// uniqueStates returns the unique statuses of reqs (0 for a task that is
// not unique), or nil when none is unique.
func uniqueStates(reqs []*tasks.EnqueueRequest) []tasks.StatusMask {
	var states []tasks.StatusMask
	for i, req := range reqs {
		if req.UniqueKey == "" {
			continue
		}
		if states == nil {
			states = make([]tasks.StatusMask, len(reqs))
		}
		states[i] = req.UniqueStatuses
	}
	return states
}

// enqueueUnique is EnqueueMany of a batch with unique tasks (states[i] is
// 0 for the others): where the key of out[i] is held, out[i] becomes the
// task that holds it. TaskEnqueued is sent for the inserted tasks only.
// It runs where EnqueueMany would insert: in the application's
// transaction, in RunInTx's, or in autocommit (never with COPY).
func (b *Backend) enqueueUnique(ctx context.Context, out []*tasks.RawResult, states []tasks.StatusMask, t time.Time) ([]*tasks.RawResult, error) {
	for i, s := range states {
		if out[i].UniqueKey != "" && (!s.Has(tasks.StatusReady) || !s.Has(tasks.StatusRunning)) {
			return nil, fmt.Errorf("%w: task %q: unique statuses must include READY and RUNNING", tasks.ErrInvalidTask, out[i].TaskName)
		}
	}
	if at := appTxOf(ctx); at != nil {
		if at.pgx != nil {
			return nil, fmt.Errorf("gotasks enqueue: unique tasks in a pgx transaction (WithPgxTx); use WithSQLTx: %w", tasks.ErrNotSupported)
		}
		// No write lock, as in enqueueInAppTx.
		fresh, err := b.insertUnique(ctx, at.q, out, states, t)
		if err != nil {
			return nil, err
		}
		if h := tasks.TxFromContext(ctx); h != nil {
			sent := cloneAll(fresh)
			if h.OnCommit(func(ctx context.Context) error { b.afterEnqueue(ctx, sent, t); return nil }) == nil {
				return out, nil
			}
		}
		b.afterEnqueue(ctx, cloneAll(fresh), t)
		return out, nil
	}
	if tx := b.txFromContext(ctx); tx != nil {
		var fresh []*tasks.RawResult
		if err := tx.hooks.OnCommit(func(ctx context.Context) error {
			b.afterEnqueue(ctx, fresh, t)
			return nil
		}); err != nil {
			return nil, fmt.Errorf("gotasks enqueue: %w", err)
		}
		f, err := b.insertUnique(ctx, tx.q, out, states, t)
		if err != nil {
			return nil, err
		}
		fresh = cloneAll(f)
		return cloneAll(out), nil
	}
	if err := b.checkNotInOwnTx(ctx, "enqueue"); err != nil {
		return nil, err
	}
	unlock := b.writeLock()
	fresh, err := b.insertUnique(ctx, b.db.DB, out, states, t)
	unlock()
	if err != nil {
		return nil, err
	}
	b.afterEnqueue(ctx, cloneAll(fresh), t)
	return out, nil
}

// uniqueRounds bounds the rounds of insertUnique: a round fails to insert a
// task only because another holds its key, and the next finds the holder
// unless it left the index in between (finished, say).
const uniqueRounds = 5

// ErrUniqueContention is returned by a unique enqueue (tasks.WithUnique)
// whose key stays held by a task it cannot read after several rounds of
// insert and read: the holder keeps leaving the unique index and another
// takes the key, or the enqueue runs in a transaction whose snapshot does
// not see the holder (REPEATABLE READ). The enqueue can be retried, in a
// new transaction.
var ErrUniqueContention = errors.New("gotasks: the unique key is held by a task that cannot be read (contention, or a transaction that does not see it)")

// insertUnique inserts rs on q, skipping the tasks whose unique key is
// held and replacing them in rs with their holders; it returns the tasks
// it inserted. A holder that leaves the index between the insert and the
// read of it makes another round.
func (b *Backend) insertUnique(ctx context.Context, q querier, rs []*tasks.RawResult, states []tasks.StatusMask, t time.Time) ([]*tasks.RawResult, error) {
	var fresh []*tasks.RawResult
	pending := make([]int, len(rs))
	for i := range rs {
		pending[i] = i
	}
	// Insert in the order of the unique keys (stable: of rs among equal
	// keys, so the first of rs still wins): two batches that hold some
	// keys in common, uncommitted, then wait on each other's keys would
	// deadlock on PostgreSQL, where ON CONFLICT waits for an uncommitted
	// holder. The rounds keep this order; results map back by id.
	sort.SliceStable(pending, func(a, b int) bool { return rs[pending[a]].UniqueKey < rs[pending[b]].UniqueKey })
	for round := 1; ; round++ {
		batch, st := make([]*tasks.RawResult, len(pending)), make([]tasks.StatusMask, len(pending))
		for j, i := range pending {
			batch[j], st[j] = rs[i], states[i]
		}
		inserted, err := b.store.insertUnique(ctx, q, batch, st, t)
		if err != nil {
			return nil, b.wrapErr("enqueue", err)
		}
		var missing []int
		var keys []string
		for _, i := range pending {
			if inserted[rs[i].ID] {
				fresh = append(fresh, rs[i])
			} else {
				missing = append(missing, i)
				keys = append(keys, rs[i].UniqueKey)
			}
		}
		if len(missing) == 0 {
			return fresh, nil
		}
		holders, err := b.store.uniqueHolders(ctx, q, keys)
		if err != nil {
			return nil, b.wrapErr("enqueue", err)
		}
		pending = pending[:0]
		for _, i := range missing {
			if h := holders[rs[i].UniqueKey]; h != nil {
				rs[i] = h.RawResult.Clone()
			} else {
				pending = append(pending, i)
			}
		}
		if len(pending) == 0 {
			return fresh, nil
		}
		if round == uniqueRounds {
			return nil, fmt.Errorf("gotasks enqueue: task %q: %w", rs[pending[0]].TaskName, ErrUniqueContention)
		}
	}
}

// checkRequest rejects what the database would reject less clearly.
func checkRequest(req *tasks.EnqueueRequest) error {
	for _, s := range []string{req.ID, req.TaskName, req.Queue, req.VerboseName, req.Creator} {
		if strings.IndexByte(s, 0) >= 0 {
			return fmt.Errorf("%w: task %q: NUL bytes cannot be stored", tasks.ErrInvalidTask, req.TaskName)
		}
	}
	if len(req.ID) == 0 || len(req.ID) >= 64 {
		return fmt.Errorf("%w: id %q must be 1-63 characters", tasks.ErrInvalidTask, req.ID)
	}
	if err := tasks.CheckMetadata(req.Metadata); err != nil {
		return fmt.Errorf("task %q: %w", req.TaskName, err)
	}
	return nil
}

// copyThreshold is the batch size from which EnqueueMany uses a bulk load
// where the store has one (featCopy: COPY on PostgreSQL), outside a
// caller's transaction: a few more round trips, but far less server time
// per row than INSERT … SELECT unnest.
const copyThreshold = 1000

func (b *Backend) insertAutocommit(ctx context.Context, rs []*tasks.RawResult, t time.Time) error {
	if b.has(featCopy) && len(rs) >= copyThreshold {
		if err := b.store.copyIn(ctx, rs, t); !errors.Is(err, errNoCopy) {
			return b.wrapErr("enqueue", err)
		}
	}
	defer b.writeLock()()
	return b.insert(ctx, b.db.DB, rs, t)
}

// insert inserts rs, enqueued at t, on q in one statement.
func (b *Backend) insert(ctx context.Context, q querier, rs []*tasks.RawResult, t time.Time) error {
	return b.wrapErr("enqueue", b.store.insert(ctx, q, rs, t))
}
