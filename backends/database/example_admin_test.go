package database_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// An operator's flow with the admin API: find the failed tasks, look at
// the last error of one, retry them all, and pause a queue while a
// downstream service is away.
func ExampleBackend_ListTasks() {
	ctx := context.Background()
	dsn, cleanup := exampleDB()
	defer cleanup()
	b, err := database.Open(ctx, dsn, database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()

	// Two tasks fail for good (a negative side is a permanent error here:
	// one attempt only).
	area := exampleArea.Using(tasks.WithMaxAttempts(1))
	for _, r := range []exampleRect{{W: -1, H: 2}, {W: 2, H: -3}} {
		if _, err := area.Enqueue(ctx, r); err != nil {
			log.Fatal(err)
		}
	}
	w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}

	failed := database.TaskFilter{Statuses: []tasks.Status{tasks.StatusFailed}}
	page, err := b.ListTasks(ctx, database.ListParams{TaskFilter: failed, Limit: 50})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("failed:", len(page.Tasks), "more pages:", page.NextCursor != "")
	last := page.Tasks[0].Errors[len(page.Tasks[0].Errors)-1]
	fmt.Println("last error:", last.Message)

	res, err := b.RetryMatching(ctx, failed)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("retried:", res.Affected)

	if err := b.PauseQueue(ctx, "default"); err != nil {
		log.Fatal(err)
	}
	st, err := b.Stats(ctx, 0)
	if err != nil {
		log.Fatal(err)
	}
	for _, q := range st.Queues {
		fmt.Println(q.Queue, "paused:", q.Paused, "ready:", q.Counts[tasks.StatusReady])
	}
	// Output:
	// failed: 2 more pages: false
	// last error: negative side
	// retried: 2
	// default paused: true ready: 2
}
