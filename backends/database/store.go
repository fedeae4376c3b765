package database

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// This file holds the worker's statements: claim, complete, heartbeat,
// rescue. Each is one statement per batch.

// prefixed returns resultColumns with every column qualified by p.
func prefixed(p string) string {
	cols := strings.Split(resultColumns, ",")
	for i, c := range cols {
		cols[i] = p + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// claimQuery builds the claim statement for a queue selection.
// Parameters: $1 backend, $2 now, $3 limit, $4 worker id, then the queues
// to include and the queues to exclude, each only when used ($5 and $6, or
// $5 alone): PostgreSQL rejects a parameter that the statement does not
// use.
func (b *Backend) claimQuery(include, exclude []string) string {
	var filter strings.Builder
	incl, excl := "$5", "$5"
	if len(include) > 0 {
		excl = "$6"
	}
	if b.dialect == Postgres {
		if len(include) > 0 {
			filter.WriteString(" AND queue = ANY(" + incl + "::text[])")
		}
		if len(exclude) > 0 {
			filter.WriteString(" AND NOT (queue = ANY(" + excl + "::text[]))")
		}
		// The claim commits asynchronously (synchronous_commit off for this
		// statement's transaction only): it is not flushed to disk before the
		// worker starts the tasks. The completion that follows is a normal
		// synchronous commit and flushes the claim with it. If the server
		// crashes in between, the claim is lost and the tasks are READY again:
		// they run again (at least once), and this worker's late completion is
		// refused by the guard. This takes one WAL flush per batch off the
		// critical path (latency and throughput).
		return `WITH picked AS MATERIALIZED (
	SELECT id FROM gotasks_task
	WHERE status = 'READY' AND backend = $1 AND run_after <= $2` + filter.String() + `
		AND (SELECT set_config('synchronous_commit', 'off', true)) IS NOT NULL
	ORDER BY priority DESC, run_after, enqueued_at
	LIMIT $3
	FOR UPDATE SKIP LOCKED)
UPDATE gotasks_task t SET status = 'RUNNING', attempts = t.attempts + 1,
	started_at = COALESCE(t.started_at, $2), last_attempted_at = $2, worker_id = $4::text, heartbeat_at = $2,
	worker_ids = t.worker_ids || to_jsonb($4::text)
FROM picked WHERE t.id = picked.id
RETURNING ` + prefixed("t.")
	}
	if len(include) > 0 {
		filter.WriteString(" AND queue IN (SELECT value FROM json_each(" + incl + "))")
	}
	if len(exclude) > 0 {
		filter.WriteString(" AND queue NOT IN (SELECT value FROM json_each(" + excl + "))")
	}
	return `UPDATE gotasks_task SET status = 'RUNNING', attempts = attempts + 1,
	started_at = COALESCE(started_at, $2), last_attempted_at = $2, worker_id = $4, heartbeat_at = $2,
	worker_ids = json_insert(CASE WHEN json_valid(worker_ids) THEN worker_ids ELSE '[]' END, '$[#]', $4)
WHERE id IN (
	SELECT id FROM gotasks_task
	WHERE status = 'READY' AND backend = $1 AND run_after <= $2` + filter.String() + `
	ORDER BY priority DESC, run_after, enqueued_at
	LIMIT $3)
RETURNING ` + resultColumns
}

// claimArgs returns the arguments of claimQuery.
func (b *Backend) claimArgs(t time.Time, limit int, workerID string, include, exclude []string) []any {
	args := []any{b.Name(), b.dialect.ts(t), limit, workerID}
	if b.dialect == Postgres {
		if len(include) > 0 {
			args = append(args, include)
		}
		if len(exclude) > 0 {
			args = append(args, exclude)
		}
		return args
	}
	if len(include) > 0 {
		j, _ := json.Marshal(include)
		args = append(args, string(j))
	}
	if len(exclude) > 0 {
		j, _ := json.Marshal(exclude)
		args = append(args, string(j))
	}
	return args
}

// claim marks up to limit due READY tasks RUNNING for workerID and returns
// them in claim order.
func (b *Backend) claim(ctx context.Context, query string, limit int, workerID string, include, exclude []string) ([]*row, error) {
	unlock := b.writeLock()
	defer unlock()
	// The time of the claim, taken once this process's writers let it go
	// ahead: it stamps heartbeat_at, the start of the lease.
	t := now()
	rows, err := b.sq(b.db.DB).QueryContext(ctx, query, b.claimArgs(t, limit, workerID, include, exclude)...)
	if err != nil {
		return nil, b.wrapErr("claim", err)
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		// A worker_ids or errors column that does not decode (edited by
		// hand, written by other software) must not fail the claim of the
		// whole batch, whose rows are RUNNING now: the task runs without
		// that history.
		r, corrupt, err := scanRow(rows)
		if err != nil {
			return nil, b.wrapErr("claim", err)
		}
		if corrupt != nil {
			b.log.Warn("gotasks: claimed task has a stored column that does not decode; running it anyway",
				"backend", b.Name(), "id", r.ID, "err", corrupt)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, b.wrapErr("claim", err)
	}
	sortClaimOrder(out)
	return out, nil
}

func sortClaimOrder(rs []*row) {
	less := func(x, y *row) bool {
		if x.Priority != y.Priority {
			return x.Priority > y.Priority
		}
		if !x.RunAfter.Equal(y.RunAfter) {
			return x.RunAfter.Before(y.RunAfter)
		}
		return x.EnqueuedAt.Before(y.EnqueuedAt)
	}
	// insertion sort: batches are small and nearly sorted
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && less(rs[j], rs[j-1]); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// outcome is the end of one attempt, to be recorded.
type outcome struct {
	rec *tasks.RawResult // the claimed row, updated to what is recorded
	// attempt guards the update: the row must still be RUNNING, held by
	// this worker, at this attempt.
	attempt int
	// handBack: the worker stopped before the task finished; the task
	// goes back to READY and the attempt is not counted.
	handBack bool
	newErr   *tasks.TaskError
	// next is the next run of a repeating task, inserted with the
	// completion.
	next *tasks.RawResult
}

// The completion guard is worker_id and attempts: worker_id is set only
// while a task is RUNNING (claim sets it; complete, rescue and hand-back
// clear it), so a worker whose task was rescued (and maybe claimed again)
// cannot record over it. The guard deliberately does not test status: that
// would let the planner pick the partial index on RUNNING rows, whose dead
// entries grow with every task processed, instead of the primary key.

// complete records a batch of outcomes in one statement (plus one INSERT
// for repeats, in the same transaction) and returns the outcomes that were
// recorded; the others lost their claim (the task was rescued meanwhile).
//
// planTag is appended to the PostgreSQL statement (see Worker.planTag).
func (b *Backend) complete(ctx context.Context, workerID, planTag string, outs []*outcome) ([]*outcome, error) {
	hasNext := false
	for _, o := range outs {
		hasNext = hasNext || o.next != nil
	}
	unlock := b.writeLock()
	defer unlock()
	if !hasNext {
		ids, err := b.completeStmt(ctx, b.db.DB, workerID, planTag, outs)
		if err != nil {
			return nil, err
		}
		return recorded(outs, ids), nil
	}
	tx, err := b.db.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, b.wrapErr("complete", err)
	}
	defer func() { _ = tx.Rollback() }()
	ids, err := b.completeStmt(ctx, tx, workerID, planTag, outs)
	if err != nil {
		return nil, err
	}
	done := recorded(outs, ids)
	var nexts []*tasks.RawResult
	for _, o := range done {
		if o.next != nil {
			nexts = append(nexts, o.next)
		}
	}
	if len(nexts) > 0 {
		if err := b.insert(ctx, tx, nexts, nexts[0].EnqueuedAt); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, b.wrapErr("complete: commit", err)
	}
	return done, nil
}

func recorded(outs []*outcome, ids map[string]bool) []*outcome {
	done := make([]*outcome, 0, len(outs))
	for _, o := range outs {
		if ids[o.rec.ID] {
			done = append(done, o)
		}
	}
	return done
}

// pgComplete records outcomes and notifies result waiters of finished ones
// (in payloads of at most 150 ids). $1 worker id, $2 the ids, $3 a jsonb
// object of outcomes keyed by id (see appendPGOutcome).
//
// It is one relation, deliberately: the rows are found through the primary
// key by id = ANY($2), and each row's outcome is looked up in $3 by its id.
// Joined to a set of outcomes (unnest of arrays, as before), the planner
// could put the task table on the outer side of a nested loop, because the
// worker_id guard looks nearly never true to it (its statistics say
// worker_id is NULL on almost every row), and then scan the whole batch of
// outcomes once per row: 100–200 ms a statement for 500 outcomes, seen on a
// table of 20,000 rows. With a single relation the only choice left is how
// to read id = ANY($2), and the primary key wins it at every table size but
// the tiniest.
const pgComplete = `WITH upd AS (
	UPDATE gotasks_task t SET status = $3::jsonb -> t.id ->> 's',
		return_value = CASE WHEN $3::jsonb -> t.id -> 'r' IS NULL THEN t.return_value
			ELSE ($3::jsonb -> t.id ->> 'r')::json END,
		finished_at = ($3::jsonb -> t.id ->> 'f')::timestamptz,
		run_after = COALESCE(($3::jsonb -> t.id ->> 'ra')::timestamptz, t.run_after),
		errors = CASE WHEN $3::jsonb -> t.id -> 'e' IS NULL THEN t.errors
			ELSE t.errors || jsonb_build_array($3::jsonb -> t.id -> 'e') END,
		attempts = t.attempts - COALESCE(($3::jsonb -> t.id ->> 'd')::int, 0),
		worker_id = NULL, heartbeat_at = NULL
	WHERE t.id = ANY($2::text[]) AND t.worker_id = $1::text AND t.attempts = ($3::jsonb -> t.id ->> 'a')::int
	RETURNING t.id, t.status),
n AS (
	SELECT pg_notify('` + doneChannel + `', string_agg(id, ','))
	FROM (SELECT id, (row_number() OVER ()) / 150 AS g FROM upd WHERE status <> 'READY') s GROUP BY g)
SELECT upd.id, (SELECT count(*) FROM n) FROM upd`

// appendPGOutcome appends one member of pgComplete's $3 object:
// "id":{"a":attempt,"s":status,"r":return value as a JSON string (when
// SUCCESSFUL),"f":finished_at (unless READY),"ra":run_after (when READY),
// "e":the new error (an object),"d":1 (an attempt handed back)}. The return
// value goes in as a string so that the json column keeps its text as the
// task produced it. Times are truncated to microseconds, as pgx does for a
// timestamptz parameter (PostgreSQL would round the text form).
func appendPGOutcome(buf []byte, id string, attempt int, status tasks.Status, ret []byte, fin, ra time.Time, errJSON string, dec bool) []byte {
	buf = appendJSONString(buf, id)
	buf = append(buf, `:{"a":`...)
	buf = strconv.AppendInt(buf, int64(attempt), 10)
	buf = append(buf, `,"s":`...)
	buf = appendJSONString(buf, string(status))
	if status == tasks.StatusSuccessful && len(ret) > 0 {
		buf = append(buf, `,"r":`...)
		buf = appendJSONString(buf, string(ret))
	}
	if status == tasks.StatusReady {
		buf = append(buf, `,"ra":"`...)
		buf = ra.UTC().Truncate(time.Microsecond).AppendFormat(buf, time.RFC3339Nano)
	} else {
		buf = append(buf, `,"f":"`...)
		buf = fin.UTC().Truncate(time.Microsecond).AppendFormat(buf, time.RFC3339Nano)
	}
	buf = append(buf, '"')
	if errJSON != "" {
		buf = append(buf, `,"e":`...)
		buf = append(buf, errJSON...)
	}
	if dec {
		buf = append(buf, `,"d":1`...)
	}
	return append(buf, '}')
}

// appendJSONString appends s as a JSON string. s is valid UTF-8 (it comes
// from the database or from encoding/json); control characters, quotes and
// backslashes are escaped.
func appendJSONString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\t':
			buf = append(buf, '\\', 't')
		case '\r':
			buf = append(buf, '\\', 'r')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// sqliteComplete records outcomes given as a JSON array of
// [id, attempt, status, return value, finished_at, run_after, error, dec]
// in one statement. $1 worker id, $2 the array.
const sqliteComplete = `WITH v AS (
	SELECT j.value->>'$[0]' AS vid, j.value->>'$[1]' AS vattempt, j.value->>'$[2]' AS vstatus,
		j.value->>'$[3]' AS vret, j.value->>'$[4]' AS vfin, j.value->>'$[5]' AS vra, j.value->>'$[6]' AS verr,
		j.value->>'$[7]' AS vdec
	FROM json_each($2) AS j)
UPDATE gotasks_task SET status = v.vstatus,
	return_value = CASE WHEN v.vstatus = 'SUCCESSFUL' THEN v.vret ELSE return_value END,
	finished_at = v.vfin,
	run_after = CASE WHEN v.vstatus = 'READY' THEN v.vra ELSE run_after END,
	errors = CASE WHEN v.verr IS NULL THEN errors
		ELSE json_insert(CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json(v.verr)) END,
	attempts = attempts - v.vdec,
	worker_id = NULL, heartbeat_at = NULL
FROM v
WHERE gotasks_task.id = v.vid AND gotasks_task.worker_id = $1
	AND gotasks_task.attempts = v.vattempt
RETURNING gotasks_task.id, 0`

func (b *Backend) completeStmt(ctx context.Context, q querier, workerID, planTag string, outs []*outcome) (map[string]bool, error) {
	n := len(outs)
	ids := make([]string, n)
	var pgBuf []byte       // PostgreSQL: the jsonb object of outcomes by id
	var sqliteVals [][]any // SQLite: the JSON array of outcomes
	if b.dialect == Postgres {
		pgBuf = append(make([]byte, 0, 2+n*192), '{')
	} else {
		sqliteVals = make([][]any, n)
	}
	for i, o := range outs {
		r := o.rec
		ids[i] = r.ID
		var errJSON string
		if o.newErr != nil {
			j, err := json.Marshal(storableError(o.newErr))
			if err != nil {
				return nil, fmt.Errorf("gotasks complete: encode error: %w", err)
			}
			errJSON = string(j)
		}
		fin := time.Time{}.UTC()
		if r.FinishedAt != nil {
			fin = *r.FinishedAt
		}
		if b.dialect == Postgres {
			if i > 0 {
				pgBuf = append(pgBuf, ',')
			}
			pgBuf = appendPGOutcome(pgBuf, r.ID, o.attempt, r.Status, r.ReturnValue, fin, r.RunAfter, errJSON, o.handBack)
			continue
		}
		var finArg, ret, e any
		if r.Status != tasks.StatusReady {
			finArg = b.dialect.ts(fin)
		}
		if r.Status == tasks.StatusSuccessful {
			ret = string(r.ReturnValue)
		}
		if errJSON != "" {
			e = errJSON
		}
		dec := 0
		if o.handBack {
			dec = 1
		}
		sqliteVals[i] = []any{r.ID, o.attempt, string(r.Status), ret, finArg, b.dialect.ts(r.RunAfter), e, dec}
	}
	var (
		rows interface {
			Next() bool
			Scan(...any) error
			Err() error
			Close() error
		}
		err error
	)
	if b.dialect == Postgres {
		pgBuf = append(pgBuf, '}')
		rows, err = q.QueryContext(ctx, pgComplete+planTag, workerID, ids, string(pgBuf))
	} else {
		payload, merr := json.Marshal(sqliteVals)
		if merr != nil {
			return nil, fmt.Errorf("gotasks complete: encode outcomes: %w", merr)
		}
		rows, err = b.sq(q).QueryContext(ctx, sqliteComplete, workerID, string(payload))
	}
	if err != nil {
		return nil, b.wrapErr("complete", err)
	}
	defer rows.Close()
	done := make(map[string]bool, n)
	for rows.Next() {
		var id string
		var x int64
		if err := rows.Scan(&id, &x); err != nil {
			return nil, b.wrapErr("complete", err)
		}
		done[id] = true
	}
	if err := rows.Err(); err != nil {
		return nil, b.wrapErr("complete", err)
	}
	return done, nil
}

// storableError returns e with NUL characters replaced by U+FFFD.
// PostgreSQL's jsonb (the errors column) rejects \u0000: one such message
// (a panic value, an error quoting binary data) would otherwise fail the
// completion of its whole batch, retried forever.
func storableError(e *tasks.TaskError) *tasks.TaskError {
	if !strings.ContainsRune(e.Type+e.Message+e.Stack, 0) {
		return e
	}
	c := *e
	nul := strings.NewReplacer("\x00", "\uFFFD")
	c.Type, c.Message, c.Stack = nul.Replace(c.Type), nul.Replace(c.Message), nul.Replace(c.Stack)
	return &c
}

// heartbeat refreshes the lease of the tasks ids that workerID runs. Only
// those: a row held under workerID that the worker does not know about (a
// claim whose response was lost) is left to be rescued. Like the completion
// guard, it tests worker_id rather than status (worker_id is set only while a
// task is RUNNING), so that the primary key serves it: with status in the
// condition the planner may pick the RUNNING-rows partial index and walk its
// dead entries (47 ms a heartbeat was seen during a benchmark).
func (b *Backend) heartbeat(ctx context.Context, workerID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	unlock := b.writeLock()
	defer unlock()
	var q string
	var idsArg any
	if b.dialect == Postgres {
		// Skip rows being completed (locked by this worker's completion
		// statement, which locks in another order): waiting for them could
		// deadlock, and they are about to stop RUNNING anyway.
		q = `UPDATE gotasks_task SET heartbeat_at = $1 WHERE id IN (
		SELECT id FROM gotasks_task WHERE id = ANY($4::text[]) AND backend = $2 AND worker_id = $3
		FOR UPDATE SKIP LOCKED)`
		idsArg = ids
	} else {
		q = `UPDATE gotasks_task SET heartbeat_at = $1
		WHERE id IN (SELECT value FROM json_each($4)) AND backend = $2 AND worker_id = $3`
		j, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		idsArg = string(j)
	}
	_, err := b.sq(b.db.DB).ExecContext(ctx, q, b.planEach(b.dialect.ts(now()), b.Name(), workerID, idsArg)...)
	return b.wrapErr("heartbeat", err)
}

// claimRef names one claim of a task: its id and the attempt the claim
// started (attempts after the claim).
type claimRef struct {
	id       string
	attempts int
}

// release hands back tasks that workerID claimed but never started (claimed
// ahead, see aheadEstimator): READY again with the attempt not counted, as
// far as possible as if never claimed — the worker leaves worker_ids, and
// started_at is cleared when this claim set it. last_attempted_at keeps the
// claim's time. Other workers are woken (LISTEN/NOTIFY on PostgreSQL). It
// returns how many were released.
//
// Each row must still be RUNNING under workerID at the claim's attempt: a
// release retried late (after a failure) leaves alone a row that was
// rescued meanwhile, and a later claim of it, even by this worker.
func (b *Backend) release(ctx context.Context, workerID string, refs []claimRef) (int, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	unlock := b.writeLock()
	n, err := b.releaseStmt(ctx, workerID, refs)
	unlock()
	if err != nil {
		return 0, b.wrapErr("release", err)
	}
	if n > 0 {
		b.hub.wake()
	}
	return int(n), nil
}

func (b *Backend) releaseStmt(ctx context.Context, workerID string, refs []claimRef) (int64, error) {
	var n int64
	if b.dialect == Postgres {
		// Driven by the primary key (id = ANY), the attempt looked up by id
		// in a jsonb object, like the completion.
		const q = `WITH r AS (
	UPDATE gotasks_task SET status = 'READY', attempts = attempts - 1,
		started_at = CASE WHEN started_at = last_attempted_at THEN NULL ELSE started_at END,
		worker_ids = worker_ids - (-1), worker_id = NULL, heartbeat_at = NULL
	WHERE id = ANY($1::text[]) AND attempts = ($4::jsonb ->> id)::int AND worker_id = $2 AND status = 'RUNNING'
	RETURNING 1),
n AS (SELECT pg_notify('` + wakeChannel + `', $3::text) FROM r LIMIT 1)
SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM n)`
		ids := make([]string, len(refs))
		byID := make(map[string]int, len(refs))
		for i, c := range refs {
			ids[i] = c.id
			byID[c.id] = c.attempts
		}
		j, err := json.Marshal(byID)
		if err != nil {
			return 0, err
		}
		var notified int64
		err = b.sq(b.db.DB).QueryRowContext(ctx, q, b.planEach(ids, workerID, b.Name(), string(j))...).Scan(&n, &notified)
		return n, err
	}
	const q = `WITH v AS (SELECT j.value->>'$[0]' AS vid, j.value->>'$[1]' AS vattempt FROM json_each($1) AS j)
UPDATE gotasks_task SET status = 'READY', attempts = attempts - 1,
	started_at = CASE WHEN started_at = last_attempted_at THEN NULL ELSE started_at END,
	worker_ids = CASE WHEN json_valid(worker_ids) THEN json_remove(worker_ids, '$[#-1]') ELSE worker_ids END,
	worker_id = NULL, heartbeat_at = NULL
FROM v
WHERE gotasks_task.id = v.vid AND gotasks_task.attempts = v.vattempt
	AND gotasks_task.worker_id = $2 AND gotasks_task.status = 'RUNNING'`
	pairs := make([][2]any, len(refs))
	for i, c := range refs {
		pairs[i] = [2]any{c.id, c.attempts}
	}
	j, err := json.Marshal(pairs)
	if err != nil {
		return 0, err
	}
	res, err := b.sq(b.db.DB).ExecContext(ctx, q, string(j), workerID)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// WorkerLostType is the TaskError type recorded for a task whose worker
// stopped heartbeating or overran the maximum run time.
const WorkerLostType = "database.WorkerLost"

// rescue puts back to READY (or FAILED when out of attempts) the RUNNING
// tasks whose worker stopped heartbeating before heartbeatCutoff, or that
// started before runCutoff, other than those of self (whose heartbeat is
// known to be alive). One statement; safe to run from many workers at once.
// run_after is left as it was (the task was due when it was claimed): a
// rescued task keeps its place in the claim order, ahead of the tasks
// enqueued after it, and a repeating task keeps its schedule.
//
// orphansOf, when not empty, also rescues every RUNNING task held under
// that worker id whatever its heartbeat: a worker calls it once at start-up
// with its own id, before it claims anything, so that tasks left RUNNING by
// an earlier process with the same --worker-id (whose heartbeats the new
// process would otherwise keep alive) come back at once.
func (b *Backend) rescue(ctx context.Context, self string, heartbeatCutoff, runCutoff time.Time, orphansOf string) ([]*row, error) {
	t := now()
	d := b.dialect
	var q string
	if d == Postgres {
		q = `UPDATE gotasks_task SET
	status = CASE WHEN attempts >= max_attempts THEN 'FAILED' ELSE 'READY' END,
	finished_at = CASE WHEN attempts >= max_attempts THEN $1::timestamptz ELSE NULL END,
	errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempts, 'type', '` + WorkerLostType + `',
		'message', CASE WHEN last_attempted_at < $5 THEN 'task ran longer than the maximum run time on worker '
			ELSE 'worker stopped heartbeating while running the task: ' END || COALESCE(worker_id, '?'),
		'at', $2::text)),
	worker_id = NULL, heartbeat_at = NULL
WHERE id IN (SELECT id FROM gotasks_task WHERE backend = $3 AND status = 'RUNNING'
	AND ((heartbeat_at < $4 AND worker_id <> $6) OR last_attempted_at < $5 OR worker_id = $7)
	FOR UPDATE SKIP LOCKED)
RETURNING ` + resultColumns
	} else {
		q = `UPDATE gotasks_task SET
	status = CASE WHEN attempts >= max_attempts THEN 'FAILED' ELSE 'READY' END,
	finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
	errors = json_insert(CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json_object('attempt', attempts,
		'type', '` + WorkerLostType + `',
		'message', CASE WHEN last_attempted_at < $5 THEN 'task ran longer than the maximum run time on worker '
			ELSE 'worker stopped heartbeating while running the task: ' END || COALESCE(worker_id, '?'),
		'at', $2)),
	worker_id = NULL, heartbeat_at = NULL
WHERE backend = $3 AND status = 'RUNNING'
	AND ((heartbeat_at < $4 AND worker_id <> $6) OR last_attempted_at < $5 OR worker_id = $7)
RETURNING ` + resultColumns
	}
	unlock := b.writeLock()
	defer unlock()
	rows, err := b.db.DB.QueryContext(ctx, q, b.planEach(d.ts(t), t.Format(time.RFC3339Nano), b.Name(),
		d.ts(heartbeatCutoff), d.ts(runCutoff), self, orphansOf)...)
	if err != nil {
		return nil, b.wrapErr("rescue", err)
	}
	defer rows.Close()
	var out []*row
	for rows.Next() {
		r, err := scanResult(rows)
		if err != nil {
			return nil, b.wrapErr("rescue", err)
		}
		out = append(out, r)
	}
	return out, b.wrapErr("rescue", rows.Err())
}
