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
// Usage texts and messages use the binary's own name (the base name of
// os.Args[0], or Command.Name).
//
// # Dependencies and the backend
//
// A Command with a Setup hook gives the tasks the application's
// dependencies without package globals. Setup gets the opened backend, its
// *bun.DB and the configured logger (Env), and returns the context whose
// values every task's context carries; a typed accessor of the application
// reads them:
//
//	type appKey struct{}
//
//	// AppFrom returns the application's dependencies in a task's context.
//	func AppFrom(ctx context.Context) *App { return ctx.Value(appKey{}).(*App) }
//
//	func main() {
//		os.Exit(workercmd.Command{
//			Setup: func(ctx context.Context, env workercmd.Env) (context.Context, error) {
//				app, err := NewApp(env.DB, env.Logger) // clients, caches, …
//				if err != nil {
//					return nil, err
//				}
//				return context.WithValue(ctx, appKey{}, app), nil
//			},
//		}.Main(os.Args[1:]))
//	}
//
// The worker registers the backend it opens (tasks.RegisterBackend) under
// its name, and also as "default" when nothing else is registered under
// that name, for as long as it runs: code of the worker binary outside the
// tasks (Setup, goroutines it starts) enqueues to the worker's backend, not
// to the implicit inline default. Tasks the worker runs enqueue their
// follow-ups to its backend through their context anyway.
//
// # Logs
//
// --log-level and --log-format configure the worker's logger, which is also
// made the process's default slog logger (slog.SetDefault) while Run runs,
// so that the tasks' own slog calls come out in the same format. Durations
// are written as text ("1.5s"), also in JSON.
//
// # Metrics and health checks
//
// --metrics-addr host:port (default $GOTASKS_METRICS_ADDR; empty, the
// default, is off) serves, on a server of its own started before the
// database is opened and stopped after the worker:
//
//   - /metrics: the Prometheus text format of the worker's own registry:
//     the task metrics of package oteltasks (installed on the worker's
//     backend, exported by the OpenTelemetry Prometheus exporter), the Go
//     runtime and the process collectors;
//   - /healthz: 200 "ok" while the process runs;
//   - /readyz: 200 "ok" when the backend's Check passes within 2 s
//     (database reachable, schema current) and the worker is claiming
//     (database.Worker.Ready); 503 otherwise, with one fixed line per
//     failed check: "database: unreachable", "database: schema not
//     current", "database: check timed out" or "database: check failed";
//     "worker: not started", "worker: stopping" or "worker: claims
//     failing". The errors themselves, which name the database's host,
//     user and database, are logged instead: at WARN when a ready worker
//     becomes not ready (INFO when it is stopping), and its return to
//     ready at INFO.
//
// /metrics serves at most 4 scrapes at once (more are answered 503 at
// once: each scrape reads the queue depths from the database) and answers
// each within 10 s.
//
// The address actually listened on is logged ("gotasks: serving metrics
// and health checks", addr): with port 0 the system chooses it.
//
// # Tasks are compiled in
//
// Tasks are Go functions (tasks.Define): a worker runs only the tasks
// compiled into its binary. An attempt of a claimed row whose task it does
// not know fails (tasks.ErrUnknownTask) and uses up an attempt; the task is
// retried with backoff, and FAILED once its attempts are used up. At
// start-up the worker logs the names of the tasks it can run. A binary with
// no tasks at all, such as the stock dbworker installed with
//
//	go install github.com/gotasks/gotasks/cmd/dbworker@latest
//
// or an application's worker that forgot the blank import of its tasks
// package, can only fail the attempts of whatever it claims. So instead of
// running, the worker prints to stderr that the binary contains no task code
// and how to build a worker that does, and returns ExitUsage before it opens
// the database (so it neither creates a SQLite file nor claims a task). The
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
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/cliflags"
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
// exit code. It is Command{}.Main.
func Main(args []string) int { return Command{}.Main(args) }

// Run is Main with explicit streams. sig delivers stop requests (first:
// graceful, second: hard); nil means SIGINT and SIGTERM. It is
// Command{}.Run.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	return Command{}.Run(ctx, args, stdout, stderr, sig)
}

// Command is the dbworker command with the options of an application's
// worker binary. The zero value is the stock command (Main, Run).
type Command struct {
	// Name is the command's name in usage texts and messages. Default: the
	// base name of os.Args[0] (without .exe), so that an application's
	// worker is not called "dbworker" in its own help.
	Name string

	// Setup, if set, prepares the application's dependencies for the
	// tasks. The worker calls it once, after it opened (and registered)
	// the backend and before it claims anything, with the command's
	// context and the Env. The context it returns is the parent of every
	// task's context (database.WorkerConfig.TaskContext): put the
	// dependencies in it with context.WithValue and read them in the tasks
	// with a typed accessor. Only its values are used; its cancellation is
	// not. An error stops the command with ExitError and the message
	// "NAME: setup: …". Setup is not called by the sub-commands (migrate,
	// check, tasks), nor in a binary without tasks.
	Setup func(ctx context.Context, env Env) (context.Context, error)

	// BackendOptions configure the worker's backend, after the name and
	// logger the flags set: for example
	// database.WithBackendOptions(tasks.WithDefaultBackoff(b)) gives every
	// task without a backoff of its own the backoff b in this worker, and
	// tasks.WithMiddleware adds middleware.
	BackendOptions []database.Option
}

