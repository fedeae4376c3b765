// Command prune deletes finished gotasks results older than a retention
// from a database backend (SPEC §8). It is meant to run from cron while
// workers run:
//
//	17 3 * * *  prune --database postgres://app@db/app --min-age 14 --failed-min-age 30
//
// SUCCESSFUL and CANCELLED results older than --min-age (default 14 days)
// and FAILED results older than --failed-min-age (default: --min-age) are
// deleted in batches of --batch-size rows, each its own short transaction.
// READY and RUNNING results are never deleted, whatever their age. The
// command needs no task code and never creates or migrates the schema.
//
// Exit codes: 0 done (also when nothing was old enough), 1 runtime error
// (database unreachable, schema missing, SQLite file missing, failure
// during the prune, interrupted by SIGINT/SIGTERM), 2 bad flags.
//
// See docs/pruning.md.
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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/cliflags"
	"github.com/gotasks/gotasks/tasks"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // database unreachable, schema missing, prune failed or interrupted
	exitUsage = 2 // bad flags or arguments
)

// progressAfter is how long a run goes before the progress line appears
// (on a terminal only); progressEvery how often it is rewritten.
const (
	progressAfter = 2 * time.Second
	progressEvery = time.Second
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command: it parses args, prunes, writes the summary to stdout
// and problems to stderr, and returns the exit code. The DSN comes from
// --database, else the GOTASKS_DATABASE_URL environment variable, else
// database.DefaultDSN.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return runEnv(ctx, args, os.Getenv, stdout, stderr)
}

const usageText = `Usage: prune [flags]

Deletes finished gotasks results older than a retention, in batches, while
workers keep running: SUCCESSFUL and CANCELLED results that finished more
than --min-age ago, FAILED results more than --failed-min-age ago. READY and
RUNNING results are never deleted, whatever their age. Meant for cron, e.g.

  17 3 * * *  prune --database postgres://app@db/app --failed-min-age 30

The default for cron is all queues (--queue '*') of the backend "default".
AGE is a number of days (14, 1.5), weeks and days followed by an optional
Go duration (2w, 7d, 1d12h, 1w2d6h30m), or a Go duration (36h, 90m, 1h30m);
a day is 24 hours.

Exit codes: 0 done, 1 runtime error (database unreachable, schema missing,
SQLite file missing, interrupted), 2 bad flags.

Flags:
`

// options are the parsed flags.
type options struct {
	dsn, backend, queues string
	minAge, failedMinAge age
	batchSize            int
	dryRun               bool
}

func runEnv(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var o options
	o.minAge = age{d: database.DefaultPruneMinAge}
	fs := flag.NewFlagSet("prune", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {} // printed below, to stdout for --help
	fs.StringVar(&o.dsn, "database", "", "database `DSN`: postgres://…, sqlite:///abs/path.db or sqlite://relative.db\n(default: $"+database.DSNEnv+", else "+database.DefaultDSN+")")
	fs.StringVar(&o.backend, "backend", tasks.DefaultBackendName, "prune the results of the backend of this `name`")
	fs.StringVar(&o.queues, "queue", "*", "comma-separated `queues` to prune; * means all queues, the default for cron")
	fs.Var(&o.minAge, "min-age", "delete SUCCESSFUL and CANCELLED results that finished more than `AGE` ago")
	fs.Var(&o.failedMinAge, "failed-min-age", "delete FAILED results that finished more than `AGE` ago (default: --min-age)")
	fs.IntVar(&o.batchSize, "batch-size", database.DefaultPruneBatchSize, "delete at most `n` rows per statement, each statement its own short transaction")
	fs.BoolVar(&o.dryRun, "dry-run", false, "count what would be deleted; delete nothing")
	usage := func(w io.Writer) {
		fmt.Fprint(w, usageText)
		cliflags.PrintFlags(w, fs)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(stdout)
			return exitOK
		}
		usage(stderr) // the flag package has printed the error
		return exitUsage
	}
	if msg := o.check(fs); msg != "" {
		fmt.Fprintln(stderr, "prune:", msg)
		usage(stderr)
		return exitUsage
	}
	if o.dsn == "" {
		o.dsn = getenv(database.DSNEnv)
	}
	if o.dsn == "" {
		o.dsn = database.DefaultDSN
	}
	return prune(ctx, o, stdout, stderr)
}

