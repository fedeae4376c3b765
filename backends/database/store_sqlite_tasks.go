package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotasks/gotasks/tasks"
)

// sqliteStore's statements other than the worker's: enqueue, results,
// prune, schema.

// errUnsupported reports a statement the store's database does not have
// (see the features).
var errUnsupported = errors.New("not supported by this database")

// sqliteInsert inserts the rows of a JSON array in one statement: one
// parameter whatever the batch size, so the statement text is constant and
// SQLite parses the batch in C rather than binding thousands of parameters.
// Metadata ($[12]) is the JSON text of the object as a string, or null.
const sqliteInsert = `INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after,
	enqueued_at, max_attempts, timeout_ms, verbose_name, creator, repeat_ms, repeat_until, metadata)
SELECT j.value->>'$[0]', j.value->>'$[1]', 'READY', j.value->>'$[2]', j.value->>'$[3]', j.value->>'$[4]', $2,
	j.value->>'$[5]', $3, j.value->>'$[6]', j.value->>'$[7]', j.value->>'$[8]', j.value->>'$[9]',
	j.value->>'$[10]', j.value->>'$[11]', j.value->>'$[12]'
FROM jsonb_each($1) AS j`

func (s *sqliteStore) insert(ctx context.Context, q querier, rs []*tasks.RawResult, at time.Time) error {
	rowsJSON := make([][]any, len(rs))
	for i, r := range rs {
		var md any // NULL
		if j := metadataJSON(r.Metadata); j != "" {
			md = j
		}
		rowsJSON[i] = []any{r.ID, r.TaskName, string(r.Args), r.Priority, r.Queue, s.ts(r.RunAfter),
			r.MaxAttempts, r.Timeout.Milliseconds(), r.VerboseName, r.Creator, r.Repeat.Milliseconds(),
			s.tsPtr(r.RepeatUntil), md}
	}
	payload, err := json.Marshal(rowsJSON)
	if err != nil {
		return fmt.Errorf("encode rows: %w", err)
	}
	_, err = s.sq(q).ExecContext(ctx, sqliteInsert, string(payload), s.backend(), s.ts(at))
	return err
}

// sqliteInsertUnique is sqliteInsert with unique keys ($[13]) and statuses
// ($[14]), null for none: a row whose key is held is skipped. It returns
// the ids it inserted. (WHERE true: SQLite's parser needs a WHERE before
// ON CONFLICT in an INSERT … SELECT.)
const sqliteInsertUnique = `INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after,
	enqueued_at, max_attempts, timeout_ms, verbose_name, creator, repeat_ms, repeat_until, metadata,
	unique_key, unique_states)
SELECT j.value->>'$[0]', j.value->>'$[1]', 'READY', j.value->>'$[2]', j.value->>'$[3]', j.value->>'$[4]', $2,
	j.value->>'$[5]', $3, j.value->>'$[6]', j.value->>'$[7]', j.value->>'$[8]', j.value->>'$[9]',
	j.value->>'$[10]', j.value->>'$[11]', j.value->>'$[12]', j.value->>'$[13]', j.value->>'$[14]'
FROM jsonb_each($1) AS j WHERE true
ON CONFLICT (backend, unique_key) WHERE ` + uniquePredicate + ` DO NOTHING
RETURNING id`

