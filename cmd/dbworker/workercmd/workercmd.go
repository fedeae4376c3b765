// Package workercmd is the logic of the dbworker command, importable so that
// an application's own worker binary, which registers the application's
// tasks, is a few lines:
//
//	package main
//
//	import (
//		"os"
//
//		"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
//		_ "example.com/app/tasks" // defines (registers) the tasks
//	)
//
//	func main() { os.Exit(workercmd.Main(os.Args[1:])) }
//
// Sub-commands: (none) runs a worker; "migrate" applies the schema
// migrations (--sql prints them instead); "check" checks the backend;
// "tasks" lists the task names compiled into the binary, one a line.
//
// # Tasks are compiled in
//
// Tasks are Go functions (tasks.Define): a worker runs only the tasks
// compiled into its binary, and fails a claimed row whose task it does not
// know as permanently FAILED (tasks.ErrUnknownTask). At start-up the worker
// logs the names of the tasks it can run. A binary with no tasks at all, such
// as the stock dbworker installed with
//
//	go install github.com/gotasks/gotasks/cmd/dbworker@latest
//
// or an application's worker that forgot the blank import of its tasks
// package, can only fail whatever it claims. So instead of running, the
// worker prints to stderr that the binary contains no task code and how to
// build a worker that does, and returns ExitUsage before it opens the
// database (so it neither creates a SQLite file nor claims a task). The
// sub-commands "migrate", "check" and "tasks" need no tasks and work in any
// binary.
package workercmd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitError    = 1 // runtime failure: bad DSN, database unreachable, schema missing
	ExitUsage    = 2 // bad flags or arguments, or a worker started in a binary with no tasks
	ExitHardStop = 3 // a second signal cancelled running tasks (handed back for retry)
)

// Main runs the command with args (without the program name), writing to
// os.Stdout and os.Stderr and stopping on SIGINT/SIGTERM, and returns the
// exit code.
func Main(args []string) int {
	return Run(context.Background(), args, os.Stdout, os.Stderr, nil)
}

// Run is Main with explicit streams. sig delivers stop requests (first:
// graceful, second: hard); nil means SIGINT and SIGTERM.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return runMigrate(ctx, args[1:], stdout, stderr)
		case "check":
			return runCheck(ctx, args[1:], stdout, stderr)
		case "tasks":
			return runTasks(args[1:], stdout, stderr)
		}
	}
	return runWorker(ctx, args, stdout, stderr, sig)
}

type common struct {
	dsn, backend, logLevel, logFormat string
}

func (c *common) register(fs *flag.FlagSet) {
	def := os.Getenv(database.DSNEnv)
	if def == "" {
		def = database.DefaultDSN
	}
	fs.StringVar(&c.dsn, "database", def, "database DSN: sqlite:///path/tasks.db, sqlite://relative.db or postgres://… (env "+database.DSNEnv+")")
	fs.StringVar(&c.backend, "backend", tasks.DefaultBackendName, "name of the backend whose tasks to run")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format: text or json")
}

func (c *common) logger(stderr io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch c.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", c.logFormat)
}

func newFlagSet(name, usage string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.PrintDefaults()
	}
	return fs
}

const workerUsage = `Usage: dbworker [flags]
       dbworker migrate [--sql] [--database DSN]
       dbworker check [--database DSN]
       dbworker tasks

Runs the tasks of a gotasks database backend: only the tasks compiled into
this binary ("dbworker tasks" lists them; a binary with none refuses to run a
worker and says how to build one). The first SIGINT/SIGTERM stops claiming
and lets running tasks finish (up to --grace-period), then exits 0; a second
one cancels running tasks, hands them back for retry and exits 3.
Exit codes: 0 ok, 1 runtime error (database unreachable, schema missing),
2 bad usage or no tasks in this binary, 3 stopped hard.

Flags:
`

