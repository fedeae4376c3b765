package database

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// sqliteStore is the store of SQLite (modernc.org/sqlite). This file holds
// the worker's statements; store_sqlite_tasks.go the others.
//
// SQLite has one writer at a time (featSingleWriter), times are text
// (featTextTimes), and lists of values go in as one JSON parameter read with
// json_each, so that a statement's text does not depend on a batch's size.
// Batches of rows (arrays of arrays) are read with jsonb_each: its value
// column is then a JSONB blob, whose fields ->> reads without parsing the
// row's JSON text again for every field (json_each hands each row back as
// text); that made the SQLite burn-down faster by about a sixth.
// The driver parses the SQL of every call, so the frequent statements go
// through a cache of prepared statements (stmts).
type sqliteStore struct {
	storeConfig
	adminStatements
	stmts stmtCache
}

// sqliteFeatures are SQLite's features.
const sqliteFeatures = featSingleWriter | featTextTimes | featEmbedded

func newSQLiteStore(cfg storeConfig) *sqliteStore {
	s := &sqliteStore{storeConfig: cfg, adminStatements: adminStatements{forms: sqliteForms, backendName: cfg.backend}}
	s.stmts.db = cfg.db
	return s
}

func (s *sqliteStore) features() feature { return sqliteFeatures }

func (s *sqliteStore) close() { s.stmts.close() }

// sq returns q through the statement cache.
func (s *sqliteStore) sq(q querier) querier { return s.stmts.wrap(q) }

// ts encodes a time as SQLite stores it.
func (s *sqliteStore) ts(t time.Time) any { return textTime(t) }

// tsPtr encodes an optional time (nil → NULL).
func (s *sqliteStore) tsPtr(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return textTime(*t)
}

// jsonArray encodes v as a JSON text parameter.
func jsonArray(v any) string {
	j, _ := json.Marshal(v) // strings and numbers only
	return string(j)
}

