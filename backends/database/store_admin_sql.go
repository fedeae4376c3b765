package database

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// SQL of the admin API that both stores share, built with what differs
// between the dialects passed in (sqlForms): how a time and a list of
// strings are sent.

// sqlForms is how a dialect sends what the admin statements need.
type sqlForms struct {
	ts func(time.Time) any // a time parameter
	// in returns the condition "col is one of the list in parameter ph".
	in func(col, ph string) string
	// list encodes a list of strings as one parameter.
	list func([]string) any
	// failedIndexOnly: instead of the status index, an index in id order
	// of the FAILED and CANCELLED tasks (SQLite's gotasks_task_failed_idx:
	// its index entries are dear); SUCCESSFUL ones are read in id order
	// from the primary key.
	failedIndexOnly bool
}

// finishedStatuses is the SQL list of the finished statuses, word for word
// the predicate of gotasks_task_finished_idx (see pruneWhere).
const finishedStatuses = `('SUCCESSFUL', 'FAILED', 'CANCELLED')`

// sqlBuilder collects the conditions and parameters of one statement.
type sqlBuilder struct {
	forms sqlForms
	where []string
	args  []any
}

// param adds a parameter and returns its placeholder.
func (w *sqlBuilder) param(v any) string {
	w.args = append(w.args, v)
	return fmt.Sprintf("$%d", len(w.args))
}

// cond adds a condition in which each ? is replaced by the next of vs.
func (w *sqlBuilder) cond(c string, vs ...any) {
	for _, v := range vs {
		c = strings.Replace(c, "?", w.param(v), 1)
	}
	w.where = append(w.where, c)
}

func (w *sqlBuilder) whereSQL() string { return strings.Join(w.where, " AND ") }

// finishedPred is the predicate of the admin indexes (and of
// gotasks_task_finished_idx), word for word: SQLite uses a partial index
// only when the query's WHERE contains its terms.
const finishedPred = `status IN ` + finishedStatuses

// failedPred is the predicate of SQLite's gotasks_task_failed_idx, word
// for word (see sqlForms.failedIndexOnly).
const failedPred = `status IN ('FAILED', 'CANCELLED')`

// branch is one part of an admin statement by status: the finished tasks
// (read through the admin indexes, whose predicate is finishedPred), the
// READY ones (through the claim index) or the RUNNING ones (the running
// index). narrow lists the statuses of a finished branch that are asked
// for, when not all three are.
type branch struct {
	pred   string
	narrow []string
}

// statusBranches returns the branches of the statuses asked for (all when
// none is), kept to those of only when only is not nil. None: nothing
// matches. Where an index of the FAILED and CANCELLED tasks stands in for
// the status index (failedIndexOnly), the finished tasks are two branches:
// the SUCCESSFUL ones, read from the primary key, and the others, from
// that index.
func statusBranches(asked, only []tasks.Status, failedIndexOnly bool) []branch {
	want := statusStrings(asked)
	switch {
	case only != nil:
		want = intersectStatuses(asked, only)
	case len(asked) == 0:
		want = statusStrings(allStatuses)
	}
	var (
		out []branch
		fin []string
	)
	for _, st := range []tasks.Status{tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled} {
		if slices.Contains(want, string(st)) {
			fin = append(fin, string(st))
		}
	}
	switch {
	case len(fin) == 0:
	case !failedIndexOnly:
		b := branch{pred: finishedPred}
		if len(fin) < 3 {
			b.narrow = fin
		}
		out = append(out, b)
	default:
		if fin[0] == string(tasks.StatusSuccessful) {
			out = append(out, branch{pred: "status = '" + fin[0] + "'"})
			fin = fin[1:]
		}
		if len(fin) > 0 {
			b := branch{pred: failedPred}
			if len(fin) == 1 {
				b.narrow = fin
			}
			out = append(out, b)
		}
	}
	for _, st := range []tasks.Status{tasks.StatusReady, tasks.StatusRunning} {
		if slices.Contains(want, string(st)) {
			out = append(out, branch{pred: "status = '" + string(st) + "'"})
		}
	}
	return out
}