func runWorker(ctx context.Context, args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	var (
		c                        common
		queues, exclude          string
		cfg                      database.WorkerConfig
		jitter, interval, sleepF time.Duration
	)
	fs := newFlagSet("dbworker", workerUsage, stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, workerUsage)
		fs.PrintDefaults()
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, tasksLine(taskNames()))
	}
	c.register(fs)
	fs.StringVar(&queues, "queues", "*", "comma-separated queues to run, * for all")
	fs.StringVar(&queues, "queue", "*", "alias of --queues")
	fs.StringVar(&exclude, "exclude-queues", "", "comma-separated queues never to run")
	fs.IntVar(&cfg.Concurrency, "concurrency", database.DefaultConcurrency, "tasks run at once (goroutines)")
	fs.IntVar(&cfg.BatchSize, "claim-batch", 0, "tasks claimed per statement (default: concurrency)")
	fs.DurationVar(&interval, "interval", database.DefaultPollInterval, "poll interval when idle (backstop to notifications)")
	fs.DurationVar(&sleepF, "sleep", 0, "alias of --interval")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run this long, then stop gracefully (0: forever)")
	fs.IntVar(&cfg.MaxTasks, "max-tasks", 0, "stop after this many tasks (0: no limit)")
	fs.BoolVar(&cfg.ExitWhenEmpty, "batch", false, "exit when no task is due and none is running")
	fs.StringVar(&cfg.WorkerID, "worker-id", "", "worker id recorded with results; must be unique among running workers (default host:pid:random)")
	fs.DurationVar(&jitter, "startup-jitter", 0, "wait a random delay up to this long before starting")
	fs.DurationVar(&cfg.GracePeriod, "grace-period", 30*time.Second, "how long running tasks may take to finish after the first signal")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", database.DefaultHeartbeatInterval, "heartbeat interval")
	fs.DurationVar(&cfg.RescueAfter, "rescue-after", 0, "rescue RUNNING tasks whose worker has not heartbeated for this long (default 30s, at least 3 heartbeats)")
	fs.DurationVar(&cfg.MaxRunTime, "max-run-time", database.DefaultMaxRunTime, "maximum run time of one attempt")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dbworker: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	if sleepF > 0 {
		interval = sleepF
	}
	cfg.PollInterval = interval
	cfg.Queues = splitList(queues)
	cfg.ExcludeQueues = splitList(exclude)
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dbworker:", err)
		return ExitUsage
	}
	cfg.Logger = log
	names := taskNames()
	if len(names) == 0 {
		fmt.Fprint(stderr, "dbworker: no tasks are compiled into this binary, so it has nothing to run; not starting.\n\n")
		fmt.Fprint(stderr, noTasksHelp)
		return ExitUsage
	}

	if sig == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		defer signal.Stop(ch)
		sig = ch
	}
	if jitter > 0 {
		d := rand.N(jitter)
		log.Info("gotasks: startup jitter", "delay", d)
		select {
		case <-time.After(d):
		case <-sig:
			return ExitOK
		}
	}
	b, err := database.Open(ctx, c.dsn, database.WithName(c.backend), database.WithLogger(log))
	if err != nil {
		fmt.Fprintln(stderr, "dbworker:", err)
		return ExitError
	}
	defer b.Close()
	w, err := database.NewWorker(b, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "dbworker:", err)
		return ExitUsage
	}
	if err := w.Start(ctx); err != nil {
		fmt.Fprintln(stderr, "dbworker:", err)
		return ExitError
	}
	// Logged once started, so that a start-up error stays the only line.
	log.Info("gotasks: tasks this worker can run", "count", len(names), "tasks", names)
	// A stop by itself (--duration, --max-tasks, --batch) is graceful like
	// the first signal: bounded by the grace period, and signals still
	// work during it (the first is acknowledged, the second stops hard).
	requests := 0
	const stopRequested = "gotasks: stop requested; finishing running tasks (signal again to cancel them)"
	select {
	case <-w.StoppedByItself():
	case <-ctx.Done():
		requests++
	case <-sig:
		requests++
		log.Info(stopRequested, "grace_period", cfg.GracePeriod)
	}
	gctx, cancel := context.WithTimeout(context.Background(), cfg.GracePeriod)
	defer cancel()
	stopped := make(chan error, 1)
	go func() { stopped <- w.Stop(gctx) }()
	for {
		select {
		case err := <-stopped:
			return stopCode(err, stderr)
		case <-sig:
			if requests++; requests < 2 {
				log.Info(stopRequested, "grace_period", cfg.GracePeriod)
				continue
			}
			log.Warn("gotasks: second stop request; cancelling running tasks and handing them back")
			cancel()
			err := <-stopped
			if err == nil {
				err = database.ErrHardStop
			}
			fmt.Fprintln(stderr, "dbworker:", err)
			return ExitHardStop
		}
	}
}

