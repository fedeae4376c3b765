package database

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// The admin API's statements that are the same on both dialects once the
// dialect's forms are given: the stores embed adminStatements and add the
// ones whose SQL differs (store_postgres_admin.go, store_sqlite_admin.go).

// adminStatements runs the shared admin statements of one store.
type adminStatements struct {
	forms       sqlForms
	backendName func() string
}

func (a adminStatements) adminList(ctx context.Context, q querier, p ListParams, after *cursor, limit int) ([]*row, error) {
	query, args := adminListQuery(a.forms, a.backendName(), p, after, limit)
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	return scanResults(rows)
}

func (a adminStatements) adminSelectIDs(ctx context.Context, q querier, f TaskFilter, only []tasks.Status, after string, limit int) ([]string, error) {
	query, args := adminSelectIDsQuery(a.forms, a.backendName(), f, only, after, limit)
	return queryIDs(ctx, q, query, args...)
}

func (a adminStatements) finishedCounts(ctx context.Context, q querier, queue string) (map[string]map[tasks.Status]int64, error) {
	query, args := finishedCountsSQL(false), []any{a.backendName()}
	if queue != "" {
		query, args = finishedCountsSQL(true), append(args, queue)
	}
	return scanCounts(ctx, q, query, args...)
}

// scanCounts runs a statement that returns queue, status and count rows.
func scanCounts(ctx context.Context, q querier, query string, args ...any) (map[string]map[tasks.Status]int64, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]map[tasks.Status]int64{}
	for rows.Next() {
		var (
			queue, status string
			n             int64
		)
		if err := rows.Scan(&queue, &status, &n); err != nil {
			return nil, err
		}
		if out[queue] == nil {
			out[queue] = map[tasks.Status]int64{}
		}
		out[queue][tasks.Status(status)] = n
	}
	return out, rows.Err()
}

func (a adminStatements) queueDepths(ctx context.Context, q querier, at time.Time) ([]tasks.QueueDepth, error) {
	rows, err := q.QueryContext(ctx, queueDepthsSQL, a.backendName(), a.forms.ts(at))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []tasks.QueueDepth
	byQueue := map[string]int{} // index in out: a queue has a READY and a RUNNING line
	for rows.Next() {
		var (
			d      tasks.QueueDepth
			oldest *time.Time
		)
		if err := rows.Scan(&d.Queue, &d.Ready, &d.Scheduled, &d.Running, dbTime{&oldest}); err != nil {
			return nil, err
		}
		if oldest != nil {
			d.OldestDue = *oldest
		}
		i, seen := byQueue[d.Queue]
		if !seen {
			byQueue[d.Queue] = len(out)
			out = append(out, d)
			continue
		}
		o := &out[i]
		o.Ready += d.Ready
		o.Scheduled += d.Scheduled
		o.Running += d.Running
		if !d.OldestDue.IsZero() {
			o.OldestDue = d.OldestDue
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(x, y tasks.QueueDepth) int { return strings.Compare(x.Queue, y.Queue) })
	return out, nil
}

func (a adminStatements) queueNames(ctx context.Context, q querier) ([]string, error) {
	return queryIDs(ctx, q, queueNamesSQL, a.backendName())
}

func (a adminStatements) queueStates(ctx context.Context, q querier) ([]QueueInfo, error) {
	rows, err := q.QueryContext(ctx, pausedQueuesSQL, a.backendName())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []QueueInfo
	for rows.Next() {
		var (
			qi QueueInfo
			t  *time.Time
		)
		if err := rows.Scan(&qi.Name, dbTime{&t}); err != nil {
			return nil, err
		}
		if t != nil {
			qi.Paused, qi.PausedAt = true, *t
		}
		out = append(out, qi)
	}
	return out, rows.Err()
}

func (a adminStatements) touchWorker(ctx context.Context, q querier, id string, at time.Time, running int) (bool, error) {
	res, err := q.ExecContext(ctx, touchWorkerSQL, a.forms.ts(at), running, id)
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (a adminStatements) unregisterWorker(ctx context.Context, q querier, id string) error {
	_, err := q.ExecContext(ctx, deleteWorkerSQL, id)
	return err
}

func (a adminStatements) pruneWorkers(ctx context.Context, q querier, cutoff time.Time) (int64, error) {
	res, err := q.ExecContext(ctx, pruneWorkersSQL, a.backendName(), a.forms.ts(cutoff))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

func (a adminStatements) workers(ctx context.Context, q querier) ([]WorkerInfo, error) {
	return scanWorkers(ctx, q, a.backendName())
}

// deleteFinishedSQL deletes the finished tasks among the ids of parameter
// $2 (in the dialect's list form) and returns the columns ret of each.
// $1 backend.
func deleteFinishedSQL(forms sqlForms, ret string) string {
	return `DELETE FROM gotasks_task WHERE backend = $1 AND ` + forms.in("id", "$2") +
		` AND status IN ` + finishedStatuses + ` RETURNING ` + ret
}

func (a adminStatements) deleteFinished(ctx context.Context, q querier, ids []string) ([]string, error) {
	return queryIDs(ctx, q, deleteFinishedSQL(a.forms, "id"), a.backendName(), a.forms.list(ids))
}

// cancelManySQL cancels the READY tasks among the ids and returns the
// columns ret of each. $1 finished_at, $2 backend, $3 the ids.
func cancelManySQL(forms sqlForms, ret string) string {
	return `UPDATE gotasks_task SET status = 'CANCELLED', finished_at = $1
	WHERE backend = $2 AND ` + forms.in("id", "$3") + ` AND status = 'READY' RETURNING ` + ret
}

func (a adminStatements) cancelMany(ctx context.Context, q querier, ids []string, at time.Time) ([]string, error) {
	return queryIDs(ctx, q, cancelManySQL(a.forms, "id"), a.forms.ts(at), a.backendName(), a.forms.list(ids))
}

// retrySet is what a retry sets: READY, due at $1, no finish, no worker, no
// return value; the attempts and errors stay, and max_attempts is raised
// so that at least one attempt is left (greatest is the dialect's
// two-argument maximum).
func retrySet(greatest string) string {
	return `status = 'READY', run_after = $1, finished_at = NULL, worker_id = NULL, heartbeat_at = NULL,
	return_value = NULL, max_attempts = ` + greatest + `(max_attempts, attempts + 1)`
}
