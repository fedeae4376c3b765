package database_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// exampleRect is the argument of the example task.
type exampleRect struct{ W, H int }

// exampleArea is an example task. Tasks are defined in package variables, so that
// importing the package registers them (a worker binary needs nothing else).
var exampleArea = tasks.Define("database_test.example.area", func(ctx context.Context, r exampleRect) (int, error) {
	if r.W < 0 || r.H < 0 {
		return 0, errors.New("negative side")
	}
	return r.W * r.H, nil
})

// exampleDB returns a SQLite DSN in a new temporary directory and a function
// that removes it.
func exampleDB() (dsn string, cleanup func()) {
	dir, err := os.MkdirTemp("", "gotasks-example-")
	if err != nil {
		log.Fatal(err)
	}
	return "sqlite://" + filepath.Join(dir, "tasks.db"), func() { os.RemoveAll(dir) }
}

// The database flow on the embedded SQLite default: open (SQLite migrates
// itself), enqueue, run a worker until the queue is empty, read the typed
// result.
func Example_sqlite() {
	ctx := context.Background()
	dsn, cleanup := exampleDB()
	defer cleanup()

	b, err := database.Open(ctx, dsn, database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	// Configure it as the "default" backend (the call returns a function
	// that restores the previous configuration).
	defer tasks.RegisterBackend(b)()

	res, err := exampleArea.Enqueue(ctx, exampleRect{W: 3, H: 4})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("enqueued:", res.Status)

	// A worker, as `dbworker --batch` runs it: exit once nothing is due.
	w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 10 * time.Millisecond})
	if err != nil {
		log.Fatal(err)
	}
	if err := w.Run(ctx); err != nil {
		log.Fatal(err)
	}

	if err := res.Refresh(ctx); err != nil {
		log.Fatal(err)
	}
	v, err := res.Value()
	fmt.Println("after the worker:", res.Status, v, err)

	// The typed result can be fetched again later by id.
	again, err := exampleArea.GetResult(ctx, res.ID)
	if err != nil {
		log.Fatal(err)
	}
	v, _ = again.Value()
	fmt.Println("by id:", v)
	// Output:
	// enqueued: READY
	// after the worker: SUCCESSFUL 12 <nil>
	// by id: 12
}

// Enqueue inside the application's own transaction: the task exists if and
// only if the transaction commits, together with the application's rows.
func ExampleRunInTx() {
	ctx := context.Background()
	dsn, cleanup := exampleDB()
	defer cleanup()

	b, err := database.Open(ctx, dsn, database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	if _, err := b.DB().ExecContext(ctx, `CREATE TABLE rooms (name TEXT PRIMARY KEY, w INTEGER, h INTEGER)`); err != nil {
		log.Fatal(err)
	}

	addRoom := func(name string, r exampleRect, fail bool) error {
		return database.RunInTx(ctx, b.DB(), func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.ExecContext(ctx, `INSERT INTO rooms (name, w, h) VALUES (?, ?, ?)`, name, r.W, r.H); err != nil {
				return err
			}
			// ctx carries the transaction: the task is inserted in it.
			if _, err := exampleArea.Using(tasks.WithVerboseName("area of "+name)).Enqueue(ctx, r); err != nil {
				return err
			}
			if fail {
				return errors.New("something went wrong")
			}
			return nil
		})
	}
	fmt.Println("kitchen:", addRoom("kitchen", exampleRect{W: 3, H: 4}, false))
	fmt.Println("hall:", addRoom("hall", exampleRect{W: 2, H: 5}, true))

	var rooms int
	if err := b.DB().NewSelect().Table("rooms").ColumnExpr("count(*)").Scan(ctx, &rooms); err != nil {
		log.Fatal(err)
	}
	queued, err := b.List(ctx, database.Filter{TaskName: exampleArea.Name()})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("rooms:", rooms, "tasks:", len(queued))
	for _, r := range queued {
		fmt.Println(r.VerboseName, r.Status)
	}
	// Output:
	// kitchen: <nil>
	// hall: something went wrong
	// rooms: 1 tasks: 1
	// area of kitchen READY
}

// Enqueue inside a transaction the application already holds (here bun's
// own RunInTx; a *sql.Tx goes through WithSQLTx, a pgx.Tx through
// WithPgxTx): the task is committed or rolled back with the application's
// rows.
func ExampleWithTx() {
	ctx := context.Background()
	dsn, cleanup := exampleDB()
	defer cleanup()

	b, err := database.Open(ctx, dsn, database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		log.Fatal(err)
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	db := b.DB() // the application's *bun.DB (same database as the backend)
	if _, err := db.ExecContext(ctx, `CREATE TABLE rooms (name TEXT PRIMARY KEY, w INTEGER, h INTEGER)`); err != nil {
		log.Fatal(err)
	}

	addRoom := func(name string, r exampleRect, fail bool) error {
		return db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			if _, err := tx.NewRaw(`INSERT INTO rooms (name, w, h) VALUES (?, ?, ?)`, name, r.W, r.H).Exec(ctx); err != nil {
				return err
			}
			if _, err := exampleArea.Enqueue(database.WithTx(ctx, tx), r); err != nil {
				return err
			}
			if fail {
				return errors.New("card declined")
			}
			return nil
		})
	}
	fmt.Println("kitchen:", addRoom("kitchen", exampleRect{W: 3, H: 4}, false))
	fmt.Println("hall:", addRoom("hall", exampleRect{W: 2, H: 5}, true))

	queued, err := b.List(ctx, database.Filter{TaskName: exampleArea.Name()})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("tasks:", len(queued))
	// Output:
	// kitchen: <nil>
	// hall: card declined
	// tasks: 1
}
