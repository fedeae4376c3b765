// Package benchseed fills a gotasks table with a million finished tasks,
// fast (one statement per dialect), for the benchmarks of the admin API and
// the dashboard.
package benchseed

import (
	"context"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/backends/database"
)

// Finished inserts n finished tasks of backend into b's table, the newest
// finished at now, one every 100 ms before it (so 36,000 in the last hour),
// and refreshes the planner's statistics. They are 90 % SUCCESSFUL, 8 %
// FAILED (with one error each), 2 % CANCELLED, spread evenly over queues
// queues ("q0", "q1", …) and 20 task names ("app.task_0"…); their ids sort
// by enqueue time like the UUIDv7 ids gotasks makes.
func Finished(ctx context.Context, b *database.Backend, backend string, n, queues int, now time.Time) error {
	db := b.DB().DB
	var (
		stmts []string
		args  []any
	)
	switch b.Dialect() {
	case database.Postgres:
		stmts = []string{`INSERT INTO gotasks_task (id, task_name, status, args, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, worker_ids, errors, return_value)
SELECT lpad(to_hex(g), 12, '0') || '-7000-8000-000000000000', 'app.task_' || (g % 20), st,
	'{"user_id": 42, "note": "hello"}', 'q' || (g % $4), $3, t, t, t, t + interval '50 ms', t, 1, '["w1"]',
	CASE st WHEN 'FAILED' THEN '[{"attempt":1,"type":"*errors.errorString","message":"boom","at":"2026-01-01T00:00:00Z"}]' ELSE '[]' END::jsonb,
	CASE st WHEN 'SUCCESSFUL' THEN '1' END::json
FROM (SELECT g, $1::timestamptz - make_interval(secs => ($2 - g) * 0.1) AS t,
	CASE WHEN g % 100 < 90 THEN 'SUCCESSFUL' WHEN g % 100 < 98 THEN 'FAILED' ELSE 'CANCELLED' END AS st
	FROM generate_series(1, $2::int) g) s`, `VACUUM ANALYZE gotasks_task`}
		args = []any{now.UTC(), n, backend, queues}
	case database.SQLite:
		stmts = []string{`INSERT INTO gotasks_task (id, task_name, status, args, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, worker_ids, errors, return_value)
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $2),
s AS (SELECT n, strftime('%Y-%m-%d %H:%M:%f', $1 - ($2 - n) * 0.1, 'unixepoch') || '000' AS t,
	CASE WHEN n % 100 < 90 THEN 'SUCCESSFUL' WHEN n % 100 < 98 THEN 'FAILED' ELSE 'CANCELLED' END AS st FROM g)
SELECT printf('%012x', n) || '-7000-8000-000000000000', 'app.task_' || (n % 20), st,
	'{"user_id": 42, "note": "hello"}', 'q' || (n % $4), $3, t, t, t, t, t, 1, '["w1"]',
	CASE st WHEN 'FAILED' THEN '[{"attempt":1,"type":"*errors.errorString","message":"boom","at":"2026-01-01T00:00:00Z"}]' ELSE '[]' END,
	CASE st WHEN 'SUCCESSFUL' THEN '1' END
FROM s`, `ANALYZE`}
		args = []any{float64(now.UnixMicro()) / 1e6, n, backend, queues}
	default:
		return fmt.Errorf("benchseed: dialect %q", b.Dialect())
	}
	for i, s := range stmts {
		var a []any
		if i == 0 {
			a = args
		}
		if _, err := db.ExecContext(ctx, s, a...); err != nil {
			return fmt.Errorf("benchseed: %w", err)
		}
	}
	// The rows went in by hand: SQLite's counters of finished tasks.
	if err := b.RecountFinished(ctx); err != nil {
		return fmt.Errorf("benchseed: %w", err)
	}
	return nil
}