// Env is what Command.Setup gets: the worker's opened backend, its
// database and the logger configured by --log-level and --log-format.
type Env struct {
	// Backend is the backend the worker serves, already registered (see
	// the package documentation). Enqueue follow-ups or look up results
	// with it; do not close it.
	Backend *database.Backend
	// DB is the backend's connection pool (Backend.DB()): the
	// application's own tables may share it.
	DB *bun.DB
	// Logger is the worker's logger, also the process's default slog
	// logger while the worker runs.
	Logger *slog.Logger
}

// Main runs the command with args (without the program name), writing to
// os.Stdout and os.Stderr and stopping on SIGINT/SIGTERM, and returns the
// exit code.
func (cmd Command) Main(args []string) int {
	return cmd.Run(context.Background(), args, os.Stdout, os.Stderr, nil)
}

// Run is Main with explicit streams. sig delivers stop requests (first:
// graceful, second: hard); nil means SIGINT and SIGTERM.
func (cmd Command) Run(ctx context.Context, args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	name := cmd.name()
	if len(args) > 0 {
		switch args[0] {
		case "migrate":
			return runMigrate(ctx, name, args[1:], stdout, stderr)
		case "check":
			return runCheck(ctx, name, args[1:], stdout, stderr)
		case "tasks":
			return runTasks(name, args[1:], stdout, stderr)
		}
	}
	return cmd.runWorker(ctx, name, args, stdout, stderr, sig)
}

// name is the command's name in usage texts and messages.
func (cmd Command) name() string {
	if cmd.Name != "" {
		return cmd.Name
	}
	if len(os.Args) > 0 {
		if n := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe"); n != "" && n != "." && n != string(filepath.Separator) {
			return n
		}
	}
	return "dbworker"
}

// named replaces the placeholder NAME in a usage text with the command's
// name.
func named(text, name string) string { return strings.ReplaceAll(text, "NAME", name) }

const workerUsage = `Usage: NAME [flags]
       NAME migrate [--sql] [--database DSN]
       NAME check [--database DSN]
       NAME tasks

Runs the tasks of a gotasks database backend: only the tasks compiled into
this binary ("NAME tasks" lists them; a binary with none refuses to run a
worker and says how to build one). The first SIGINT/SIGTERM stops claiming
and lets running tasks finish (up to --grace-period), then exits 0; a second
one cancels running tasks, hands them back for retry and exits 3.
Exit codes: 0 ok, 1 runtime error (database unreachable, schema missing),
2 bad usage or no tasks in this binary, 3 stopped hard.

Flags:
`

