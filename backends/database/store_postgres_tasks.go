package database

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gotasks/gotasks/tasks"
)

// pgStore's statements other than the worker's: enqueue, results, prune,
// schema, notifications.

// Notification channels on PostgreSQL.
const (
	// wakeChannel carries the backend name when due tasks were enqueued.
	wakeChannel = "gotasks_wake"
	// doneChannel carries comma-separated ids of results that finished.
	doneChannel = "gotasks_done"
)

// pgInsert inserts rows given as parallel arrays (one statement whatever
// the batch size, prepared once per connection) and notifies idle workers
// in the same statement when any row is due. $1 backend, $2 enqueued_at,
// $3 now (for the notification). An empty metadata text is NULL.
const pgInsert = `WITH ins AS (
	INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
		max_attempts, timeout_ms, verbose_name, creator, repeat_ms, repeat_until, metadata)
	SELECT u.id, u.task_name, 'READY', u.args::json, u.priority, u.queue, $1::text, u.run_after, $2::timestamptz,
		u.max_attempts, u.timeout_ms, u.verbose_name, u.creator, u.repeat_ms,
		NULLIF(u.repeat_until, '0001-01-01 00:00:00+00'::timestamptz), NULLIF(u.metadata, '')::json
	FROM unnest($4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::timestamptz[], $10::int[],
		$11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::timestamptz[], $16::text[])
		AS u(id, task_name, args, priority, queue, run_after, max_attempts, timeout_ms, verbose_name, creator,
			repeat_ms, repeat_until, metadata)
	RETURNING run_after),
n AS (SELECT pg_notify('` + wakeChannel + `', $1::text) FROM ins WHERE run_after <= $3::timestamptz LIMIT 1)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)`

func (s *pgStore) insert(ctx context.Context, q querier, rs []*tasks.RawResult, at time.Time) error {
	var count, notified int64
	if err := q.QueryRowContext(ctx, pgInsert, s.insertArgs(rs, at)...).Scan(&count, &notified); err != nil {
		return err
	}
	if int(count) != len(rs) {
		return fmt.Errorf("inserted %d of %d rows", count, len(rs))
	}
	return nil
}

// pgInsertUnique is pgInsert with unique keys ($17) and statuses ($18, 0
// for none): a row whose key is held is skipped. It returns the ids it
// inserted.
const pgInsertUnique = `WITH ins AS (
	INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
		max_attempts, timeout_ms, verbose_name, creator, repeat_ms, repeat_until, metadata, unique_key, unique_states)
	SELECT u.id, u.task_name, 'READY', u.args::json, u.priority, u.queue, $1::text, u.run_after, $2::timestamptz,
		u.max_attempts, u.timeout_ms, u.verbose_name, u.creator, u.repeat_ms,
		NULLIF(u.repeat_until, '0001-01-01 00:00:00+00'::timestamptz), NULLIF(u.metadata, '')::json,
		NULLIF(u.unique_key, ''), NULLIF(u.unique_states, 0)::smallint
	FROM unnest($4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::timestamptz[], $10::int[],
		$11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::timestamptz[], $16::text[], $17::text[], $18::int[])
		AS u(id, task_name, args, priority, queue, run_after, max_attempts, timeout_ms, verbose_name, creator,
			repeat_ms, repeat_until, metadata, unique_key, unique_states)
	ON CONFLICT (backend, unique_key) WHERE ` + uniquePredicate + ` DO NOTHING
	RETURNING id, run_after),
n AS (SELECT pg_notify('` + wakeChannel + `', $1::text) FROM ins WHERE run_after <= $3::timestamptz LIMIT 1)
SELECT id, (SELECT count(*) FROM n) FROM ins`

