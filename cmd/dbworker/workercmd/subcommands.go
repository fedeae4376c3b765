package workercmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// The sub-commands other than the worker itself: migrate, check, tasks.

const migrateUsage = `Usage: NAME migrate [--sql] [--database DSN]

Applies the pending gotasks migrations (safe to run from several processes at
once), or with --sql prints the SQL of every migration for the database's
dialect without connecting.

Flags:
`

func runMigrate(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	var c common
	var printSQL bool
	fs := newFlagSet(name+" migrate", named(migrateUsage, name), stderr)
	c.register(fs)
	fs.BoolVar(&printSQL, "sql", false, "print the migration SQL instead of applying it")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if printSQL {
		d := database.SQLite
		if strings.HasPrefix(c.dsn, "postgres") {
			d = database.Postgres
		}
		s, err := database.MigrationSQL(d)
		if err != nil {
			fmt.Fprintf(stderr, "%s migrate: %v\n", name, err)
			return ExitError
		}
		fmt.Fprint(stdout, s)
		return ExitOK
	}
	b, err := database.Open(ctx, c.dsn, database.WithAutoMigrate(true), database.WithName(c.backend))
	if err != nil {
		fmt.Fprintf(stderr, "%s migrate: %v\n", name, err)
		return ExitError
	}
	defer b.Close()
	fmt.Fprintln(stdout, "gotasks schema is up to date")
	return ExitOK
}

func runCheck(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlagSet(name+" check", "Usage: "+name+" check [--database DSN] [--backend NAME]\n\nFlags:\n", stderr)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	b, err := database.Open(ctx, c.dsn, database.WithAutoMigrate(false), database.WithoutCreate(), database.WithName(c.backend))
	if err != nil {
		fmt.Fprintf(stderr, "%s check: %v\n", name, err)
		return ExitError
	}
	defer b.Close()
	if err := b.Check(ctx); err != nil {
		fmt.Fprintf(stderr, "%s check: %v\n", name, err)
		return ExitError
	}
	fmt.Fprintf(stdout, "backend %q on %s: ok (flags %v)\n", b.Name(), b.Dialect(), b.Capabilities())
	return ExitOK
}

// taskNames lists the task names compiled into the binary, sorted. A
// variable so that tests can stand in for a binary without tasks.
var taskNames = tasks.TaskNames

// tasksLine is the last line of the worker's --help: the tasks it can run.
func tasksLine(name string, names []string) string {
	if len(names) == 0 {
		return "Tasks compiled into this binary: none. It can migrate and check, but not run a\nworker; \"" + name + " tasks\" says how to build one that can."
	}
	return fmt.Sprintf("Tasks compiled into this binary (%d): %s", len(names), strings.Join(names, ", "))
}

// noTasksHelp explains, after a first line saying that the binary has no
// tasks, why a worker needs its tasks compiled in and how to build one.
const noTasksHelp = `This is the stock dbworker, or a worker built without importing the package
that defines its tasks. Tasks are Go functions (tasks.Define) that must be
compiled into the worker: they cannot be loaded at run time. A worker without
them would claim your tasks and fail their attempts as unknown, delaying them
and using up their attempts. This binary can still apply and check the
schema: "NAME migrate", "NAME check".

Build your own worker: a main package that imports your tasks and hands over
to package workercmd, the whole dbworker command as a library:

	package main

	import (
		"os"

		"github.com/gotasks/gotasks/cmd/dbworker/workercmd"

		_ "example.com/myapp/jobs" // defines (registers) your tasks
	)

	func main() { os.Exit(workercmd.Main(os.Args[1:])) }

Save it as cmd/myworker/main.go in your module, then "go build -o myworker
./cmd/myworker"; "./myworker tasks" lists the tasks it can run, "./myworker
--help" the flags. To try the example tasks of the gotasks repository:
"go run ./examples/worker --help".
Docs: https://pkg.go.dev/github.com/gotasks/gotasks/cmd/dbworker/workercmd
`

const tasksUsage = `Usage: NAME tasks

Lists the names of the tasks compiled into this binary, which are the tasks
its worker can run, one a line on stdout, sorted. With none, it prints nothing
on stdout, explains on stderr how to build a worker with tasks, and exits 0.
`

func runTasks(name string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(name+" tasks", named(tasksUsage, name), stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s tasks: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	names := taskNames()
	if len(names) == 0 {
		fmt.Fprintf(stderr, "%s tasks: no tasks are compiled into this binary.\n\n", name)
		fmt.Fprint(stderr, named(noTasksHelp, name))
		return ExitOK
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return ExitOK
}