func (s *sqliteStore) claimQuery(include, exclude []string) string {
	var filter strings.Builder
	incl, excl := "$5", "$5"
	if len(include) > 0 {
		excl = "$6"
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
	WHERE status = 'READY' AND backend = $1 AND run_after <= $2` + filter.String() + pausedFilter + `
	ORDER BY priority DESC, run_after, enqueued_at
	LIMIT $3)
RETURNING id, attempts`
}

// claim claims (claimIDs) and reads the claimed rows (claimedRows) through
// q: in a flow-limited claim's transaction, or wherever the claim need not
// let the write lock go between the two (see idClaimer).
func (s *sqliteStore) claim(ctx context.Context, q querier, query string, at time.Time, limit int, workerID string,
	include, exclude []string) ([]*row, error) {
	refs, err := s.claimIDs(ctx, q, query, at, limit, workerID, include, exclude)
	if err != nil {
		return nil, err
	}
	return s.claimedRows(ctx, q, refs)
}

// claimIDs runs the claim statement (claimQuery), which returns the ids
// and attempts of the tasks it claimed.
func (s *sqliteStore) claimIDs(ctx context.Context, q querier, query string, at time.Time, limit int, workerID string,
	include, exclude []string) ([]claimRef, error) {
	args := []any{s.backend(), s.ts(at), limit, workerID}
	if len(include) > 0 {
		args = append(args, jsonArray(include))
	}
	if len(exclude) > 0 {
		args = append(args, jsonArray(exclude))
	}
	rows, err := s.sq(q).QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var refs []claimRef
	for rows.Next() {
		var c claimRef
		if err := rows.Scan(&c.id, &c.attempts); err != nil {
			return nil, err
		}
		refs = append(refs, c)
	}
	return refs, rows.Err()
}

// sqliteClaimedSQL reads claimed rows by id. $1 the ids (JSON).
const sqliteClaimedSQL = `SELECT ` + resultColumns + ` FROM gotasks_task WHERE id IN (SELECT value FROM json_each($1))`

// claimedRows reads the rows of claimed tasks, in claim order.
func (s *sqliteStore) claimedRows(ctx context.Context, q querier, refs []claimRef) ([]*row, error) {
	if len(refs) == 0 {
		return nil, nil
	}
	ids := make([]string, len(refs))
	for i, c := range refs {
		ids[i] = c.id
	}
	rows, err := s.sq(q).QueryContext(ctx, sqliteClaimedSQL, jsonArray(ids))
	if err != nil {
		return nil, err
	}
	return scanWorkerRows(rows, s.log, s.backend(), "claimed")
}

// sqliteComplete records outcomes given as a JSON array of
// [id, attempt, status, return value, finished_at, run_after, error, dec]
// in one statement. $1 worker id, $2 the array. sqliteCompleteReturning is
// the same statement returning the rows it changed.
const sqliteComplete = `WITH v AS (
	SELECT j.value->>'$[0]' AS vid, j.value->>'$[1]' AS vattempt, j.value->>'$[2]' AS vstatus,
		j.value->>'$[3]' AS vret, j.value->>'$[4]' AS vfin, j.value->>'$[5]' AS vra, j.value->>'$[6]' AS verr,
		j.value->>'$[7]' AS vdec
	FROM jsonb_each($2) AS j)
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
	AND gotasks_task.attempts = v.vattempt`

const sqliteCompleteReturning = sqliteComplete + `
RETURNING ` + countedColumns

// errCompleteMissed: not every outcome of a batch found its row (see
// sqliteStore.complete).
var errCompleteMissed = errors.New("an outcome's task is no longer the worker's")

// complete ignores planTag: SQLite plans each statement its own way.
func (s *sqliteStore) complete(ctx context.Context, q querier, workerID, _ string, outs []*outcome) (map[string]bool, error) {
	vals := make([][]any, len(outs))
	for i, o := range outs {
		r := o.rec
		errJSON, err := outcomeErrorJSON(o)
		if err != nil {
			return nil, err
		}
		var fin, ret, e any
		if r.Status != tasks.StatusReady {
			fin = s.ts(outcomeFinishedAt(o))
		}
		if r.Status == tasks.StatusSuccessful {
			ret = string(r.ReturnValue)
		}
		if errJSON != "" {
			e = errJSON
		}
		dec := 0 // an attempt not counted: handed back, or snoozed (READY with a new run_after)
		if o.handBack {
			dec = 1
		}
		vals[i] = []any{r.ID, o.attempt, string(r.Status), ret, fin, s.ts(r.RunAfter), e, dec}
	}
	payload, err := json.Marshal(vals)
	if err != nil {
		return nil, fmt.Errorf("encode outcomes: %w", err)
	}
	// Nearly always every outcome finds its row (still RUNNING, the
	// worker's, at its attempt), and the statement needs no RETURNING,
	// whose buffering of the changed rows cost about 5 % of the burn-down.
	// When it changes fewer rows than it was given (a task rescued
	// meanwhile), its transaction is rolled back and the batch recorded
	// again with RETURNING, to learn which rows it changed. In a caller's
	// transaction (a completion with follow-up tasks, rare) RETURNING is
	// used from the start, in a savepoint (see counted).
	_, ownTx := q.(txBeginner) // counted begins the transaction
	ids := make(map[string]bool, len(outs))
	for _, o := range outs {
		ids[o.rec.ID] = true
	}
	if ownTx && len(ids) == len(outs) {
		err = s.counted(ctx, q, func(q querier) (countDeltas, error) {
			res, err := s.sq(q).ExecContext(ctx, sqliteComplete, workerID, string(payload))
			if err != nil {
				return nil, err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return nil, err
			}
			if n != int64(len(outs)) {
				return nil, errCompleteMissed
			}
			d := countDeltas{}
			for _, o := range outs {
				d.add(o.rec.Queue, o.rec.Status, +1)
			}
			return d, nil
		}, sqliteComplete)
		if !errors.Is(err, errCompleteMissed) {
			if err != nil {
				return nil, err
			}
			return ids, nil
		}
	}
	changed, _, err := s.countedIDs(ctx, q, +1, []string{sqliteCompleteReturning}, workerID, string(payload))
	if err != nil {
		return nil, err
	}
	done := make(map[string]bool, len(changed))
	for _, id := range changed {
		done[id] = true
	}
	return done, nil
}

// heartbeat tests worker_id rather than status, like the completion guard
// (see pgStore.heartbeat).
func (s *sqliteStore) heartbeat(ctx context.Context, q querier, at time.Time, workerID string, ids []string) error {
	const stmt = `UPDATE gotasks_task SET heartbeat_at = $1
		WHERE id IN (SELECT value FROM json_each($4)) AND backend = $2 AND worker_id = $3`
	_, err := s.sq(q).ExecContext(ctx, stmt, s.ts(at), s.backend(), workerID, jsonArray(ids))
	return err
}

func (s *sqliteStore) release(ctx context.Context, q querier, workerID string, refs []claimRef) (int64, error) {
	const stmt = `WITH v AS (SELECT j.value->>'$[0]' AS vid, j.value->>'$[1]' AS vattempt FROM jsonb_each($1) AS j)
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
	res, err := s.sq(q).ExecContext(ctx, stmt, jsonArray(pairs), workerID)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// sqliteRescue: see pgRescue.
const sqliteRescue = `UPDATE gotasks_task SET
	status = CASE WHEN attempts >= max_attempts THEN 'FAILED' ELSE 'READY' END,
	finished_at = CASE WHEN attempts >= max_attempts THEN $1 ELSE NULL END,
	errors = json_insert(CASE WHEN json_valid(errors) THEN errors ELSE '[]' END, '$[#]', json_object('attempt', attempts,
		'type', '` + WorkerLostType + `',
		'message', ` + rescueMessage + `,
		'at', $2)),
	worker_id = NULL, heartbeat_at = NULL
WHERE backend = $3 AND status = 'RUNNING'
	AND ` + rescueCondition + `
RETURNING ` + resultColumns

func (s *sqliteStore) rescue(ctx context.Context, q querier, at time.Time, self string, heartbeatCutoff, runCutoff time.Time,
	orphansOf string) ([]*row, error) {
	var rescued []*row
	err := s.counted(ctx, q, func(q querier) (countDeltas, error) {
		rows, err := q.QueryContext(ctx, sqliteRescue, s.ts(at), at.Format(time.RFC3339Nano), s.backend(),
			s.ts(heartbeatCutoff), s.ts(runCutoff), self, orphansOf)
		if err != nil {
			return nil, err
		}
		if rescued, err = scanWorkerRows(rows, s.log, s.backend(), "rescued"); err != nil {
			return nil, err
		}
		d := countDeltas{}
		for _, r := range rescued {
			d.add(r.Queue, r.Status, +1) // FAILED: out of attempts
		}
		return d, nil
	})
	if err != nil {
		return nil, err
	}
	return rescued, nil
}
