package database

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gotasks/gotasks/tasks"
)

// pgStore is the store of PostgreSQL (pgx through database/sql). This file
// holds the worker's statements; store_postgres_tasks.go the others.
type pgStore struct {
	storeConfig
	adminStatements
	feats feature
}

// pgFeatures are PostgreSQL's features whatever the driver; the pgx stdlib
// driver adds featCopy and featListen.
const pgFeatures = featNotify | featPlanGenerations | featAdvisoryLock | featClaimTurns

func newPGStore(cfg storeConfig) *pgStore {
	s := &pgStore{storeConfig: cfg, feats: pgFeatures,
		adminStatements: adminStatements{forms: pgForms, backendName: cfg.backend}}
	if cfg.pgx {
		s.feats |= featCopy | featListen
	}
	return s
}

func (s *pgStore) features() feature { return s.feats }

func (s *pgStore) close() {}

// planEach returns a statement's arguments so that PostgreSQL plans it for
// these arguments on each execution instead of once per connection: pgx
// prepares and caches statements, and after five executions PostgreSQL may
// switch a prepared statement to a generic plan and keep it for the
// connection's life, though the table has grown since (see plan.go). For
// the rare statements (heartbeat, release, rescue, prune batches) planning
// each time costs nothing that matters. pgx's exec mode (an unnamed
// statement, parameter types from the Go values) is still one round trip and
// needs no statement or description cache, so it also works where those are
// turned off (PgBouncer setups). Other drivers get the arguments unchanged.
func (s *pgStore) planEach(args ...any) []any {
	if !s.pgx {
		return args
	}
	return append([]any{pgx.QueryExecModeExec}, args...)
}

// claimQuery: FOR UPDATE SKIP LOCKED in a MATERIALIZED CTE, so that
// concurrent claims never wait for each other nor claim a row twice.
//
// The claim commits synchronously, like every statement here: its
// transaction is flushed to disk before the worker starts the tasks. A claim
// committed asynchronously (synchronous_commit off, as this statement once
// did to take one WAL flush per batch off the critical path) is lost when
// the server crashes before the WAL writer flushes it: the task is READY
// again while its first execution still runs, and another worker claims and
// runs it at the same time. A durable claim leaves overlaps to the one
// documented limit (a worker that stops heartbeating for longer than the
// rescue delay).
func (s *pgStore) claimQuery(include, exclude []string) string {
	var filter strings.Builder
	incl, excl := "$5", "$5"
	if len(include) > 0 {
		excl = "$6"
	}
	if len(include) > 0 {
		filter.WriteString(" AND queue = ANY(" + incl + "::text[])")
	}
	if len(exclude) > 0 {
		filter.WriteString(" AND NOT (queue = ANY(" + excl + "::text[]))")
	}
	return `WITH picked AS MATERIALIZED (
	SELECT id FROM gotasks_task
	WHERE status = 'READY' AND backend = $1 AND run_after <= $2` + filter.String() + pausedFilter + `
	ORDER BY priority DESC, run_after, enqueued_at
	LIMIT $3
	FOR UPDATE SKIP LOCKED)
UPDATE gotasks_task t SET status = 'RUNNING', attempts = t.attempts + 1,
	started_at = COALESCE(t.started_at, $2), last_attempted_at = $2, worker_id = $4::text, heartbeat_at = $2,
	worker_ids = t.worker_ids || to_jsonb($4::text)
FROM picked WHERE t.id = picked.id
RETURNING ` + prefixed("t.")
}

func (s *pgStore) claim(ctx context.Context, q querier, query string, at time.Time, limit int, workerID string,
	include, exclude []string) ([]*row, error) {
	args := []any{s.backend(), at.UTC(), limit, workerID}
	if len(include) > 0 {
		args = append(args, include)
	}
	if len(exclude) > 0 {
		args = append(args, exclude)
	}
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanWorkerRows(rows, s.log, s.backend(), "claimed")
}

// claimTurnClass is the first key of the claim-turn advisory locks (the
// second is a hash of the schema and the backend's name, so that the
// backends of other schemas in the database take turns of their own):
// "gtks", apart from the one-key locks of the migrations.
const claimTurnClass = 0x67746b73

// claimTurnSQL takes the claim turn in one statement: it sets
// lock_timeout to $3 for the wait, takes the transaction-scoped lock
// ($1 claimTurnClass, $2 the backend), and puts lock_timeout back as it was,
// so that the claim statement after it waits for row locks as any claim
// does. Each level reads the row of the one inside it, and subqueries with
// volatile functions (or OFFSET 0) are never merged into their parent, so
// the steps run in this order.
const claimTurnSQL = `SELECT set_config('lock_timeout', old, true) FROM (
	SELECT old, pg_advisory_xact_lock($1, ` + claimTurnKey + `) FROM (
		SELECT old, set_config('lock_timeout', $3, true) FROM (
			SELECT current_setting('lock_timeout') AS old OFFSET 0) a OFFSET 0) b OFFSET 0) c`

// claimTurnKey is the second key of the claim turn ($2 the backend).
const claimTurnKey = "hashtext(current_schema() || '.' || $2)"

