package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// SQLite counts its finished tasks in gotasks_count (migration
// 20261206000001_counts) instead of indexing them by queue and status: each
// statement that moves a task into or out of a finished status runs in a
// transaction with one statement that adds its changes to the counters.
// Triggers would keep the counters as well, but a trigger runs a
// sub-program for every row the claim and the completion update, which
// cost more than the index it replaced (issue 17, docs/performance.md).

// countKey is one counter: the finished tasks of a queue in a status.
type countKey struct {
	queue  string
	status tasks.Status
}

// countDeltas are changes to the counters, by queue and status.
type countDeltas map[countKey]int64

// add counts n more tasks of queue in status (fewer when n < 0); statuses
// other than the finished ones are not counted.
func (d countDeltas) add(queue string, status tasks.Status, n int64) {
	if status.Finished() && n != 0 {
		d[countKey{queue, status}] += n
	}
}

// addCountsSQL adds a JSON array of [queue, status, n] to the counters. $1
// backend, $2 the array. The WHERE clause lets SQLite parse the ON CONFLICT
// of an INSERT from a SELECT.
const addCountsSQL = `INSERT INTO gotasks_count (backend, queue, status, n)
SELECT $1, j.value->>'$[0]', j.value->>'$[1]', j.value->>'$[2]' FROM jsonb_each($2) AS j WHERE true
ON CONFLICT (backend, queue, status) DO UPDATE SET n = n + excluded.n`

// addCounts writes d to the counters through q.
func (s *sqliteStore) addCounts(ctx context.Context, q querier, d countDeltas) error {
	vals := make([][3]any, 0, len(d))
	for k, n := range d {
		if n != 0 {
			vals = append(vals, [3]any{k.queue, string(k.status), n})
		}
	}
	if len(vals) == 0 {
		return nil
	}
	payload, err := json.Marshal(vals)
	if err != nil {
		return fmt.Errorf("encode counts: %w", err)
	}
	if _, err := s.sq(q).ExecContext(ctx, addCountsSQL, s.backend(), string(payload)); err != nil {
		return fmt.Errorf("count finished tasks: %w", err)
	}
	return nil
}

// txBeginner is a querier that can begin a transaction: the database or
// one of its connections, not a transaction already begun.
type txBeginner interface {
	BeginTx(ctx context.Context, opts *sql.TxOptions) (*sql.Tx, error)
}

// counted runs fn, a statement that changes tasks, and adds the counter
// changes it reports in the same transaction: one begun here on the
// database, or, on a single connection that cannot begin one (a
// transaction already begun: the worker's completion with follow-up
// tasks, an application's transaction or connection), a savepoint, so
// that an error undoes both. Where fn runs its statements through the
// statement cache, prepare names them, to be prepared before the
// transaction begins. On an error, whatever fn reported did not happen
// (or, if SQLite rolled the caller's whole transaction back, the error
// says so).
func (s *sqliteStore) counted(ctx context.Context, q querier, fn func(q querier) (countDeltas, error), prepare ...string) error {
	s.stmts.warm(ctx, q, append(prepare, addCountsSQL)...)
	b, ok := q.(txBeginner)
	if !ok {
		return s.countedInSavepoint(ctx, q, fn)
	}
	tx, err := b.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	d, err := fn(tx)
	if err != nil {
		return err
	}
	if err := s.addCounts(ctx, tx, d); err != nil {
		return err
	}
	return tx.Commit()
}