// allStatuses are the five statuses.
var allStatuses = []tasks.Status{tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful,
	tasks.StatusFailed, tasks.StatusCancelled}

// branchWhere starts a new WHERE for br (the builder keeps its parameters)
// and adds the conditions of f but its statuses.
func (w *sqlBuilder) branchWhere(backend string, br branch, f TaskFilter) {
	w.where = []string{br.pred}
	w.strings("status", br.narrow)
	w.filter(backend, f)
}

// filter adds the conditions of f for backend, but its statuses (see
// statusBranches).
func (w *sqlBuilder) filter(backend string, f TaskFilter) {
	w.cond("backend = ?", backend)
	w.strings("queue", f.Queues)
	w.strings("task_name", f.TaskNames)
	if f.Creator != "" {
		// The second term is the predicate of the partial index
		// gotasks_task_creator_idx, which a parameter alone does not
		// prove.
		w.cond("creator = ? AND creator <> ''", f.Creator)
	}
	if f.VerboseName != "" {
		w.cond("verbose_name = ? AND verbose_name <> ''", f.VerboseName) // see Creator
	}
	if f.IDPrefix != "" {
		// A range on the primary key: ids are ASCII, and the prefix's
		// successor bounds it (no LIKE, whose escaping and index use
		// differ between the dialects).
		w.cond("id >= ?", f.IDPrefix)
		if hi, ok := prefixSuccessor(f.IDPrefix); ok {
			w.cond("id < ?", hi)
		}
	}
	if !f.EnqueuedAfter.IsZero() {
		w.cond("enqueued_at >= ?", w.forms.ts(f.EnqueuedAfter))
	}
	if !f.EnqueuedBefore.IsZero() {
		w.cond("enqueued_at < ?", w.forms.ts(f.EnqueuedBefore))
	}
	if !f.FinishedAfter.IsZero() {
		w.cond("finished_at >= ?", w.forms.ts(f.FinishedAfter))
	}
	if !f.FinishedBefore.IsZero() {
		w.cond("finished_at < ?", w.forms.ts(f.FinishedBefore))
	}
}

// strings adds "col is one of vs" when vs is not empty.
func (w *sqlBuilder) strings(col string, vs []string) {
	switch len(vs) {
	case 0:
	case 1:
		w.cond(col+" = ?", vs[0])
	default:
		w.where = append(w.where, w.forms.in(col, w.param(w.forms.list(vs))))
	}
}

// prefixSuccessor returns the smallest string greater than every string
// that starts with p, when there is one.
func prefixSuccessor(p string) (string, bool) {
	b := []byte(p)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1]), true
		}
	}
	return "", false
}

func statusStrings(ss []tasks.Status) []string {
	out := make([]string, 0, len(ss))
	for _, s := range ss {
		out = append(out, string(s))
	}
	return out
}

// intersectStatuses returns the statuses of only that asked allows (all of
// only when asked is empty).
func intersectStatuses(asked, only []tasks.Status) []string {
	if len(asked) == 0 {
		return statusStrings(only)
	}
	var out []string
	for _, o := range only {
		for _, a := range asked {
			if a == o {
				out = append(out, string(o))
				break
			}
		}
	}
	return out
}

// adminListQuery builds the statement of one page of ListTasks: per
// status branch, the filter and the keyset condition after the cursor, in
// id order (ids are UUIDv7, so id order is enqueue order), at most limit;
// then the branches merged in that order.
func adminListQuery(forms sqlForms, backend string, p ListParams, after *cursor, limit int) (string, []any) {
	dir, cmp := "DESC", "<"
	if p.Order == OldestFirst {
		dir, cmp = "ASC", ">"
	}
	var afterID string
	if after != nil {
		afterID = after.id
	}
	return branchQuery(forms, backend, p.TaskFilter, nil, resultColumns, afterID, cmp, dir, limit)
}

