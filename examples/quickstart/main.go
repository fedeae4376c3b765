// Command quickstart is the newcomer's tour of gotasks on the embedded
// SQLite default: it defines tasks (package exampletasks), enqueues them
// into a SQLite file, runs a database worker until the queue is empty, and
// prints each typed result.
//
//	go run ./examples/quickstart
//
// Flags: --database (default: a fresh file in a temporary directory).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "gotasks-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	dsn := flag.String("database", "sqlite://"+filepath.Join(dir, "tasks.db"), "database DSN")
	flag.Parse()
	slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	ctx := context.Background()

	// 1. Open the backend (SQLite migrates itself) and make it the default.
	b, err := database.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	fmt.Printf("backend %q on %s (%s), flags %v\n\n", b.Name(), b.Dialect(), *dsn, b.Capabilities())

	disconnect := signals.TaskEnqueued.Connect(func(_ context.Context, _ string, r *tasks.RawResult) {
		fmt.Printf("enqueued  %-22s queue=%-8s priority=%-3d id=%s\n", r.TaskName, r.Queue, r.Priority, r.ID)
	})

	// 2. Enqueue: typed arguments, typed result handles.
	email, err := exampletasks.SendEmail.Using(tasks.WithCreator("user:42")).
		Enqueue(ctx, exampletasks.EmailArgs{To: "ada@example.com", Subject: "Welcome"})
	if err != nil {
		return err
	}
	sums, err := exampletasks.Sum.EnqueueMany(ctx, [][]int{{1, 2, 3}, {10, 20}, {}})
	if err != nil {
		return err
	}
	report, err := exampletasks.Report.Enqueue(ctx, exampletasks.ReportArgs{Name: "monthly", Rows: 500})
	if err != nil {
		return err
	}
	flaky, err := exampletasks.Flaky.Enqueue(ctx, "job-7")
	if err != nil {
		return err
	}
	bad, err := exampletasks.Divide.Enqueue(ctx, [2]int{1, 0})
	if err != nil {
		return err
	}
	disconnect()

	// 3. Run a worker until no task is left (go run ./examples/worker --batch
	// does the same in a separate process).
	w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 20 * time.Millisecond})
	if err != nil {
		return err
	}
	start := time.Now()
	if err := w.Run(ctx); err != nil {
		return err
	}
	fmt.Printf("\nworker processed %d attempts in %v\n\n", w.Processed(), time.Since(start).Round(time.Millisecond))

	// 4. Read the typed results.
	if err := email.Refresh(ctx); err != nil {
		return err
	}
	id, err := email.Value()
	fmt.Printf("%-22s %-10s attempts=%d creator=%s value=%q err=%v\n", email.TaskName, email.Status, email.Attempts, email.Creator, id, err)
	for _, s := range sums {
		if err := s.Refresh(ctx); err != nil {
			return err
		}
		v, err := s.Value()
		fmt.Printf("%-22s %-10s attempts=%d args=%s value=%d err=%v\n", s.TaskName, s.Status, s.Attempts, s.Args, v, err)
	}
	if err := report.Wait(ctx); err != nil {
		return err
	}
	rv, err := report.Value()
	fmt.Printf("%-22s %-10s attempts=%d value=%+v err=%v\n", report.TaskName, report.Status, report.Attempts, rv, err)
	if err := flaky.Refresh(ctx); err != nil {
		return err
	}
	fv, err := flaky.Value()
	fmt.Printf("%-22s %-10s attempts=%d errors=%d value=%q err=%v\n", flaky.TaskName, flaky.Status, flaky.Attempts, len(flaky.Errors), fv, err)
	if err := bad.Refresh(ctx); err != nil {
		return err
	}
	_, err = bad.Value()
	fmt.Printf("%-22s %-10s attempts=%d err=%v\n", bad.TaskName, bad.Status, bad.Attempts, err)
	return nil
}
