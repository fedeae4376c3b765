// Command gotasks is the operator's tool for the tasks of a database
// backend: list and inspect them, retry, cancel or delete them (one by one
// or by filter), read the per-queue statistics, see the live workers, pause
// and resume queues, and serve the web dashboard.
//
//	gotasks list      [filters] [--order newest|oldest] [--limit N] [--cursor C] [--json]
//	gotasks show      ID [--json]
//	gotasks retry     ID... | --all [filters] [--json]
//	gotasks cancel    ID... | --all [filters] [--json]
//	gotasks delete    ID... | --all [filters] [--json]
//	gotasks stats     [--window 1h] [--recount] [--json]
//	gotasks workers   [--json]
//	gotasks queues    [--json]
//	gotasks pause     QUEUE
//	gotasks resume    QUEUE
//	gotasks schedules [--json]
//	gotasks schedule  pause|resume|delete NAME
//	gotasks dashboard [--listen 127.0.0.1:8080] [--read-only] [--prefix /]
//
// Filters: --status (repeatable or comma-separated: ready, running,
// successful, failed, cancelled), --queue, --task (repeatable), --creator,
// --verbose-name, --id-prefix, --enqueued-after, --enqueued-before,
// --finished-after, --finished-before (an RFC 3339 time, or an age meaning
// "that long ago": 30m, 2h, 1d, 1d12h, 2w).
//
// Every sub-command takes --database DSN (default: the GOTASKS_DATABASE_URL
// environment variable, else sqlite://gotasks.db) and --backend NAME
// (default "default"). The command never creates an SQLite file nor
// migrates the schema: run `dbworker migrate` first.
//
// Output is a table for people, or one JSON document with --json. Exit
// codes: 0 done, 1 operational error (database unreachable, schema
// missing, task not found, action not possible in the task's status), 2
// usage error (bad flag, missing argument).
//
// See docs/operations.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/cliflags"
	"github.com/gotasks/gotasks/tasks"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // operational error: database, not found, not possible
	exitUsage = 2 // bad flags or arguments
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `Usage: gotasks [--database DSN] [--backend NAME] COMMAND [flags] [arguments]

See and fix the tasks of a gotasks database backend.

Commands:
  list       list tasks, newest first, with filters and paging
  show       show one task: arguments, return value, every attempt's error
  retry      put FAILED or CANCELLED tasks back to READY, due now
  cancel     cancel READY tasks
  delete     delete finished tasks
  stats      per-queue counts by status, oldest due age, finished in a window
  workers    the live workers
  queues     the queues and whether they are paused
  pause      pause a queue: workers stop claiming from it
  resume     resume a paused queue
  schedules  the durable (cron and interval) schedules
  schedule   pause, resume or delete a schedule
  dashboard  serve the web dashboard

Run "gotasks COMMAND --help" for a command's flags.

The database is --database, else $GOTASKS_DATABASE_URL, else
sqlite://gotasks.db; it is never created nor migrated here (run
"dbworker migrate" first).

Exit codes: 0 done, 1 operational error (database unreachable, schema
missing, task not found, action not possible), 2 usage error.

Flags:
`

// command is a sub-command.
type command struct {
	name, args, help string
	// flags registers the sub-command's own flags; it may be nil.
	flags func(fs *flag.FlagSet, c *cmdEnv)
	// check validates the positional arguments and flags (a usage
	// problem, or "").
	check func(c *cmdEnv) string
	// run does the work once the backend is open.
	run func(ctx context.Context, c *cmdEnv) error
	// noJSON: the sub-command has no --json output.
	noJSON bool
}

// commands are the sub-commands, in the order of the usage text.
var commands = []*command{
	listCmd, showCmd, retryCmd, cancelCmd, deleteCmd, statsCmd, workersCmd,
	queuesCmd, pauseCmd, resumeCmd, schedulesCmd, scheduleCmd, dashboardCmd,
}

func lookupCommand(name string) *command {
	for _, c := range commands {
		if c.name == name {
			return c
		}
	}
	return nil
}

// common are the flags every sub-command takes.
type common struct {
	dsn, backend string
	json         bool
}

func (o *common) register(fs *flag.FlagSet, withJSON bool) {
	fs.StringVar(&o.dsn, "database", o.dsn, "database `DSN`: postgres://…, sqlite:///abs/path.db or sqlite://relative.db\n(default: $"+database.DSNEnv+", else "+database.DefaultDSN+")")
	fs.StringVar(&o.backend, "backend", o.backend, "the tasks of the backend of this `name`")
	if withJSON {
		fs.BoolVar(&o.json, "json", false, "print one JSON document instead of a table")
	}
}