// check validates the flags that the flag package cannot and returns a
// problem, or "".
func (o *options) check(fs *flag.FlagSet) string {
	switch {
	case fs.NArg() > 0:
		return fmt.Sprintf("unexpected argument %q", fs.Arg(0))
	case o.batchSize <= 0:
		return fmt.Sprintf("--batch-size %d: must be at least 1", o.batchSize)
	case strings.TrimSpace(o.backend) == "":
		return "--backend: must not be empty"
	}
	if _, err := splitQueues(o.queues); err != nil {
		return err.Error()
	}
	if !o.failedMinAge.set {
		o.failedMinAge = o.minAge
	}
	return ""
}

// splitQueues parses --queue: nil for all queues.
func splitQueues(s string) ([]string, error) {
	var qs []string
	for _, q := range strings.Split(s, ",") {
		q = strings.TrimSpace(q)
		if q == "" {
			return nil, fmt.Errorf("--queue %q: empty queue name (use * for all queues)", s)
		}
		if q == "*" {
			return nil, nil
		}
		qs = append(qs, q)
	}
	return qs, nil
}

// prune opens the database, prunes and reports.
func prune(ctx context.Context, o options, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintln(stderr, "prune:", oneLine(err.Error()))
		return exitError
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b, err := database.Open(ctx, o.dsn, database.WithAutoMigrate(false), database.WithoutCreate(), database.WithName(o.backend),
		database.WithLogger(log))
	if err != nil {
		if ctx.Err() != nil {
			return fail(fmt.Errorf("interrupted while opening the database: %w", err))
		}
		return fail(err)
	}
	defer b.Close()

	queues, _ := splitQueues(o.queues)
	now := time.Now()
	opts := database.PruneOptions{
		MinAge: o.minAge.d, FailedMinAge: o.failedMinAge.d, Queues: queues,
		BatchSize: o.batchSize, DryRun: o.dryRun, Now: now,
	}
	fmt.Fprintln(stdout, header(o, queues, now))
	var prog *progress
	if isTerminal(stdout) && !o.dryRun {
		prog = &progress{w: stdout, start: now}
		opts.Progress = prog.update
	}
	rep, err := b.Prune(ctx, opts)
	prog.end()
	fmt.Fprintln(stdout, rep.String())
	switch {
	case err == nil:
		return exitOK
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		fmt.Fprintln(stderr, "prune: interrupted: stopped between batches; the summary above is what was deleted")
		return exitError
	default:
		return fail(err)
	}
}

// header describes what the run deletes.
func header(o options, queues []string, now time.Time) string {
	verb := "pruning"
	if o.dryRun {
		verb = "dry run, nothing is deleted:"
	}
	q := "all queues"
	if len(queues) > 0 {
		q = "queues " + strings.Join(queues, ",")
	}
	cut := func(a age) string {
		return fmt.Sprintf("finished before %s (older than %s)", now.UTC().Add(-a.d).Format(time.RFC3339), a.String())
	}
	if o.minAge.d == o.failedMinAge.d {
		return fmt.Sprintf("%s backend %q, %s: SUCCESSFUL, CANCELLED and FAILED results %s",
			verb, o.backend, q, cut(o.minAge))
	}
	return fmt.Sprintf("%s backend %q, %s: SUCCESSFUL and CANCELLED results %s, FAILED results %s",
		verb, o.backend, q, cut(o.minAge), cut(o.failedMinAge))
}

// oneLine keeps an error message on one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progress rewrites one line on a terminal while a long run goes on.
type progress struct {
	w           io.Writer
	start, last time.Time
	shown       bool
}

func (p *progress) update(r database.PruneReport) {
	t := time.Now()
	if t.Sub(p.start) < progressAfter || t.Sub(p.last) < progressEvery {
		return
	}
	p.last, p.shown = t, true
	fmt.Fprintf(p.w, "\r%d deleted so far (%d SUCCESSFUL, %d CANCELLED, %d FAILED) in %d batches, %s ",
		r.Total(), r.Successful, r.Cancelled, r.Failed, r.Batches, database.RoundDuration(r.Elapsed))
}

func (p *progress) end() {
	if p != nil && p.shown {
		fmt.Fprint(p.w, "\n")
	}
}

// age is a flag value: a Go duration or a number of days.
type age struct {
	d   time.Duration
	set bool
}

// String implements flag.Value.
func (a *age) String() string {
	if a == nil || a.d == 0 {
		return "0s"
	}
	if a.d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(a.d/(24*time.Hour)), 10) + "d"
	}
	return a.d.String()
}

// Set implements flag.Value.
func (a *age) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	a.d, a.set = d, true
	return nil
}

// parseAge reads an age as --min-age takes it (see cliflags.ParseAge): a
// bare number is a number of days.
func parseAge(s string) (time.Duration, error) { return cliflags.ParseAge(s, true) }