func (s *sqliteStore) insertUnique(ctx context.Context, q querier, rs []*tasks.RawResult, states []tasks.StatusMask, at time.Time) (map[string]bool, error) {
	rowsJSON := make([][]any, len(rs))
	for i, r := range rs {
		var md, key, mask any // NULL
		if j := metadataJSON(r.Metadata); j != "" {
			md = j
		}
		if r.UniqueKey != "" {
			key, mask = r.UniqueKey, int(states[i])
		}
		rowsJSON[i] = []any{r.ID, r.TaskName, string(r.Args), r.Priority, r.Queue, s.ts(r.RunAfter),
			r.MaxAttempts, r.Timeout.Milliseconds(), r.VerboseName, r.Creator, r.Repeat.Milliseconds(),
			s.tsPtr(r.RepeatUntil), md, key, mask}
	}
	payload, err := json.Marshal(rowsJSON)
	if err != nil {
		return nil, fmt.Errorf("encode rows: %w", err)
	}
	rows, err := s.sq(q).QueryContext(ctx, sqliteInsertUnique, string(payload), s.backend(), s.ts(at))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make(map[string]bool, len(rs))
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

// sqliteUniqueHolders selects the rows holding unique keys. $1 backend, $2
// the keys as a JSON array.
const sqliteUniqueHolders = `SELECT ` + resultColumns + ` FROM gotasks_task
WHERE backend = $1 AND unique_key IN (SELECT value FROM json_each($2)) AND ` + uniquePredicate

func (s *sqliteStore) uniqueHolders(ctx context.Context, q querier, keys []string) (map[string]*row, error) {
	rows, err := s.sq(q).QueryContext(ctx, sqliteUniqueHolders, s.backend(), jsonArray(keys))
	if err != nil {
		return nil, err
	}
	rs, err := scanResults(rows)
	if err != nil {
		return nil, err
	}
	return holdersByKey(rs), nil
}

// copyIn: SQLite has no bulk load (no featCopy); insert is as fast.
func (s *sqliteStore) copyIn(context.Context, []*tasks.RawResult, time.Time) error { return errNoCopy }

// insertPgx: a pgx transaction is PostgreSQL's.
func (s *sqliteStore) insertPgx(context.Context, pgx.Tx, []*tasks.RawResult, time.Time) error {
	return fmt.Errorf("a pgx transaction on a SQLite backend: %w", errUnsupported)
}

// copyInTx: SQLite has no bulk load (no featCopy).
func (s *sqliteStore) copyInTx(context.Context, pgx.Tx, []*tasks.RawResult, time.Time) error {
	return fmt.Errorf("a pgx transaction on a SQLite backend: %w", errUnsupported)
}

func (s *sqliteStore) get(ctx context.Context, q querier, id string) (*row, error) {
	return getRow(ctx, s.sq(q), id, s.backend())
}

// pruneFilter returns the conditions and arguments of a prune phase: $3 the
// queues when filtered.
func (s *sqliteStore) pruneFilter(ph prunePhase, queues []string) (string, []any) {
	where := pruneWhere(ph)
	args := []any{s.backend(), s.ts(ph.cutoff)}
	if len(queues) > 0 {
		where += ` AND queue IN (SELECT value FROM json_each($3))`
		args = append(args, jsonArray(queues))
	}
	return where, args
}

// pruneBatch needs no row locks: SQLite's writers take turns.
func (s *sqliteStore) pruneBatch(ctx context.Context, q querier, ph prunePhase, queues []string, limit int) (PruneReport, error) {
	where, args := s.pruneFilter(ph, queues)
	lim := fmt.Sprintf("$%d", len(args)+1)
	args = append(args, limit)
	stmt := `DELETE FROM gotasks_task WHERE id IN (
	` + pruneSelectSQL(where, lim, "") + `)
RETURNING ` + countedColumns
	_, d, err := s.countedIDs(ctx, q, -1, []string{stmt}, args...)
	if err != nil {
		return PruneReport{}, err
	}
	var rep PruneReport
	for k, n := range d {
		if err := rep.add(string(k.status), -n); err != nil {
			return PruneReport{}, err
		}
	}
	return rep, nil
}

func (s *sqliteStore) pruneCount(ctx context.Context, q querier, ph prunePhase, queues []string) (PruneReport, error) {
	where, args := s.pruneFilter(ph, queues)
	return queryPruned(ctx, q, pruneCountSQL(where), args, true)
}

func (s *sqliteStore) appliedMigrations(ctx context.Context, q querier) ([]string, error) {
	return appliedMigrations(ctx, q)
}

// advisoryLock: SQLite has none (no featAdvisoryLock); migrations use bun's
// lock table.
func (s *sqliteStore) advisoryLock(context.Context, *sql.Conn, int64) (func(context.Context), error) {
	return nil, fmt.Errorf("advisory lock: %w", errUnsupported)
}

// claimTurn: SQLite has one writer at a time already (no featClaimTurns).
func (s *sqliteStore) claimTurn(context.Context, querier) error {
	return fmt.Errorf("claim turn: %w", errUnsupported)
}

// listen: SQLite has no notifications across processes (no featListen).
func (s *sqliteStore) listen(context.Context, listener) error {
	return fmt.Errorf("listen: %w", errUnsupported)
}
