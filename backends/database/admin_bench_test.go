package database_test

import (
	"context"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// BenchmarkAdminMillionRows measures what the dashboard asks of the admin
// API over a table of 1,000,000 finished tasks (90 % SUCCESSFUL, 8 %
// FAILED, 2 % CANCELLED; 5 queues, 20 task names; one finished every
// 100 ms, so 36,000 in the last hour): the overview (Stats) and filtered
// list pages. The target is 200 ms per call on both dialects (issue 14):
//
//	go test ./backends/database -run '^$' -bench BenchmarkAdminMillionRows -benchtime 20x
//
// Seeding takes about 15 s per dialect.
func BenchmarkAdminMillionRows(b *testing.B) {
	const rows = 1_000_000
	for _, dialect := range dbtest.Dialects {
		b.Run(dialect, func(b *testing.B) {
			be, err := database.Open(context.Background(), dbtest.DSN(b, dialect), database.WithAutoMigrate(true),
				database.WithName("bench"))
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			now := time.Now()
			adminSeedMillion(b, be, rows, now)
			ctx := context.Background()
			mid, err := be.ListTasks(ctx, database.ListParams{TaskFilter: database.TaskFilter{
				EnqueuedBefore: now.Add(-rows / 2 * 100 * time.Millisecond)}, Limit: 1})
			if err != nil || len(mid.Tasks) != 1 {
				b.Fatalf("middle of the list: %v", err)
			}
			cases := []struct {
				name string
				call func() (int, error)
			}{
				{"Overview", func() (int, error) {
					st, err := be.Stats(ctx, time.Hour)
					if err != nil {
						return 0, err
					}
					return len(st.Queues), nil
				}},
				{"List/FirstPage", adminBenchList(be, database.ListParams{})},
				{"List/DeepPage", adminBenchList(be, database.ListParams{Cursor: mid.NextCursor})},
				{"List/Failed", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					Statuses: []tasks.Status{tasks.StatusFailed}}})},
				{"List/FailedInQueue", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					Statuses: []tasks.Status{tasks.StatusFailed}, Queues: []string{"q3"}}})},
				{"List/FailedOrCancelled", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					Statuses: []tasks.Status{tasks.StatusFailed, tasks.StatusCancelled}}})},
				{"List/TaskAndStatus", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					TaskNames: []string{"app.task_7"}, Statuses: []tasks.Status{tasks.StatusSuccessful}}})},
				{"List/Queue", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					Queues: []string{"q2"}}})},
				{"List/FinishedLast30Min", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					FinishedAfter: now.Add(-30 * time.Minute)}})},
				{"List/Creator", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					Creator: "nobody@example.com"}})},
				{"List/VerboseName", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					VerboseName: "Nightly report"}})},
				{"List/IDPrefix", adminBenchList(be, database.ListParams{TaskFilter: database.TaskFilter{
					IDPrefix: mid.Tasks[0].ID[:6]}})},
				{"List/OldestFirst", adminBenchList(be, database.ListParams{Order: database.OldestFirst})},
			}
			for _, c := range cases {
				b.Run(c.name, func(b *testing.B) {
					for b.Loop() {
						if _, err := c.call(); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}

func adminBenchList(be *database.Backend, p database.ListParams) func() (int, error) {
	return func() (int, error) {
		page, err := be.ListTasks(context.Background(), p)
		if err != nil {
			return 0, err
		}
		return len(page.Tasks), nil
	}
}

// adminSeedMillion inserts n finished tasks into be's table, the newest
// finished at now, and refreshes the planner's statistics.
func adminSeedMillion(b *testing.B, be *database.Backend, n int, now time.Time) {
	b.Helper()
	ctx := context.Background()
	db := be.DB().DB
	var stmts []string
	var args []any
	switch be.Dialect() {
	case database.Postgres:
		stmts = []string{`INSERT INTO gotasks_task (id, task_name, status, args, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, worker_ids, errors, return_value)
SELECT lpad(to_hex(g), 12, '0') || '-7000-8000-000000000000', 'app.task_' || (g % 20), st,
	'{"user_id": 42, "note": "hello"}', 'q' || (g % 5), 'bench', t, t, t, t + interval '50 ms', t, 1, '["w1"]',
	CASE st WHEN 'FAILED' THEN '[{"attempt":1,"type":"*errors.errorString","message":"boom","at":"2026-01-01T00:00:00Z"}]' ELSE '[]' END::jsonb,
	CASE st WHEN 'SUCCESSFUL' THEN '1' END::json
FROM (SELECT g, $1::timestamptz - make_interval(secs => ($2 - g) * 0.1) AS t,
	CASE WHEN g % 100 < 90 THEN 'SUCCESSFUL' WHEN g % 100 < 98 THEN 'FAILED' ELSE 'CANCELLED' END AS st
	FROM generate_series(1, $2::int) g) s`, `VACUUM ANALYZE gotasks_task`}
		args = []any{now.UTC(), n}
	case database.SQLite:
		stmts = []string{`INSERT INTO gotasks_task (id, task_name, status, args, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, worker_ids, errors, return_value)
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < $2),
s AS (SELECT n, strftime('%Y-%m-%d %H:%M:%f', $1 - ($2 - n) * 0.1, 'unixepoch') || '000' AS t,
	CASE WHEN n % 100 < 90 THEN 'SUCCESSFUL' WHEN n % 100 < 98 THEN 'FAILED' ELSE 'CANCELLED' END AS st FROM g)
SELECT printf('%012x', n) || '-7000-8000-000000000000', 'app.task_' || (n % 20), st,
	'{"user_id": 42, "note": "hello"}', 'q' || (n % 5), 'bench', t, t, t, t, t, 1, '["w1"]',
	CASE st WHEN 'FAILED' THEN '[{"attempt":1,"type":"*errors.errorString","message":"boom","at":"2026-01-01T00:00:00Z"}]' ELSE '[]' END,
	CASE st WHEN 'SUCCESSFUL' THEN '1' END
FROM s`, `ANALYZE`}
		args = []any{float64(now.UnixMicro()) / 1e6, n}
	}
	start := time.Now()
	for i, s := range stmts {
		var a []any
		if i == 0 {
			a = args
		}
		if _, err := db.ExecContext(ctx, s, a...); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	b.Logf("seeded %d rows in %v", n, time.Since(start).Round(time.Millisecond))
}