func (s *pgStore) insertUnique(ctx context.Context, q querier, rs []*tasks.RawResult, states []tasks.StatusMask, at time.Time) (map[string]bool, error) {
	keys, masks := make([]string, len(rs)), make([]int32, len(rs))
	for i, r := range rs {
		keys[i], masks[i] = r.UniqueKey, int32(states[i])
	}
	rows, err := q.QueryContext(ctx, pgInsertUnique, append(s.insertArgs(rs, at), keys, masks)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	ids := make(map[string]bool, len(rs))
	for rows.Next() {
		var (
			id       string
			notified int64
		)
		if err := rows.Scan(&id, &notified); err != nil {
			return nil, err
		}
		ids[id] = true
	}
	return ids, rows.Err()
}

// pgUniqueHolders selects the rows holding unique keys. $1 backend, $2 keys.
const pgUniqueHolders = `SELECT ` + resultColumns + ` FROM gotasks_task
WHERE backend = $1 AND unique_key = ANY($2::text[]) AND ` + uniquePredicate

func (s *pgStore) uniqueHolders(ctx context.Context, q querier, keys []string) (map[string]*row, error) {
	rows, err := q.QueryContext(ctx, pgUniqueHolders, s.backend(), keys)
	if err != nil {
		return nil, err
	}
	rs, err := scanResults(rows)
	if err != nil {
		return nil, err
	}
	return holdersByKey(rs), nil
}

// insertPgx runs pgInsert in the application's pgx transaction.
func (s *pgStore) insertPgx(ctx context.Context, tx pgx.Tx, rs []*tasks.RawResult, at time.Time) error {
	var count, notified int64
	if err := tx.QueryRow(ctx, pgInsert, s.insertArgs(rs, at)...).Scan(&count, &notified); err != nil {
		return err
	}
	if int(count) != len(rs) {
		return fmt.Errorf("inserted %d of %d rows", count, len(rs))
	}
	return nil
}

// insertArgs returns pgInsert's parameters for rs, enqueued at at.
func (s *pgStore) insertArgs(rs []*tasks.RawResult, at time.Time) []any {
	n := len(rs)
	var (
		ids, names, args, queues, verbose, creators = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		metadata                                    = make([]string, n)
		prios, maxAtt                               = make([]int32, n), make([]int32, n)
		timeouts, repeats                           = make([]int64, n), make([]int64, n)
		runAfter, until                             = make([]time.Time, n), make([]time.Time, n)
	)
	for i, r := range rs {
		ids[i], names[i], args[i], queues[i] = r.ID, r.TaskName, string(r.Args), r.Queue
		verbose[i], creators[i] = r.VerboseName, r.Creator
		prios[i], maxAtt[i] = int32(r.Priority), int32(r.MaxAttempts)
		timeouts[i], repeats[i] = r.Timeout.Milliseconds(), r.Repeat.Milliseconds()
		runAfter[i] = r.RunAfter
		metadata[i] = metadataJSON(r.Metadata)
		if r.RepeatUntil != nil {
			until[i] = *r.RepeatUntil
		} else {
			until[i] = time.Time{}.UTC()
		}
	}
	return []any{s.backend(), at, at,
		ids, names, args, prios, queues, runAfter, maxAtt, timeouts, verbose, creators, repeats, until, metadata}
}

// errNoCopy reports a connection that cannot COPY: copyIn's caller inserts
// instead.
var errNoCopy = errors.New("COPY needs a pgx stdlib connection")

var copyColumns = []string{"id", "task_name", "status", "args", "priority", "queue", "backend", "run_after",
	"enqueued_at", "max_attempts", "timeout_ms", "verbose_name", "creator", "repeat_ms", "repeat_until", "metadata"}

// copyIn inserts rs with COPY in one transaction of its own, and notifies
// idle workers in it when a row is due.
func (s *pgStore) copyIn(ctx context.Context, rs []*tasks.RawResult, at time.Time) error {
	if !s.pgx {
		return errNoCopy
	}
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errNoCopy // a wrapped driver: use INSERT
		}
		pc := sc.Conn()
		tx, err := pc.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
		if err := s.copyInTx(ctx, tx, rs, at); err != nil {
			return err
		}
		return tx.Commit(ctx)
	})
}