func stopCode(err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintln(stderr, "dbworker:", err)
	if errors.Is(err, database.ErrHardStop) {
		return ExitHardStop
	}
	return ExitError
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 1 && out[0] == "*" {
		return nil
	}
	return out
}

const migrateUsage = `Usage: dbworker migrate [--sql] [--database DSN]

Applies the pending gotasks migrations (safe to run from several processes at
once), or with --sql prints the SQL of every migration for the database's
dialect without connecting.

Flags:
`

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c common
	var printSQL bool
	fs := newFlagSet("dbworker migrate", migrateUsage, stderr)
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
			fmt.Fprintln(stderr, "dbworker migrate:", err)
			return ExitError
		}
		fmt.Fprint(stdout, s)
		return ExitOK
	}
	b, err := database.Open(ctx, c.dsn, database.WithAutoMigrate(true), database.WithName(c.backend))
	if err != nil {
		fmt.Fprintln(stderr, "dbworker migrate:", err)
		return ExitError
	}
	defer b.Close()
	fmt.Fprintln(stdout, "gotasks schema is up to date")
	return ExitOK
}

func runCheck(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c common
	fs := newFlagSet("dbworker check", "Usage: dbworker check [--database DSN] [--backend NAME]\n\nFlags:\n", stderr)
	c.register(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	b, err := database.Open(ctx, c.dsn, database.WithAutoMigrate(false), database.WithoutCreate(), database.WithName(c.backend))
	if err != nil {
		fmt.Fprintln(stderr, "dbworker check:", err)
		return ExitError
	}
	defer b.Close()
	if err := b.Check(ctx); err != nil {
		fmt.Fprintln(stderr, "dbworker check:", err)
		return ExitError
	}
	fmt.Fprintf(stdout, "backend %q on %s: ok (flags %v)\n", b.Name(), b.Dialect(), b.Capabilities())
	return ExitOK
}

// taskNames lists the task names compiled into the binary, sorted. A
// variable so that tests can stand in for a binary without tasks.
var taskNames = tasks.TaskNames

// tasksLine is the last line of the worker's --help: the tasks it can run.
func tasksLine(names []string) string {
	if len(names) == 0 {
		return "Tasks compiled into this binary: none. It can migrate and check, but not run a\nworker; \"dbworker tasks\" says how to build one that can."
	}
	return fmt.Sprintf("Tasks compiled into this binary (%d): %s", len(names), strings.Join(names, ", "))
}

// noTasksHelp explains, after a first line saying that the binary has no
// tasks, why a worker needs its tasks compiled in and how to build one.
const noTasksHelp = `This is the stock dbworker, or a worker built without importing the package
that defines its tasks. Tasks are Go functions (tasks.Define) that must be
compiled into the worker: they cannot be loaded at run time. A worker without
them would claim your tasks and fail each one as unknown. This binary can
still apply and check the schema: "dbworker migrate", "dbworker check".

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

const tasksUsage = `Usage: dbworker tasks

Lists the names of the tasks compiled into this binary, which are the tasks
its worker can run, one a line on stdout, sorted. With none, it prints nothing
on stdout, explains on stderr how to build a worker with tasks, and exits 0.
`

func runTasks(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("dbworker tasks", tasksUsage, stderr)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "dbworker tasks: unexpected argument %q\n", fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	names := taskNames()
	if len(names) == 0 {
		fmt.Fprint(stderr, "dbworker tasks: no tasks are compiled into this binary.\n\n")
		fmt.Fprint(stderr, noTasksHelp)
		return ExitOK
	}
	for _, n := range names {
		fmt.Fprintln(stdout, n)
	}
	return ExitOK
}
