package database_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/benchseed"
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
			now := time.Now()
			be := adminSeedMillion(b, dialect, rows, 5, now)
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

// BenchmarkAdminMillionRowsOneQueue is the overview of
// BenchmarkAdminMillionRows when the million tasks are all in one queue
// (SQLite cannot split the count by queue, only by status):
//
//	go test ./backends/database -run '^$' -bench BenchmarkAdminMillionRowsOneQueue -benchtime 20x
func BenchmarkAdminMillionRowsOneQueue(b *testing.B) {
	for _, dialect := range dbtest.Dialects {
		b.Run(dialect, func(b *testing.B) {
			be := adminSeedMillion(b, dialect, 1_000_000, 1, time.Now())
			b.Run("Overview", func(b *testing.B) {
				for b.Loop() {
					if _, err := be.Stats(context.Background(), time.Hour); err != nil {
						b.Fatal(err)
					}
				}
			})
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

// adminSeedMillion opens a backend on a fresh database of dialect and
// inserts n finished tasks in queues queues (see benchseed.Finished).
func adminSeedMillion(b *testing.B, dialect string, n, queues int, now time.Time) *database.Backend {
	b.Helper()
	be, err := database.Open(context.Background(), dbtest.DSN(b, dialect), database.WithAutoMigrate(true),
		database.WithName("bench"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	start := time.Now()
	if err := benchseed.Finished(context.Background(), be, be.Name(), n, queues, now); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d rows in %v", n, time.Since(start).Round(time.Millisecond))
	return be
}

// BenchmarkQueueDepths measures QueueDepths, read at every metrics scrape,
// over a backlog of READY tasks (half of them due, half deferred; 5 queues;
// 20 RUNNING) next to 1,000,000 finished tasks, which it never reads:
//
//	go test ./backends/database -run '^$' -bench BenchmarkQueueDepths -benchtime 20x
func BenchmarkQueueDepths(b *testing.B) {
	for _, dialect := range dbtest.Dialects {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			now := time.Now()
			be := adminSeedMillion(b, dialect, 1_000_000, 5, now)
			ready := 0
			for _, backlog := range []int{1_000, 10_000, 100_000} {
				var reqs []*tasks.EnqueueRequest
				for ; ready < backlog; ready++ {
					runAfter := now.Add(-time.Duration(ready) * time.Millisecond)
					if ready%2 == 1 {
						runAfter = now.Add(time.Hour)
					}
					reqs = append(reqs, &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: "app.task", Args: []byte(`{}`),
						Queue: fmt.Sprintf("q%d", ready%5), RunAfter: runAfter, MaxAttempts: 1})
				}
				for len(reqs) > 0 {
					n := min(len(reqs), 10_000)
					if _, err := be.EnqueueMany(ctx, reqs[:n]); err != nil {
						b.Fatal(err)
					}
					reqs = reqs[n:]
				}
				if backlog == 1_000 {
					if _, err := be.DB().DB.ExecContext(ctx, `UPDATE gotasks_task SET status = 'RUNNING', worker_id = 'w'
						WHERE id IN (SELECT id FROM gotasks_task WHERE status = 'READY' LIMIT 20)`); err != nil {
						b.Fatal(err)
					}
				}
				if _, err := be.DB().DB.ExecContext(ctx, `ANALYZE`); err != nil {
					b.Fatal(err)
				}
				b.Run(fmt.Sprintf("Ready%d", backlog), func(b *testing.B) {
					for b.Loop() {
						if _, err := be.QueueDepths(ctx); err != nil {
							b.Fatal(err)
						}
					}
				})
			}
		})
	}
}
