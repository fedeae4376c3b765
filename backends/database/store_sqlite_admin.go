package database

import (
	"context"
	"time"
)

// sqliteStore's admin statements whose SQL is SQLite's own; the others are
// adminStatements (store_admin.go). SQLite has no notifications: the
// Backend wakes its own process's workers, and other processes find
// retried tasks and resumed queues at their next poll.

// sqliteForms: text times, JSON array lists.
var sqliteForms = sqlForms{
	ts:              func(t time.Time) any { return textTime(t) },
	in:              func(col, ph string) string { return col + " IN (SELECT value FROM json_each(" + ph + "))" },
	list:            func(ss []string) any { return jsonArray(ss) },
	failedIndexOnly: true,
}

// sqliteMinuteSQL counts the tasks finished since $2 by minute (the first
// 16 characters of the stored text time) and status. $1 backend.
const sqliteMinuteSQL = `SELECT substr(finished_at, 1, 16), status, count(*) FROM gotasks_task
	WHERE status IN ` + finishedStatuses + ` AND finished_at >= $2 AND backend = $1
	GROUP BY 1, 2`

func (s *sqliteStore) finishedPerMinute(ctx context.Context, q querier, since time.Time) ([]minuteStatus, error) {
	return queryMinutes(ctx, q, sqliteMinuteSQL, s.backend(), textTime(since))
}

// sqliteRegisterWorkerSQL inserts or replaces a worker's row. $1 id, $2
// backend, $3 host, $4 pid, $5 queues (JSON), $6 concurrency, $7 now.
const sqliteRegisterWorkerSQL = `INSERT INTO gotasks_worker (id, backend, host, pid, queues, concurrency, started_at, heartbeat_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
	ON CONFLICT (id) DO UPDATE SET backend = excluded.backend, host = excluded.host, pid = excluded.pid,
		queues = excluded.queues, concurrency = excluded.concurrency, started_at = excluded.started_at,
		heartbeat_at = excluded.heartbeat_at, running = 0`

func (s *sqliteStore) registerWorker(ctx context.Context, q querier, w WorkerInfo) error {
	_, err := q.ExecContext(ctx, sqliteRegisterWorkerSQL, w.ID, s.backend(), w.Host, w.PID,
		jsonArray(nonNil(w.Queues)), w.Concurrency, textTime(w.StartedAt))
	return err
}

// sqliteSetPausedSQL pauses ($3 a time; a paused queue keeps its first
// pause time) or resumes ($3 NULL) a queue. $1 backend, $2 queue.
const sqliteSetPausedSQL = `INSERT INTO gotasks_queue (backend, name, paused_at) VALUES ($1, $2, $3)
	ON CONFLICT (backend, name) DO UPDATE SET paused_at = ` + keepFirstPause

func (s *sqliteStore) setPaused(ctx context.Context, q querier, queue string, at *time.Time) error {
	var p any
	if at != nil {
		p = textTime(*at)
	}
	_, err := q.ExecContext(ctx, sqliteSetPausedSQL, s.backend(), queue, p)
	return err
}