// countedInSavepoint is counted in a savepoint of q's transaction (or, on
// a connection outside one, in the transaction the savepoint begins). q
// must be one connection: a savepoint on a pool would hold one
// connection while the statements ran on others.
func (s *sqliteStore) countedInSavepoint(ctx context.Context, q querier, fn func(q querier) (countDeltas, error)) error {
	one := q
	if p, ok := q.(plainQuerier); ok { // an application's transaction or connection
		one = p.querier
	}
	switch one.(type) {
	case *sql.Tx, *sql.Conn:
	default:
		return fmt.Errorf("gotasks: counted change through %T, neither a database, a transaction nor a connection", one)
	}
	if _, err := q.ExecContext(ctx, "SAVEPOINT gotasks_counted"); err != nil {
		return err
	}
	d, err := fn(q)
	if err == nil {
		err = s.addCounts(ctx, q, d)
	}
	// The end of the savepoint runs even if ctx ends now: left open, it
	// would keep SQLite's write lock on a connection outside a transaction.
	end := context.WithoutCancel(ctx)
	if err == nil {
		if _, err = q.ExecContext(end, "RELEASE gotasks_counted"); err == nil {
			return nil
		}
	}
	if _, rerr := q.ExecContext(end, "ROLLBACK TO gotasks_counted"); rerr != nil {
		// Some errors (an interrupt, a full disk) make SQLite roll the
		// whole transaction back, savepoint and all.
		return errors.Join(err, fmt.Errorf("gotasks: the transaction was rolled back: %w", rerr))
	}
	if _, rerr := q.ExecContext(end, "RELEASE gotasks_counted"); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// queryCounted runs a statement that returns id, queue and status for each
// task it changed, and returns the ids; sign is +1 when the statement
// finished the tasks (the status after), -1 when it took finished tasks
// away (the status before: a delete, a retry).
func queryCounted(ctx context.Context, q querier, d countDeltas, sign int64, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id, queue, status string
		if err := rows.Scan(&id, &queue, &status); err != nil {
			return nil, err
		}
		d.add(queue, tasks.Status(status), sign)
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// countedIDs runs stmts, each returning id, queue and status like
// queryCounted (sign as there), with args, in one counted transaction
// (see counted). It returns the ids and the counters' changes, none on an
// error.
func (s *sqliteStore) countedIDs(ctx context.Context, q querier, sign int64, stmts []string, args ...any) ([]string, countDeltas, error) {
	var (
		ids []string
		d   countDeltas
	)
	err := s.counted(ctx, q, func(q querier) (countDeltas, error) {
		ids, d = nil, countDeltas{}
		for _, stmt := range stmts {
			got, err := queryCounted(ctx, q, d, sign, stmt, args...)
			if err != nil {
				return nil, err
			}
			ids = append(ids, got...)
		}
		return d, nil
	})
	if err != nil {
		return nil, nil, err
	}
	return ids, d, nil
}

// sqliteCountsSQL reads the counters ($1 backend, $2 a queue, or the
// empty string for all). Counters that fell to zero stay as rows with
// n = 0; one below zero (rows of an older worker's, not counted, then
// deleted) reads as none until RecountFinished.
const sqliteCountsSQL = `SELECT queue, status, n FROM gotasks_count
	WHERE backend = $1 AND ($2 = '' OR queue = $2) AND n > 0`

// finishedCounts reads the counters: SQLite counts finished tasks as they
// finish (see above) rather than by scanning an index.
func (s *sqliteStore) finishedCounts(ctx context.Context, q querier, queue string) (map[string]map[tasks.Status]int64, error) {
	return scanCounts(ctx, q, sqliteCountsSQL, s.backend(), queue)
}

// sqliteQueueNamesSQL lists the queues of the backend's tasks: those with
// finished tasks from the counters, the others through the claim and
// running indexes. $1 backend.
const sqliteQueueNamesSQL = `SELECT queue FROM gotasks_count WHERE backend = $1 AND n > 0
UNION
SELECT queue FROM gotasks_task WHERE status = 'READY' AND backend = $1
UNION
SELECT queue FROM gotasks_task WHERE status = 'RUNNING' AND backend = $1`

func (s *sqliteStore) queueNames(ctx context.Context, q querier) ([]string, error) {
	names, err := queryIDs(ctx, q, sqliteQueueNamesSQL, s.backend())
	slices.SortFunc(names, strings.Compare)
	return names, err
}

// countedColumns are what SQLite's counted statements return (see
// queryCounted).
const countedColumns = "id, queue, status"

// sqliteCancelSQL and sqliteDeleteFinishedSQL are cancelManySQL and
// deleteFinishedSQL returning what the counters need.
var (
	sqliteCancelSQL         = cancelManySQL(sqliteForms, countedColumns)
	sqliteDeleteFinishedSQL = deleteFinishedSQL(sqliteForms, countedColumns)
)

func (s *sqliteStore) cancelMany(ctx context.Context, q querier, ids []string, at time.Time) ([]string, error) {
	done, _, err := s.countedIDs(ctx, q, +1, []string{sqliteCancelSQL}, textTime(at), s.backend(), jsonArray(ids))
	return done, err
}

func (s *sqliteStore) deleteFinished(ctx context.Context, q querier, ids []string) ([]string, error) {
	done, _, err := s.countedIDs(ctx, q, -1, []string{sqliteDeleteFinishedSQL}, s.backend(), jsonArray(ids))
	return done, err
}

// sqliteRetrySQLs retry the FAILED tasks among the ids, then the
// CANCELLED ones (see retrySet), each returning the status it took its
// tasks from: SQLite's RETURNING gives only the rows as they are after the
// change, and a read before it would make a deferred transaction upgrade
// to a write (SQLITE_BUSY_SNAPSHOT if another process wrote meanwhile).
// $1 now, $2 backend, $3 the ids.
var sqliteRetrySQLs = func() []string {
	var out []string
	for _, st := range []tasks.Status{tasks.StatusFailed, tasks.StatusCancelled} {
		out = append(out, `UPDATE gotasks_task SET `+retrySet("MAX")+`
	WHERE backend = $2 AND id IN (SELECT value FROM json_each($3)) AND status = '`+string(st)+`'
	RETURNING id, queue, '`+string(st)+`'`)
	}
	return out
}()

func (s *sqliteStore) retry(ctx context.Context, q querier, ids []string, at time.Time) ([]string, error) {
	done, _, err := s.countedIDs(ctx, q, -1, sqliteRetrySQLs, textTime(at), s.backend(), jsonArray(ids))
	return done, err
}

// sqliteRecountSQL counts the backend's finished tasks afresh: the
// statements the migration's fill runs, for one backend. After a hand
// edit of the status column the counters are off until this runs (see
// docs/database.md). $1 backend.
var sqliteRecountSQL = [...]string{
	`DELETE FROM gotasks_count WHERE backend = $1`,
	`INSERT INTO gotasks_count (backend, queue, status, n)
	SELECT backend, queue, status, count(*) FROM gotasks_task
	WHERE backend = $1 AND status IN ` + finishedStatuses + `
	GROUP BY backend, queue, status`,
}

// recountFinished replaces the backend's counters by a count of its rows,
// in one transaction.
func (s *sqliteStore) recountFinished(ctx context.Context, q querier) error {
	return s.counted(ctx, q, func(q querier) (countDeltas, error) {
		for _, stmt := range sqliteRecountSQL {
			if _, err := q.ExecContext(ctx, stmt, s.backend()); err != nil {
				return nil, err
			}
		}
		return nil, nil
	})
}
