package database

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Flow control: limits on how many tasks of a queue run or start.
//
//   - A worker's per-queue concurrency (WorkerConfig.QueueConcurrency): at
//     most N of this worker's slots run tasks of the queue. The fetcher
//     counts the tasks of each capped queue it holds (claimed and not yet
//     recorded) and passes the room left to the claim.
//   - A global limit (SetQueueLimit): at most N tasks of the queue RUNNING at
//     once across every worker of the backend (claimed ahead counts as
//     RUNNING).
//   - A rate limit (SetQueueRateLimit): at most N tasks of the queue claimed
//     per period across every worker, in fixed windows: a window starts at
//     the first claim after the previous window ended and admits N claims.
//
// A claim round with none of them runs the plain claim statement, after one
// probe of gotasks_queue (flowActive). Otherwise it runs claimFlow: one
// transaction (PostgreSQL: READ COMMITTED; SQLite: its write transaction)
// that locks the rows of the limited queues the worker claims from, paused
// or not (PostgreSQL: FOR UPDATE, under a lock timeout), counts their
// RUNNING tasks, claims from each limited queue at most the room it has
// left (one claim statement per queue, in name order; none from a paused
// one), then from the other queues, and advances the rate windows.

// SetQueueLimit sets the global limit of queue: at most maxRunning of its
// tasks RUNNING at once across all workers of this backend, from the next
// claim of each worker of this process and within a second (flowRecheck)
// for the others; 0 removes the limit. Tasks already running are not
// affected (a lower limit is reached as they finish). It wakes idle
// workers.
func (b *Backend) SetQueueLimit(ctx context.Context, queue string, maxRunning int) error {
	if err := checkQueueName(queue); err != nil {
		return err
	}
	if maxRunning < 0 {
		return fmt.Errorf("%w: queue limit %d is negative", ErrBadFlowLimit, maxRunning)
	}
	unlock := b.writeLock()
	err := b.store.setQueueLimit(ctx, b.db.DB, queue, maxRunning)
	unlock()
	b.flowNoneAt.Store(0) // probe again at the next claim
	if err != nil {
		return b.wrapErr("set queue limit", err)
	}
	b.hub.wake()
	return nil
}

// SetQueueRateLimit sets the rate limit of queue: at most n of its tasks
// start per period across all workers of this backend, counted in fixed
// windows of length per (a window starts at the first claim after the
// previous one ended): any window admits at most n starts, so any interval
// of length per sees at most 2n. n = 0 removes the limit. Starts are
// counted when tasks are claimed (a task claimed ahead and then released
// still counts), by the clocks of the claiming workers' hosts.
func (b *Backend) SetQueueRateLimit(ctx context.Context, queue string, n int, per time.Duration) error {
	if err := checkQueueName(queue); err != nil {
		return err
	}
	if n < 0 || (n > 0 && per < time.Millisecond) {
		return fmt.Errorf("%w: rate limit %d per %v (n >= 0, period >= 1ms)", ErrBadFlowLimit, n, per)
	}
	if n == 0 {
		per = 0
	}
	unlock := b.writeLock()
	err := b.store.setQueueRate(ctx, b.db.DB, queue, n, per)
	unlock()
	b.flowNoneAt.Store(0) // probe again at the next claim
	if err != nil {
		return b.wrapErr("set queue rate limit", err)
	}
	b.hub.wake()
	return nil
}

// ErrBadFlowLimit is returned for a negative limit or a rate period under a
// millisecond.
var ErrBadFlowLimit = errors.New("gotasks: bad queue limit")

// flowRecheck is how long the answer "no queue has a limit" is trusted
// before gotasks_queue is probed again: the plain claim rounds of a busy
// worker skip the probe's round trip, and a limit set by another process
// applies within flowRecheck (one set through this Backend at once).
const flowRecheck = time.Second

// flowActive reports whether any queue of the backend has a global or rate
// limit: a probe of gotasks_queue, or no probe while an earlier probe found
// none less than flowRecheck ago (b.flowNoneAt).
func (b *Backend) flowActive(ctx context.Context) (bool, error) {
	if at := b.flowNoneAt.Load(); at != 0 && time.Since(time.Unix(0, at)) < flowRecheck {
		return false, nil
	}
	ok, err := b.store.flowActive(ctx, b.db.DB)
	if err != nil {
		return false, b.wrapErr("claim", err)
	}
	if ok {
		b.flowNoneAt.Store(0)
	} else {
		b.flowNoneAt.Store(time.Now().UnixNano())
	}
	return ok, nil
}