func (cmd Command) runWorker(ctx context.Context, name string, args []string, stdout, stderr io.Writer, sig <-chan os.Signal) int {
	var (
		c                        common
		queues, exclude          string
		metricsAddr              string
		cfg                      database.WorkerConfig
		jitter, interval, sleepF time.Duration
	)
	fs := newFlagSet(name, named(workerUsage, name), stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, named(workerUsage, name))
		cliflags.PrintFlags(stderr, fs)
		fmt.Fprintln(stderr)
		fmt.Fprintln(stderr, tasksLine(name, taskNames()))
	}
	c.register(fs)
	fs.StringVar(&queues, "queues", "*", "comma-separated queues to run, * for all; QUEUE=N caps this worker's concurrency for QUEUE (emails=5,default=20)")
	fs.StringVar(&queues, "queue", "*", "alias of --queues")
	fs.StringVar(&exclude, "exclude-queues", "", "comma-separated queues never to run (only with --queues '*')")
	fs.IntVar(&cfg.Concurrency, "concurrency", database.DefaultConcurrency, "tasks run at once (goroutines)")
	fs.IntVar(&cfg.BatchSize, "claim-batch", 0, "tasks claimed per statement (default: concurrency)")
	fs.DurationVar(&interval, "interval", database.DefaultPollInterval, "poll interval when idle (backstop to notifications)")
	fs.DurationVar(&sleepF, "sleep", 0, "alias of --interval")
	fs.DurationVar(&cfg.Duration, "duration", 0, "run this long, then stop gracefully (0: forever)")
	fs.IntVar(&cfg.MaxTasks, "max-tasks", 0, "stop after this many tasks (0: no limit)")
	fs.BoolVar(&cfg.ExitWhenEmpty, "batch", false, "exit when no task is due and none is running")
	fs.BoolVar(&cfg.NoScheduler, "no-scheduler", false, "do not run the scheduler of cron schedules (for batch workers; another worker of the backend must run it)")
	fs.StringVar(&cfg.WorkerID, "worker-id", "", "worker id recorded with results; must be unique among running workers (default host:pid:random)")
	fs.DurationVar(&jitter, "startup-jitter", 0, "wait a random delay up to this long before starting")
	fs.DurationVar(&cfg.GracePeriod, "grace-period", 30*time.Second, "how long running tasks may take to finish after the first signal")
	fs.DurationVar(&cfg.HeartbeatInterval, "heartbeat", database.DefaultHeartbeatInterval, "heartbeat interval")
	fs.DurationVar(&cfg.RescueAfter, "rescue-after", 0, "rescue RUNNING tasks whose worker has not heartbeated for this long (default 30s, at least 3 heartbeats)")
	fs.DurationVar(&cfg.MaxRunTime, "max-run-time", database.DefaultMaxRunTime, "maximum run time of one attempt")
	fs.StringVar(&metricsAddr, "metrics-addr", os.Getenv(MetricsAddrEnv), "serve /metrics (Prometheus), /healthz and /readyz on host:port, such as 127.0.0.1:9090 or :9090; empty: off (env "+MetricsAddrEnv+")")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return ExitUsage
	}
	if sleepF > 0 {
		interval = sleepF
	}
	cfg.PollInterval = interval
	var qerr error
	if cfg.Queues, cfg.QueueConcurrency, qerr = parseQueues(queues); qerr != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, qerr)
		return ExitUsage
	}
	cfg.ExcludeQueues = splitList(exclude)
	if msg := checkWorkerFlags(fs, cfg, metricsAddr); msg != "" {
		fmt.Fprintf(stderr, "%s: %s\n", name, msg)
		return ExitUsage
	}
	log, err := c.logger(stderr)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	cfg.Logger = log
	names := taskNames()
	if len(names) == 0 {
		fmt.Fprintf(stderr, "%s: no tasks are compiled into this binary, so it has nothing to run; not starting.\n\n", name)
		fmt.Fprint(stderr, named(noTasksHelp, name))
		return ExitUsage
	}
	// The tasks' own slog calls use the worker's level and format.
	defer useAsDefault(log)()

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
	// The metrics server starts before the database is opened: /healthz
	// answers during the start-up, and /readyz says what is not ready yet.
	var metrics *metricsServer
	if metricsAddr != "" {
		if metrics, err = startMetrics(name, metricsAddr, c.dsn, log); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitError
		}
		defer metrics.shutdown() // on a failed start-up
	}
	b, err := database.Open(ctx, c.dsn, append([]database.Option{database.WithName(c.backend), database.WithLogger(log)},
		cmd.BackendOptions...)...)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitError
	}
	defer b.Close()
	if metrics != nil {
		if err := metrics.instrument(b); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitError
		}
	}
	defer registerBackend(b, log)()
	if metrics != nil {
		// Once the worker has stopped, before the backend is closed.
		defer metrics.shutdown()
	}
	if cmd.Setup != nil {
		tctx, err := cmd.Setup(ctx, Env{Backend: b, DB: b.DB(), Logger: log})
		if err != nil {
			fmt.Fprintf(stderr, "%s: setup: %v\n", name, err)
			return ExitError
		}
		if tctx != nil {
			cfg.TaskContext = func(context.Context) context.Context { return tctx }
		}
	}
	w, err := database.NewWorker(b, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return ExitUsage
	}
	if metrics != nil {
		metrics.watch(b, w)
	}
	if err := w.Start(ctx); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
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
			return stopCode(name, err, stderr)
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
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return ExitHardStop
		}
	}
}

// checkWorkerFlags returns a usage problem of the worker's flags that the
// flag package cannot see, or "".
func checkWorkerFlags(fs *flag.FlagSet, cfg database.WorkerConfig, metricsAddr string) string {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if metricsAddr != "" {
		if err := checkMetricsAddr(metricsAddr); err != nil {
			from := ""
			if !set["metrics-addr"] {
				from = " (from " + MetricsAddrEnv + ")"
			}
			return fmt.Sprintf("--metrics-addr %q%s: %v", metricsAddr, from, err)
		}
	}
	switch {
	case set["worker-id"] && strings.TrimSpace(cfg.WorkerID) == "":
		return "--worker-id: must not be empty (leave the flag out for the default host:pid:random)"
	case len(cfg.Queues) > 0 && len(cfg.ExcludeQueues) > 0:
		return fmt.Sprintf("--exclude-queues applies only to all queues (--queues '*', the default); "+
			"with the explicit list --queues %s, leave the excluded queues out of that list instead",
			strings.Join(cfg.Queues, ","))
	}
	return ""
}

// registerBackend registers b under its name and, when nothing is
// registered under "default", as "default" too, so that code of the worker
// binary outside the tasks enqueues to it rather than to the implicit
// inline default; restore undoes both.
func registerBackend(b *database.Backend, log *slog.Logger) (restore func()) {
	restoreOwn := tasks.RegisterBackend(b)
	restoreDefault := func() {}
	as := []string{b.Name()}
	if b.Name() != tasks.DefaultBackendName {
		var ok bool
		if restoreDefault, ok = tasks.RegisterBackendIfAbsent(tasks.DefaultBackendName, b); ok {
			as = append(as, tasks.DefaultBackendName)
		}
	}
	log.Debug("gotasks: backend registered", "backend", b.Name(), "as", as)
	return func() {
		restoreDefault()
		restoreOwn()
	}
}

func stopCode(name string, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
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