// adminSelectIDsQuery selects, oldest first, at most limit ids of the tasks
// that match f with a status of only, after the id after ("" from the
// start): one batch of a bulk action.
func adminSelectIDsQuery(forms sqlForms, backend string, f TaskFilter, only []tasks.Status, after string, limit int) (string, []any) {
	return branchQuery(forms, backend, f, only, "id", after, ">", "ASC", limit)
}

// branchQuery selects cols of the tasks matching f (statuses kept to only
// when not nil) whose id compares cmp to after (when set), in id order dir,
// at most limit: one statement per status branch, merged.
func branchQuery(forms sqlForms, backend string, f TaskFilter, only []tasks.Status, cols, after, cmp, dir string,
	limit int) (string, []any) {
	w := &sqlBuilder{forms: forms}
	var parts []string
	for _, br := range statusBranches(f.Statuses, only, forms.failedIndexOnly) {
		w.branchWhere(backend, br, f)
		if after != "" {
			w.cond("id "+cmp+" ?", after)
		}
		parts = append(parts, fmt.Sprintf("SELECT %s FROM gotasks_task WHERE %s ORDER BY id %s LIMIT %d",
			cols, w.whereSQL(), dir, limit))
	}
	switch len(parts) {
	case 0:
		return "SELECT " + cols + " FROM gotasks_task WHERE 1 = 0", nil
	case 1:
		return parts[0], w.args
	}
	for i, q := range parts {
		parts[i] = fmt.Sprintf("SELECT %s FROM (%s) AS b%d", cols, q, i)
	}
	return strings.Join(parts, "\nUNION ALL\n") + fmt.Sprintf("\nORDER BY id %s LIMIT %d", dir, limit), w.args
}

