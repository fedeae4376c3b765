package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// SQL text the two stores share: statements and fragments that are the
// same on both dialects, and the helpers that run them.

// resultColumns is the column list every query that returns results
// selects, in the order scanRow reads.
const resultColumns = `id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, max_attempts, timeout_ms, worker_ids, errors,
	return_value, verbose_name, creator, repeat_ms, repeat_until, worker_id, metadata, unique_key`

// uniquePredicate is the predicate of the unique index of unique tasks
// (migration 20261205000001_unique, same text on both dialects): a row is
// in the index while its status is among its unique_states. An
// ON CONFLICT clause names it to infer the index.
const uniquePredicate = `unique_key IS NOT NULL AND (unique_states & CASE status WHEN 'READY' THEN 1 WHEN 'RUNNING' THEN 2
        WHEN 'SUCCESSFUL' THEN 4 WHEN 'FAILED' THEN 8 WHEN 'CANCELLED' THEN 16 ELSE 0 END) <> 0`

// metadataJSON encodes a task's metadata as the metadata column stores it:
// a JSON object of strings, or "" (stored as NULL) when there is none.
func metadataJSON(md map[string]string) string {
	if len(md) == 0 {
		return ""
	}
	j, _ := json.Marshal(md) // a map of strings always encodes
	return string(j)
}

// prefixed returns resultColumns with every column qualified by p.
func prefixed(p string) string {
	cols := strings.Split(resultColumns, ",")
	for i, c := range cols {
		cols[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// getSQL selects one result of a backend. $1 id, $2 backend.
const getSQL = `SELECT ` + resultColumns + ` FROM gotasks_task WHERE id = $1 AND backend = $2`

// appliedMigrationsSQL lists the migrations bun's migrator recorded.
const appliedMigrationsSQL = `SELECT name FROM ` + migrationsTable

// pruneWhere returns the conditions of a prune phase shared by the dry run
// and the delete, before the queue filter: $1 backend, $2 cutoff.
//
// The first term repeats the predicate of the partial index
// gotasks_task_finished_idx word for word: SQLite uses a partial index only
// when the query's WHERE contains its terms, and on both databases the
// index then serves the ORDER BY finished_at of the batches.
func pruneWhere(ph prunePhase) string {
	lits := make([]string, len(ph.statuses))
	for i, s := range ph.statuses {
		lits[i] = "'" + string(s) + "'" // finished statuses: constants without quotes
	}
	return `status IN ('SUCCESSFUL', 'FAILED', 'CANCELLED') AND status IN (` + strings.Join(lits, ", ") + `)
	AND finished_at < $2 AND backend = $1`
}

// pruneSelectSQL returns the selection of one prune batch's ids, oldest
// first: where, then the limit parameter lim, then lock (a locking clause,
// or empty).
func pruneSelectSQL(where, lim, lock string) string {
	return `SELECT id FROM gotasks_task
	WHERE ` + where + `
	ORDER BY finished_at
	LIMIT ` + lim + lock
}

// pruneCountSQL counts a prune phase's rows by status.
func pruneCountSQL(where string) string {
	return `SELECT status, count(*) FROM gotasks_task WHERE ` + where + `
	GROUP BY status`
}

// queryPruned runs a prune statement that returns one status per deleted
// row (count false) or status and count pairs (count true) and adds them
// up.
func queryPruned(ctx context.Context, q querier, query string, args []any, count bool) (PruneReport, error) {
	var rep PruneReport
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return rep, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			status string
			n      int64 = 1
		)
		dest := []any{&status}
		if count {
			dest = append(dest, &n)
		}
		if err := rows.Scan(dest...); err != nil {
			return PruneReport{}, err
		}
		if err := rep.add(status, n); err != nil {
			return PruneReport{}, err
		}
	}
	if err := rows.Err(); err != nil {
		return PruneReport{}, err
	}
	return rep, rows.Close()
}

// appliedMigrations runs appliedMigrationsSQL.
func appliedMigrations(ctx context.Context, q querier) ([]string, error) {
	rows, err := q.QueryContext(ctx, appliedMigrationsSQL)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		names = append(names, n)
	}
	return names, rows.Err()
}

// rescueCondition selects, among a backend's RUNNING rows, those to rescue
// (see Backend.rescue): $4 heartbeat cutoff, $5 run cutoff, $6 self, $7
// orphans of.
//
// A row without a heartbeat (a claim always stamps one: such a row was
// written by other means, and nothing would ever refresh it) has its lease
// counted from the start of its attempt, last_attempted_at or else
// started_at: it is rescued once that is older than the heartbeat cutoff.
// The run time is measured from the same start. A row with neither (a
// RUNNING row written by hand with no time at all) gives no time to measure
// and is left alone. A NULL worker id is not self.
const rescueCondition = `((COALESCE(heartbeat_at, last_attempted_at, started_at) < $4 AND (worker_id <> $6 OR worker_id IS NULL))
		OR COALESCE(last_attempted_at, started_at) < $5 OR worker_id = $7)`

// rescueMessage is the message of the WorkerLost error a rescue records
// ($5 run cutoff).
const rescueMessage = `CASE WHEN COALESCE(last_attempted_at, started_at) < $5 THEN 'task ran longer than the maximum run time on worker '
			ELSE 'worker stopped heartbeating while running the task: ' END || COALESCE(worker_id, '?')`

// outcomeErrorJSON encodes an outcome's new error ("" when none).
func outcomeErrorJSON(o *outcome) (string, error) {
	if o.newErr == nil {
		return "", nil
	}
	j, err := json.Marshal(storableError(o.newErr))
	if err != nil {
		return "", fmt.Errorf("encode error: %w", err)
	}
	return string(j), nil
}

// outcomeFinishedAt is the finish time an outcome records (zero when none).
func outcomeFinishedAt(o *outcome) time.Time {
	if o.rec.FinishedAt != nil {
		return *o.rec.FinishedAt
	}
	return time.Time{}.UTC()
}

// scanRecorded reads the ids a completion statement returns (with a second
// column it ignores).
func scanRecorded(rows *sql.Rows, n int) (map[string]bool, error) {
	defer rows.Close()
	done := make(map[string]bool, n)
	for rows.Next() {
		var id string
		var x int64
		if err := rows.Scan(&id, &x); err != nil {
			return nil, err
		}
		done[id] = true
	}
	return done, rows.Err()
}

// getRow runs getSQL and reads the row strictly (sql.ErrNoRows when there
// is none).
func getRow(ctx context.Context, q querier, id, backend string) (*row, error) {
	rows, err := q.QueryContext(ctx, getSQL, id, backend)
	if err != nil {
		return nil, err
	}
	rs, err := scanResults(rows)
	if err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, sql.ErrNoRows
	}
	return rs[0], nil
}