// claimFlow is the claim of a round with limits: up to limit due READY
// tasks become RUNNING under workerID, none beyond a queue's room. local
// caps queues for this worker (queue → tasks it may still claim from it;
// nil: none). global: some queue of the backend has a global or rate
// limit (flowActive); then the limited queues this worker claims from
// (include/exclude) are read and locked first. Every statement runs in one
// transaction (PostgreSQL: READ COMMITTED, so that the counts after the
// lock see every claim committed before it; SQLite: the write
// transaction): a statement that fails rolls back the claims of the ones
// before it, and no row is left RUNNING without a worker that knows it.
// planTag is appended to each claim statement. Rows come back in claim
// order; the order across queues holds within each statement only (the
// limited queues are claimed first, in name order).
func (b *Backend) claimFlow(ctx context.Context, planTag string, limit int, workerID string,
	include, exclude []string, local map[string]int, global bool) (_ []*row, err error) {
	unlock := b.writeLock()
	defer unlock()
	tx, err := b.db.DB.BeginTx(ctx, b.store.flowTxOptions())
	if err != nil {
		return nil, b.wrapErr("claim", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	var (
		db querier = tx
		qs []queueFlow
	)
	if global {
		if qs, err = b.store.flowLock(ctx, tx, include, exclude); err != nil {
			return nil, b.wrapErr("claim", err)
		}
	}
	// The time of the claim, taken once the locks are held: it opens rate
	// windows and stamps the claimed rows, in the order the lock grants.
	at := now()
	var counted []string
	for _, q := range qs {
		if q.maxRunning.Valid {
			counted = append(counted, q.name)
		}
	}
	var running map[string]int
	if len(counted) > 0 {
		if running, err = b.store.flowRunning(ctx, db, counted); err != nil {
			return nil, b.wrapErr("claim", err)
		}
	}
	room := make(map[string]int, len(qs)+len(local))
	for q, n := range local {
		room[q] = n
	}
	windows := map[string]queueFlow{} // rate-limited queues, window as of at
	for _, q := range qs {
		if q.paused { // not claimed, and kept out of the other queues' claim
			room[q.name] = 0
			continue
		}
		n := math.MaxInt
		if q.maxRunning.Valid {
			n = max(0, int(q.maxRunning.Int64)-running[q.name])
		}
		if q.rateLimit.Valid && q.ratePeriod > 0 {
			if q.windowStart == nil || !at.Before(q.windowStart.Add(q.ratePeriod)) {
				q.windowStart, q.windowCount = &at, 0
			}
			n = min(n, max(0, int(q.rateLimit.Int64)-q.windowCount))
			windows[q.name] = q
		}
		if l, ok := room[q.name]; ok {
			n = min(n, l)
		}
		room[q.name] = n
	}
	limited := make([]string, 0, len(room))
	for q := range room {
		limited = append(limited, q)
	}
	slices.Sort(limited)
	var out []*row
	left := limit
	for _, q := range limited {
		n := min(room[q], left)
		if n <= 0 || !selectedQueue(q, include, exclude) {
			continue
		}
		one := []string{q}
		rs, err := b.store.claim(ctx, db, b.store.claimQuery(one, nil)+planTag, at, n, workerID, one, nil)
		if err != nil {
			return nil, b.wrapErr("claim", err)
		}
		out = append(out, rs...)
		left -= len(rs)
		if w, ok := windows[q]; ok && len(rs) > 0 {
			if err := b.store.flowSetWindow(ctx, db, q, *w.windowStart, w.windowCount+len(rs)); err != nil {
				return nil, b.wrapErr("claim", err)
			}
		}
	}
	if left > 0 && !allLimited(include, room) {
		// The other queues: every limited queue this worker could claim
		// from, paused ones included, is excluded (it is locked, so none
		// is resumed or unlimited meanwhile). With no limited queue, this
		// is the plain claim statement.
		excl := append(slices.Clone(exclude), limited...)
		rs, err := b.store.claim(ctx, db, b.store.claimQuery(include, excl)+planTag, at, left, workerID, include, excl)
		if err != nil {
			return nil, b.wrapErr("claim", err)
		}
		out = append(out, rs...)
	}
	if err = tx.Commit(); err != nil {
		return nil, b.wrapErr("claim", err)
	}
	sortClaimOrder(out)
	return out, nil
}

// selectedQueue reports whether a worker claiming include (empty: all)
// minus exclude claims from q.
func selectedQueue(q string, include, exclude []string) bool {
	return (len(include) == 0 || slices.Contains(include, q)) && !slices.Contains(exclude, q)
}

// allLimited reports whether every queue of an explicit include list is
// limited (in room): the claim of the other queues would find none.
func allLimited(include []string, room map[string]int) bool {
	if len(include) == 0 {
		return false
	}
	for _, q := range include {
		if _, ok := room[q]; !ok {
			return false
		}
	}
	return true
}