// copyInTx copies rs in tx and notifies idle workers in it when a row is
// due (delivered at tx's commit).
func (s *pgStore) copyInTx(ctx context.Context, tx pgx.Tx, rs []*tasks.RawResult, at time.Time) error {
	due := false
	backend := s.backend()
	src := pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
		r := rs[i]
		due = due || !r.RunAfter.After(at)
		var until, md any
		if r.RepeatUntil != nil {
			until = *r.RepeatUntil
		}
		if j := metadataJSON(r.Metadata); j != "" {
			md = j
		}
		return []any{r.ID, r.TaskName, string(tasks.StatusReady), string(r.Args), int16(r.Priority), r.Queue,
			backend, r.RunAfter, at, int32(r.MaxAttempts), r.Timeout.Milliseconds(), r.VerboseName, r.Creator,
			r.Repeat.Milliseconds(), until, md}, nil
	})
	n, err := tx.CopyFrom(ctx, pgx.Identifier{TableName}, copyColumns, src)
	if err != nil {
		return err
	}
	if int(n) != len(rs) {
		return fmt.Errorf("copied %d of %d rows", n, len(rs))
	}
	if due {
		if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", wakeChannel, backend); err != nil {
			return err
		}
	}
	return nil
}

func (s *pgStore) get(ctx context.Context, q querier, id string) (*row, error) {
	return getRow(ctx, q, id, s.backend())
}

// pruneFilter returns the conditions and arguments of a prune phase: $3 the
// queues when filtered.
func (s *pgStore) pruneFilter(ph prunePhase, queues []string) (string, []any) {
	where := pruneWhere(ph)
	args := []any{s.backend(), ph.cutoff.UTC()}
	if len(queues) > 0 {
		where += ` AND queue = ANY($3::text[])`
		args = append(args, queues)
	}
	return where, args
}

// pruneBatch: ARRAY(…) makes the locked selection an InitPlan, evaluated
// exactly once, and the delete looks its ids up in the primary key; a join
// (USING, or IN (SELECT …)) may be planned as a hash join over a scan of the
// whole table, once per batch. SKIP LOCKED: rows a concurrent prune is
// deleting are left to it.
func (s *pgStore) pruneBatch(ctx context.Context, q querier, ph prunePhase, queues []string, limit int) (PruneReport, error) {
	where, args := s.pruneFilter(ph, queues)
	lim := fmt.Sprintf("$%d", len(args)+1)
	args = append(args, limit)
	stmt := `DELETE FROM gotasks_task WHERE id = ANY(ARRAY(
	` + pruneSelectSQL(where, lim, `
	FOR UPDATE SKIP LOCKED`) + `))
RETURNING status`
	return queryPruned(ctx, q, stmt, s.planEach(args...), false)
}

func (s *pgStore) pruneCount(ctx context.Context, q querier, ph prunePhase, queues []string) (PruneReport, error) {
	where, args := s.pruneFilter(ph, queues)
	return queryPruned(ctx, q, pruneCountSQL(where), args, true)
}

func (s *pgStore) appliedMigrations(ctx context.Context, q querier) ([]string, error) {
	return appliedMigrations(ctx, q)
}

func (s *pgStore) advisoryLock(ctx context.Context, conn *sql.Conn, key int64) (func(context.Context), error) {
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", key); err != nil {
		return nil, err
	}
	return func(ctx context.Context) {
		_, _ = conn.ExecContext(ctx, "SELECT pg_advisory_unlock($1)", key)
	}, nil
}

// listen LISTENs on one connection of the pool, which it never returns to
// the pool (it is still listening when listen returns).
func (s *pgStore) listen(ctx context.Context, l listener) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return errors.New("gotasks: LISTEN needs the pgx stdlib driver")
		}
		pc := sc.Conn()
		var stmts []string
		if l.wake != nil {
			stmts = append(stmts, "LISTEN "+wakeChannel)
		}
		if l.finished != nil {
			stmts = append(stmts, "LISTEN "+doneChannel)
		}
		if _, err := pc.Exec(ctx, strings.Join(stmts, "; ")); err != nil {
			return err
		}
		l.listening()
		backend := s.backend()
		for {
			n, err := pc.WaitForNotification(ctx)
			if err != nil {
				// The connection is still LISTENing: never return it to the pool.
				return errors.Join(err, driver.ErrBadConn)
			}
			switch {
			case n.Channel == wakeChannel && l.wake != nil:
				if n.Payload == backend {
					l.wake()
				}
			case n.Channel == doneChannel && l.finished != nil:
				l.finished(strings.Split(n.Payload, ","))
			}
		}
	})
}
