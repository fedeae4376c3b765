package database_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// exampleSync is the task of Example_scheduling: one pending sync per
// account (WithUnique ByArgs).
var exampleSync = tasks.Define("database_test.example.sync", func(ctx context.Context, account int) (string, error) {
	return fmt.Sprintf("synced %d", account), nil
}, tasks.WithUnique(tasks.UniqueOpts{ByArgs: true}), tasks.WithQueue("sync"))

// Unique tasks, a durable cron schedule and a global queue limit on the
// embedded SQLite default.
func Example_scheduling() {
	ctx := context.Background()
	dsn, cleanup := exampleDB()
	defer cleanup()
	b, err := database.Open(ctx, dsn, database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()

	// A double click enqueues one sync.
	first, _ := exampleSync.Enqueue(ctx, 42)
	second, _ := exampleSync.Enqueue(ctx, 42)
	fmt.Println("duplicate:", second.Duplicate, "same task:", first.ID == second.ID)

	// Every night at 02:30 Paris time, stored in the database: every worker
	// runs the scheduler, and one task is enqueued per tick.
	if err := database.ScheduleTask(ctx, b, "nightly-sync", exampleSync, 7,
		database.ScheduleSpec{Cron: "30 2 * * *", TimeZone: "Europe/Paris"}); err != nil {
		log.Fatal(err)
	}
	s, _ := b.GetSchedule(ctx, "nightly-sync")
	fmt.Println("schedule:", s.Cron, s.TimeZone, "paused:", s.Paused)

	// At most 2 sync tasks run at once across all workers.
	if err := b.SetQueueLimit(ctx, "sync", 2); err != nil {
		log.Fatal(err)
	}
	w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, NoScheduler: true,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}
	_ = first.Refresh(ctx)
	v, _ := first.Value()
	fmt.Println(v)
	// Output:
	// duplicate: true same task: true
	// schedule: 30 2 * * * Europe/Paris paused: false
	// synced 42
}