// queryIDs runs a statement that returns one id per row.
func queryIDs(ctx context.Context, q querier, query string, args ...any) ([]string, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// finishedCountsSQL counts the backend's finished tasks by queue and
// status ($1 backend, and $2 queue when one is asked for): an index-only
// scan of gotasks_task_queue_idx. The READY and RUNNING ones are counted by
// queueDepthsSQL.
func finishedCountsSQL(oneQueue bool) string {
	q := ""
	if oneQueue {
		q = " AND queue = $2"
	}
	return `SELECT queue, status, count(*) FROM gotasks_task WHERE ` + finishedPred + ` AND backend = $1` + q + `
	GROUP BY queue, status`
}

// queueDepthsSQL counts the backend's READY and RUNNING tasks by queue:
// the READY ones through the claim index (gotasks_task_claim_idx, whose
// predicate the first branch repeats), due at $2 or later, with the
// run-after time of the oldest due one; the RUNNING ones through the
// running index. No finished row is read. A queue has a line per branch
// it is in: queue, ready, scheduled, running, oldest due (NULL when none
// is due). $1 backend, $2 now. It serves QueueDepths and the overview's
// active counts and oldest due task (Stats).
const queueDepthsSQL = `SELECT queue, count(*) FILTER (WHERE run_after <= $2), count(*) FILTER (WHERE run_after > $2),
	0, min(run_after) FILTER (WHERE run_after <= $2)
FROM gotasks_task WHERE status = 'READY' AND backend = $1 GROUP BY queue
UNION ALL
SELECT queue, 0, 0, count(*), NULL FROM gotasks_task WHERE status = 'RUNNING' AND backend = $1 GROUP BY queue`

// queueNamesSQL lists the distinct queues of the backend's tasks: of the
// finished ones with one index probe per queue (a loose index scan of
// gotasks_task_queue_idx), not a scan of every row; of the others through
// the claim and running indexes. $1 backend.
const queueNamesSQL = `WITH RECURSIVE q(name) AS (
	SELECT min(queue) FROM gotasks_task WHERE ` + finishedPred + ` AND backend = $1
	UNION ALL
	SELECT (SELECT min(queue) FROM gotasks_task WHERE ` + finishedPred + ` AND backend = $1 AND queue > q.name)
	FROM q WHERE q.name IS NOT NULL)
SELECT name FROM q WHERE name IS NOT NULL
UNION
SELECT queue FROM gotasks_task WHERE status = 'READY' AND backend = $1
UNION
SELECT queue FROM gotasks_task WHERE status = 'RUNNING' AND backend = $1`

// pausedQueuesSQL lists the queues with a row in gotasks_queue. $1 backend.
const pausedQueuesSQL = `SELECT name, paused_at FROM gotasks_queue WHERE backend = $1`

// pausedFilter is the claim's condition that leaves paused queues out ($1
// is the backend in every claim statement).
const pausedFilter = ` AND queue NOT IN (SELECT name FROM gotasks_queue WHERE backend = $1 AND paused_at IS NOT NULL)`

// keepFirstPause is the paused_at an upsert of gotasks_queue sets: NULL
// for a resume, else the first pause time of the queue (the new one when
// it was not paused).
const keepFirstPause = `CASE WHEN excluded.paused_at IS NULL THEN NULL
	ELSE COALESCE(gotasks_queue.paused_at, excluded.paused_at) END`

// workersSQL lists the backend's registered workers. $1 backend.
const workersSQL = `SELECT id, host, pid, queues, concurrency, started_at, heartbeat_at, running
	FROM gotasks_worker WHERE backend = $1 ORDER BY started_at, id`

// touchWorkerSQL refreshes a worker's row. $1 heartbeat_at, $2 running, $3 id.
const touchWorkerSQL = `UPDATE gotasks_worker SET heartbeat_at = $1, running = $2 WHERE id = $3`

// deleteWorkerSQL removes a worker's row. $1 id.
const deleteWorkerSQL = `DELETE FROM gotasks_worker WHERE id = $1`

// pruneWorkersSQL removes the rows of workers whose heartbeat stopped. $1
// backend, $2 cutoff.
const pruneWorkersSQL = `DELETE FROM gotasks_worker WHERE backend = $1 AND heartbeat_at < $2`

// scanWorkers reads workersSQL's rows.
func scanWorkers(ctx context.Context, q querier, backend string) ([]WorkerInfo, error) {
	rows, err := q.QueryContext(ctx, workersSQL, backend)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []WorkerInfo
	for rows.Next() {
		var (
			w                 WorkerInfo
			queues            []byte
			started, lastBeat *time.Time
		)
		if err := rows.Scan(&w.ID, &w.Host, &w.PID, &queues, &w.Concurrency, dbTime{&started}, dbTime{&lastBeat},
			&w.Running); err != nil {
			return nil, err
		}
		if err := decodeStrings(queues, &w.Queues); err != nil {
			return nil, fmt.Errorf("worker %s: queues: %w", w.ID, err)
		}
		if len(w.Queues) == 0 {
			w.Queues = nil
		}
		if started != nil {
			w.StartedAt = *started
		}
		if lastBeat != nil {
			w.HeartbeatAt = *lastBeat
		}
		out = append(out, w)
	}
	return out, rows.Err()
}

// minuteStatus is one row of finishedPerMinute: how many tasks finished
// with status in the minute that starts at minute.
type minuteStatus struct {
	minute time.Time
	status tasks.Status
	n      int64
}

// queryMinutes runs a finishedPerMinute statement: minute (a time, or
// text "YYYY-MM-DD HH:MM" in UTC), status, count.
func queryMinutes(ctx context.Context, q querier, query string, args ...any) ([]minuteStatus, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []minuteStatus
	for rows.Next() {
		var (
			m      any
			status string
			n      int64
		)
		if err := rows.Scan(&m, &status, &n); err != nil {
			return nil, err
		}
		var t time.Time
		switch v := m.(type) {
		case time.Time:
			t = v.UTC()
		case string:
			t, err = time.Parse("2006-01-02 15:04", v)
		case []byte:
			t, err = time.Parse("2006-01-02 15:04", string(v))
		default:
			err = fmt.Errorf("minute of type %T", m)
		}
		if err != nil {
			return nil, fmt.Errorf("finished per minute: %w", err)
		}
		out = append(out, minuteStatus{minute: t, status: tasks.Status(status), n: n})
	}
	return out, rows.Err()
}
