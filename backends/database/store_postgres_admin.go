package database

import (
	"context"
	"encoding/json"
	"time"
)

// pgStore's admin statements whose SQL is PostgreSQL's own; the others are
// adminStatements (store_admin.go).

// pgForms: timestamptz parameters, text[] lists.
var pgForms = sqlForms{
	ts:   func(t time.Time) any { return t.UTC() },
	in:   func(col, ph string) string { return col + " = ANY(" + ph + "::text[])" },
	list: func(ss []string) any { return ss },
}

// pgRetrySQL retries the FAILED and CANCELLED tasks among the ids and wakes
// idle workers in the same statement. $1 now, $2 backend, $3 the ids.
var pgRetrySQL = `WITH u AS (UPDATE gotasks_task SET ` + retrySet("GREATEST") + `
	WHERE backend = $2 AND id = ANY($3::text[]) AND status IN ('FAILED', 'CANCELLED') RETURNING id),
n AS (SELECT pg_notify('` + wakeChannel + `', $2::text) FROM u LIMIT 1)
SELECT id FROM u WHERE (SELECT count(*) FROM n) >= 0`

func (s *pgStore) retry(ctx context.Context, q querier, ids []string, at time.Time) ([]string, error) {
	return queryIDs(ctx, q, pgRetrySQL, at.UTC(), s.backend(), ids)
}

// pgMinuteSQL counts the tasks finished since $2 by minute and status. $1
// backend.
const pgMinuteSQL = `SELECT date_trunc('minute', finished_at), status, count(*) FROM gotasks_task
	WHERE status IN ` + finishedStatuses + ` AND finished_at >= $2 AND backend = $1
	GROUP BY 1, 2`

func (s *pgStore) finishedPerMinute(ctx context.Context, q querier, since time.Time) ([]minuteStatus, error) {
	return queryMinutes(ctx, q, pgMinuteSQL, s.backend(), since.UTC())
}

// pgRegisterWorkerSQL inserts or replaces a worker's row. $1 id, $2
// backend, $3 host, $4 pid, $5 queues (JSON), $6 concurrency, $7 now.
const pgRegisterWorkerSQL = `INSERT INTO gotasks_worker (id, backend, host, pid, queues, concurrency, started_at, heartbeat_at)
	VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $7)
	ON CONFLICT (id) DO UPDATE SET backend = EXCLUDED.backend, host = EXCLUDED.host, pid = EXCLUDED.pid,
		queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, started_at = EXCLUDED.started_at,
		heartbeat_at = EXCLUDED.heartbeat_at, running = 0`

func (s *pgStore) registerWorker(ctx context.Context, q querier, w WorkerInfo) error {
	queues, _ := json.Marshal(nonNil(w.Queues))
	_, err := q.ExecContext(ctx, pgRegisterWorkerSQL, w.ID, s.backend(), w.Host, w.PID, string(queues),
		w.Concurrency, w.StartedAt.UTC())
	return err
}

// pgSetPausedSQL pauses ($3 a time; a paused queue keeps its first pause
// time) or resumes ($3 NULL) a queue; a resume wakes idle workers. $1
// backend, $2 queue.
const pgSetPausedSQL = `WITH u AS (INSERT INTO gotasks_queue (backend, name, paused_at) VALUES ($1, $2, $3)
	ON CONFLICT (backend, name) DO UPDATE SET paused_at = ` + keepFirstPause + ` RETURNING paused_at)
SELECT count(*) FROM u, LATERAL (SELECT pg_notify('` + wakeChannel + `', $1::text) WHERE u.paused_at IS NULL) n`

func (s *pgStore) setPaused(ctx context.Context, q querier, queue string, at *time.Time) error {
	var p any
	if at != nil {
		p = at.UTC()
	}
	var n int64
	return q.QueryRowContext(ctx, pgSetPausedSQL, s.backend(), queue, p).Scan(&n)
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

// recountFinished does nothing: PostgreSQL's finishedCounts counts the rows
// themselves (an index-only scan of gotasks_task_queue_idx).
func (s *pgStore) recountFinished(context.Context, querier) error { return nil }