// cmdEnv is what a sub-command runs with.
type cmdEnv struct {
	common
	args           []string // positional arguments
	getenv         func(string) string
	stdout, stderr io.Writer
	b              *database.Backend
	// opts holds the sub-command's own parsed flags.
	opts any
}

// usageError is a problem with the command line: exit 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// run is the command: it parses args, runs the sub-command, writes its
// output to stdout and problems to stderr, and returns the exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	g := common{backend: tasks.DefaultBackendName}
	top := flag.NewFlagSet("gotasks", flag.ContinueOnError)
	top.SetOutput(stderr)
	top.Usage = func() {}
	g.register(top, false)
	usage := func(w io.Writer) {
		fmt.Fprint(w, usageText)
		cliflags.PrintFlags(w, top)
	}
	if err := top.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		usage(stderr)
		return exitUsage
	}
	if top.NArg() == 0 {
		fmt.Fprintln(stderr, "gotasks: missing command")
		usage(stderr)
		return exitUsage
	}
	name, rest := top.Arg(0), top.Args()[1:]
	if name == "help" {
		if len(rest) == 0 {
			usage(stdout)
			return exitOK
		}
		name, rest = rest[0], []string{"--help"}
	}
	cmd := lookupCommand(name)
	if cmd == nil {
		fmt.Fprintf(stderr, "gotasks: unknown command %q\n", name)
		usage(stderr)
		return exitUsage
	}
	return runCommand(ctx, cmd, g, rest, getenv, stdout, stderr)
}

func runCommand(ctx context.Context, cmd *command, g common, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cmdEnv{common: g, getenv: getenv, stdout: stdout, stderr: stderr}
	fs := flag.NewFlagSet("gotasks "+cmd.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {}
	if cmd.flags != nil {
		cmd.flags(fs, c)
	}
	c.common.register(fs, !cmd.noJSON)
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: gotasks %s %s\n\n%s\n\nFlags:\n", cmd.name, cmd.args, cmd.help)
		cliflags.PrintFlags(w, fs)
	}
	var err error
	c.args, err = parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		usage(stderr) // the flag package has printed the error
		return exitUsage
	}
	if strings.TrimSpace(c.backend) == "" {
		fmt.Fprintf(stderr, "gotasks %s: --backend: must not be empty\n", cmd.name)
		usage(stderr)
		return exitUsage
	}
	if cmd.check != nil {
		if msg := cmd.check(c); msg != "" {
			fmt.Fprintf(stderr, "gotasks %s: %s\n", cmd.name, msg)
			usage(stderr)
			return exitUsage
		}
	}
	if c.dsn == "" {
		c.dsn = getenv(database.DSNEnv)
	}
	if c.dsn == "" {
		c.dsn = database.DefaultDSN
	}
	fail := func(err error) int {
		fmt.Fprintf(stderr, "gotasks %s: %s\n", cmd.name, oneLine(err.Error()))
		var ue *usageError
		if errors.As(err, &ue) {
			return exitUsage
		}
		return exitError
	}
	b, err := openBackend(ctx, c)
	if err != nil {
		return fail(err)
	}
	defer b.Close()
	c.b = b
	if err := cmd.run(ctx, c); err != nil {
		if errors.Is(err, errReported) {
			return exitError
		}
		return fail(err)
	}
	return exitOK
}

// errReported is returned by a sub-command that has already written its
// problems to stderr (one line per task of a multi-id action).
var errReported = errors.New("reported")

// openBackend opens the backend without creating an SQLite file or
// migrating.
func openBackend(ctx context.Context, c *cmdEnv) (*database.Backend, error) {
	log := slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := database.Open(ctx, c.dsn, database.WithAutoMigrate(false), database.WithoutCreate(),
		database.WithName(c.backend), database.WithLogger(log))
	switch {
	case err == nil:
		return b, nil
	case ctx.Err() != nil:
		return nil, fmt.Errorf("interrupted while opening the database: %w", err)
	case errors.Is(err, database.ErrSchemaMissing) && !strings.Contains(err.Error(), "dbworker migrate"):
		return nil, fmt.Errorf("%w; run `dbworker migrate --database DSN` to create or update it", err)
	}
	return nil, err
}

// parseInterspersed parses flags anywhere among the positional arguments
// ("show ID --json" as well as "show --json ID"); "--" ends the flags.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