// claimTurn takes the backend's claim turn: a transaction-scoped advisory
// lock, waited for at most claimTurnWait (then SQLSTATE 55P03).
func (s *pgStore) claimTurn(ctx context.Context, tx querier) error {
	_, err := tx.ExecContext(ctx, claimTurnSQL, claimTurnClass, s.backend(), claimTurnWait)
	return err
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
//
// Each row's outcome is looked up twice: once for the guard, once for all
// the columns it sets (jsonb_to_record in a multi-column SET). Looking every
// column up on its own (eight lookups a row, as before) made the statement
// about a fifth slower (issue 17, docs/performance.md).
const pgComplete = `WITH upd AS (
	UPDATE gotasks_task t SET (status, return_value, finished_at, run_after, errors, attempts, worker_id, heartbeat_at) =
		(SELECT o.s, CASE WHEN o.r IS NULL THEN t.return_value ELSE o.r::json END, o.f, COALESCE(o.ra, t.run_after),
			CASE WHEN o.e IS NULL THEN t.errors ELSE t.errors || jsonb_build_array(o.e) END,
			t.attempts - COALESCE(o.d, 0), NULL::varchar, NULL::timestamptz
		FROM jsonb_to_record($3::jsonb -> t.id) AS o(s text, r text, f timestamptz, ra timestamptz, e jsonb, d int))
	WHERE t.id = ANY($2::text[]) AND t.worker_id = $1::text AND t.attempts = ($3::jsonb -> t.id ->> 'a')::int
	RETURNING t.id, t.status),
n AS (
	SELECT pg_notify('` + doneChannel + `', string_agg(id, ','))
	FROM (SELECT id, (row_number() OVER ()) / 150 AS g FROM upd WHERE status <> 'READY') s GROUP BY g)
SELECT upd.id, (SELECT count(*) FROM n) FROM upd`

func (s *pgStore) complete(ctx context.Context, q querier, workerID, planTag string, outs []*outcome) (map[string]bool, error) {
	n := len(outs)
	ids := make([]string, n)
	buf := append(make([]byte, 0, 2+n*192), '{') // the jsonb object of outcomes by id
	for i, o := range outs {
		r := o.rec
		ids[i] = r.ID
		errJSON, err := outcomeErrorJSON(o)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = appendPGOutcome(buf, r.ID, o.attempt, r.Status, r.ReturnValue, outcomeFinishedAt(o), r.RunAfter, errJSON, o.handBack)
	}
	buf = append(buf, '}')
	rows, err := q.QueryContext(ctx, pgComplete+planTag, workerID, ids, string(buf))
	if err != nil {
		return nil, err
	}
	return scanRecorded(rows, n)
}

// appendPGOutcome appends one member of pgComplete's $3 object:
// "id":{"a":attempt,"s":status,"r":return value as a JSON string (when
// SUCCESSFUL),"f":finished_at (unless READY),"ra":run_after (when READY),
// "e":the new error (an object),"d":1 (an attempt not counted: handed back
// at a hard stop, with its run_after unchanged, or snoozed, with the new
// run_after in "ra")}. The return
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

// heartbeat skips rows being completed (locked by this worker's completion
// statement, which locks in another order): waiting for them could
// deadlock, and they are about to stop RUNNING anyway.
//
// Like the completion guard, it tests worker_id rather than status
// (worker_id is set only while a task is RUNNING), so that the primary key
// serves it: with status in the condition the planner may pick the
// RUNNING-rows partial index and walk its dead entries (47 ms a heartbeat
// was seen during a benchmark).
func (s *pgStore) heartbeat(ctx context.Context, q querier, at time.Time, workerID string, ids []string) error {
	const stmt = `UPDATE gotasks_task SET heartbeat_at = $1 WHERE id IN (
		SELECT id FROM gotasks_task WHERE id = ANY($4::text[]) AND backend = $2 AND worker_id = $3
		FOR UPDATE SKIP LOCKED)`
	_, err := q.ExecContext(ctx, stmt, s.planEach(at.UTC(), s.backend(), workerID, ids)...)
	return err
}

// release is driven by the primary key (id = ANY), the attempt looked up by
// id in a jsonb object, like the completion; it wakes idle workers.
func (s *pgStore) release(ctx context.Context, q querier, workerID string, refs []claimRef) (int64, error) {
	const stmt = `WITH r AS (
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
	var n, notified int64
	err = q.QueryRowContext(ctx, stmt, s.planEach(ids, workerID, s.backend(), string(j))...).Scan(&n, &notified)
	return n, err
}

// pgRescue: see Backend.rescue. $1 finished_at, $2 the time as text (in the
// error), $3 backend, $4 heartbeat cutoff, $5 run cutoff, $6 self, $7
// orphans of. A NULL heartbeat is an expired one (a RUNNING row always has
// one unless written by other means), and a NULL worker id is not self.
const pgRescue = `UPDATE gotasks_task SET
	status = CASE WHEN attempts >= max_attempts THEN 'FAILED' ELSE 'READY' END,
	finished_at = CASE WHEN attempts >= max_attempts THEN $1::timestamptz ELSE NULL END,
	errors = errors || jsonb_build_array(jsonb_build_object('attempt', attempts, 'type', '` + WorkerLostType + `',
		'message', ` + rescueMessage + `,
		'at', $2::text)),
	worker_id = NULL, heartbeat_at = NULL
WHERE id IN (SELECT id FROM gotasks_task WHERE backend = $3 AND status = 'RUNNING'
	AND ` + rescueCondition + `
	FOR UPDATE SKIP LOCKED)
RETURNING ` + resultColumns

func (s *pgStore) rescue(ctx context.Context, q querier, at time.Time, self string, heartbeatCutoff, runCutoff time.Time,
	orphansOf string) ([]*row, error) {
	rows, err := q.QueryContext(ctx, pgRescue, s.planEach(at.UTC(), at.Format(time.RFC3339Nano), s.backend(),
		heartbeatCutoff.UTC(), runCutoff.UTC(), self, orphansOf)...)
	if err != nil {
		return nil, err
	}
	return scanWorkerRows(rows, s.log, s.backend(), "rescued")
}
