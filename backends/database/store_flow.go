package database

import (
	"context"
	"database/sql"
	"strings"
	"time"
)

// The flow-control side of the store seam (flow.go): the global per-queue
// limits and rate limits kept in gotasks_queue, read and updated by the
// claim transaction of a backend that has any (Backend.claimFlow).

// flowStore runs the flow-control statements of one dialect.
type flowStore interface {
	// flowActive reports whether any queue of the backend has a global
	// limit or a rate limit: one probe of gotasks_queue (a handful of rows),
	// run before every claim to choose between the plain claim and
	// claimFlow.
	flowActive(ctx context.Context, q querier) (bool, error)
	// flowTxOptions are the options of claimFlow's transaction: on
	// PostgreSQL READ COMMITTED whatever the database's default (a
	// REPEATABLE READ snapshot taken before the lock would count RUNNING
	// tasks as they were before claims committed meanwhile).
	flowTxOptions() *sql.TxOptions
	// flowLock returns the backend's queues with a global limit or a rate
	// limit that a worker claiming include (empty: all) minus exclude
	// claims from, paused or not (queueFlow.paused), in name order, and on
	// PostgreSQL locks their rows (FOR UPDATE, waiting at most
	// flowLockTimeout) until q, a transaction, ends: claims of limited
	// queues are serialised, so that two workers never both see the same
	// free room, and no queue is resumed or has its limit changed during a
	// claim. SQLite's write transaction already serialises them.
	flowLock(ctx context.Context, q querier, include, exclude []string) ([]queueFlow, error)
	// flowRunning counts the backend's RUNNING tasks of each of queues (a
	// queue with none is absent). Run after flowLock, in its transaction,
	// it sees every claim committed before the lock was granted.
	flowRunning(ctx context.Context, q querier, queues []string) (map[string]int, error)
	// flowSetWindow stores the rate window of queue: its start and the
	// tasks claimed in it.
	flowSetWindow(ctx context.Context, q querier, queue string, start time.Time, count int) error
	// setQueueLimit sets (maxRunning > 0) or removes (0) the global limit
	// of queue, creating its gotasks_queue row when needed.
	setQueueLimit(ctx context.Context, q querier, queue string, maxRunning int) error
	// setQueueRate sets (n > 0) or removes (0) the rate limit of queue.
	setQueueRate(ctx context.Context, q querier, queue string, n int, per time.Duration) error
	// queueFlows returns the backend's queues with a limit, by name.
	queueFlows(ctx context.Context, q querier) ([]queueFlow, error)
}

// queueFlow is the flow-control state of one queue (a gotasks_queue row).
type queueFlow struct {
	name        string
	paused      bool          // the queue is paused (PauseQueue)
	maxRunning  sql.NullInt64 // global limit on RUNNING tasks
	rateLimit   sql.NullInt64 // claims per ratePeriod
	ratePeriod  time.Duration
	windowStart *time.Time // start of the current rate window (nil: none yet)
	windowCount int        // tasks claimed in the current window
}

// flowActiveSQL: $1 backend.
const flowActiveSQL = `SELECT EXISTS (SELECT 1 FROM gotasks_queue
	WHERE backend = $1 AND (max_running IS NOT NULL OR rate_limit IS NOT NULL))`

// flowLockTimeout bounds the wait of a claim for the limited queues' row
// locks (PostgreSQL): a worker stuck in its claim transaction cannot block
// every other worker's claims for ever; the claim fails and is retried.
const flowLockTimeout = "5s"

// queueFlowsSQL lists the backend's limited queues, paused or not ($1
// backend). flowLock adds the worker's queue selection before its ORDER
// BY (queueFlowsOrder), and PostgreSQL appends FOR UPDATE.
const queueFlowsSQL = `SELECT name, paused_at IS NOT NULL, max_running, rate_limit, rate_period_us,
	rate_window_start, rate_window_count
	FROM gotasks_queue
	WHERE backend = $1 AND (max_running IS NOT NULL OR rate_limit IS NOT NULL)` + queueFlowsOrder

const queueFlowsOrder = `
	ORDER BY name`

// flowQueuesSQL is queueFlowsSQL restricted to a queue selection: cond(n)
// is the condition on name for the queues of parameter $n.
func flowQueuesSQL(include, exclude []string, cond func(n int, in bool) string) (string, []any) {
	query := strings.TrimSuffix(queueFlowsSQL, queueFlowsOrder)
	var args []any
	if len(include) > 0 {
		args = append(args, include)
		query += " AND " + cond(len(args)+1, true)
	}
	if len(exclude) > 0 {
		args = append(args, exclude)
		query += " AND " + cond(len(args)+1, false)
	}
	return query + queueFlowsOrder, args
}

// flowSetWindowSQL: $1 backend, $2 queue, $3 window start, $4 count.
const flowSetWindowSQL = `UPDATE gotasks_queue SET rate_window_start = $3, rate_window_count = $4
	WHERE backend = $1 AND name = $2`

// setQueueLimitSQL: $1 backend, $2 queue, $3 the limit (NULL: none).
const setQueueLimitSQL = `INSERT INTO gotasks_queue (backend, name, max_running) VALUES ($1, $2, $3)
	ON CONFLICT (backend, name) DO UPDATE SET max_running = excluded.max_running`

// setQueueRateSQL: $1 backend, $2 queue, $3 the limit (NULL: none), $4 the
// period in microseconds. The current window is kept.
const setQueueRateSQL = `INSERT INTO gotasks_queue (backend, name, rate_limit, rate_period_us) VALUES ($1, $2, $3, $4)
	ON CONFLICT (backend, name) DO UPDATE SET rate_limit = excluded.rate_limit, rate_period_us = excluded.rate_period_us`

// scanQueueFlows reads queueFlowsSQL's rows.
func scanQueueFlows(rows *sql.Rows) ([]queueFlow, error) {
	defer rows.Close()
	var out []queueFlow
	for rows.Next() {
		var (
			f      queueFlow
			period sql.NullInt64
		)
		if err := rows.Scan(&f.name, &f.paused, &f.maxRunning, &f.rateLimit, &period, dbTime{&f.windowStart}, &f.windowCount); err != nil {
			return nil, err
		}
		f.ratePeriod = time.Duration(period.Int64) * time.Microsecond
		out = append(out, f)
	}
	return out, rows.Err()
}

// scanQueueCounts reads (queue, count) rows.
func scanQueueCounts(rows *sql.Rows) (map[string]int, error) {
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var (
			q string
			n int
		)
		if err := rows.Scan(&q, &n); err != nil {
			return nil, err
		}
		out[q] = n
	}
	return out, rows.Err()
}

// nullPositive is n as a parameter, NULL when n <= 0.
func nullPositive(n int) any {
	if n <= 0 {
		return nil
	}
	return n
}

// queryFlows runs a queue listing and scans it.
func queryFlows(ctx context.Context, q querier, query string, args ...any) ([]queueFlow, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanQueueFlows(rows)
}
