package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

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
// $3 now (for the notification).
const pgInsert = `WITH ins AS (
	INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
		max_attempts, timeout_ms, verbose_name, creator, repeat_ms, repeat_until)
	SELECT u.id, u.task_name, 'READY', u.args::json, u.priority, u.queue, $1::text, u.run_after, $2::timestamptz,
		u.max_attempts, u.timeout_ms, u.verbose_name, u.creator, u.repeat_ms,
		NULLIF(u.repeat_until, '0001-01-01 00:00:00+00'::timestamptz)
	FROM unnest($4::text[], $5::text[], $6::text[], $7::int[], $8::text[], $9::timestamptz[], $10::int[],
		$11::bigint[], $12::text[], $13::text[], $14::bigint[], $15::timestamptz[])
		AS u(id, task_name, args, priority, queue, run_after, max_attempts, timeout_ms, verbose_name, creator,
			repeat_ms, repeat_until)
	RETURNING run_after),
n AS (SELECT pg_notify('` + wakeChannel + `', $1::text) FROM ins WHERE run_after <= $3::timestamptz LIMIT 1)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)`

// Enqueue implements tasks.Backend. Inside RunInTx it inserts in the
// caller's transaction and sends TaskEnqueued after the commit.
func (b *Backend) Enqueue(ctx context.Context, req *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	out, err := b.EnqueueMany(ctx, []*tasks.EnqueueRequest{req})
	if err != nil {
		return nil, err
	}
	return out[0], nil
}

// EnqueueMany implements tasks.Backend: one INSERT statement for the whole
// batch on both dialects.
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
		out[i] = r
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
	return nil
}

// copyThreshold is the batch size from which EnqueueMany on PostgreSQL
// uses COPY (outside a caller's transaction): a few more round trips, but
// far less server time per row than INSERT … SELECT unnest.
const copyThreshold = 1000

func (b *Backend) insertAutocommit(ctx context.Context, rs []*tasks.RawResult, t time.Time) error {
	if b.dialect == Postgres && len(rs) >= copyThreshold && b.pgx {
		if err := b.copyPG(ctx, rs, t); !errors.Is(err, errNoCopy) {
			return err
		}
	}
	defer b.writeLock()()
	return b.insert(ctx, b.db.DB, rs, t)
}

var errNoCopy = errors.New("COPY needs a pgx stdlib connection")

var copyColumns = []string{"id", "task_name", "status", "args", "priority", "queue", "backend", "run_after",
	"enqueued_at", "max_attempts", "timeout_ms", "verbose_name", "creator", "repeat_ms", "repeat_until"}

// copyPG inserts rs with COPY in one transaction of its own, and notifies
// idle workers in it when a row is due.
func (b *Backend) copyPG(ctx context.Context, rs []*tasks.RawResult, t time.Time) error {
	conn, err := b.db.DB.Conn(ctx)
	if err != nil {
		return b.wrapErr("enqueue", err)
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
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
		due := false
		src := pgx.CopyFromSlice(len(rs), func(i int) ([]any, error) {
			r := rs[i]
			due = due || !r.RunAfter.After(t)
			var until any
			if r.RepeatUntil != nil {
				until = *r.RepeatUntil
			}
			return []any{r.ID, r.TaskName, string(tasks.StatusReady), string(r.Args), int16(r.Priority), r.Queue,
				b.Name(), r.RunAfter, t, int32(r.MaxAttempts), r.Timeout.Milliseconds(), r.VerboseName, r.Creator,
				r.Repeat.Milliseconds(), until}, nil
		})
		n, err := tx.CopyFrom(ctx, pgx.Identifier{TableName}, copyColumns, src)
		if err != nil {
			return err
		}
		if int(n) != len(rs) {
			return fmt.Errorf("copied %d of %d rows", n, len(rs))
		}
		if due {
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", wakeChannel, b.Name()); err != nil {
				return err
			}
		}
		return tx.Commit(ctx)
	})
	if errors.Is(err, errNoCopy) {
		return err
	}
	return b.wrapErr("enqueue", err)
}

func (b *Backend) insert(ctx context.Context, q querier, rs []*tasks.RawResult, t time.Time) error {
	if b.dialect == Postgres {
		return b.insertPG(ctx, q, rs, t)
	}
	return b.insertSQLite(ctx, q, rs, t)
}

func (b *Backend) insertPG(ctx context.Context, q querier, rs []*tasks.RawResult, t time.Time) error {
	n := len(rs)
	var (
		ids, names, args, queues, verbose, creators = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
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
		if r.RepeatUntil != nil {
			until[i] = *r.RepeatUntil
		} else {
			until[i] = time.Time{}.UTC()
		}
	}
	var count, notified int64
	err := q.QueryRowContext(ctx, pgInsert, b.Name(), t, t,
		ids, names, args, prios, queues, runAfter, maxAtt, timeouts, verbose, creators, repeats, until).
		Scan(&count, &notified)
	if err != nil {
		return b.wrapErr("enqueue", err)
	}
	if int(count) != n {
		return fmt.Errorf("gotasks enqueue: inserted %d of %d rows", count, n)
	}
	return nil
}

// sqliteInsert inserts the rows of a JSON array in one statement: one
// parameter whatever the batch size, so the statement text is constant and
// SQLite parses the batch in C rather than binding thousands of parameters.
const sqliteInsert = `INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after,
	enqueued_at, max_attempts, timeout_ms, verbose_name, creator, repeat_ms, repeat_until)
SELECT j.value->>'$[0]', j.value->>'$[1]', 'READY', j.value->>'$[2]', j.value->>'$[3]', j.value->>'$[4]', $2,
	j.value->>'$[5]', $3, j.value->>'$[6]', j.value->>'$[7]', j.value->>'$[8]', j.value->>'$[9]',
	j.value->>'$[10]', j.value->>'$[11]'
FROM json_each($1) AS j`

func (b *Backend) insertSQLite(ctx context.Context, q querier, rs []*tasks.RawResult, t time.Time) error {
	rowsJSON := make([][]any, len(rs))
	d := b.dialect
	for i, r := range rs {
		rowsJSON[i] = []any{r.ID, r.TaskName, string(r.Args), r.Priority, r.Queue, d.ts(r.RunAfter),
			r.MaxAttempts, r.Timeout.Milliseconds(), r.VerboseName, r.Creator, r.Repeat.Milliseconds(),
			d.tsPtr(r.RepeatUntil)}
	}
	payload, err := json.Marshal(rowsJSON)
	if err != nil {
		return fmt.Errorf("gotasks enqueue: encode rows: %w", err)
	}
	if _, err := b.sq(q).ExecContext(ctx, sqliteInsert, string(payload), b.Name(), d.ts(t)); err != nil {
		return b.wrapErr("enqueue", err)
	}
	return nil
}
