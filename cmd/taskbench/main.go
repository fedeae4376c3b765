// Command taskbench measures the database backend of gotasks (issue 6):
// burn-down and continuous throughput, wake-up latency, enqueue rates, the
// worker's peak memory, how the time per task changes with table size, and,
// on PostgreSQL, what a task costs the server (CPU and WAL per task) and
// the server's own floor for a task (pgbench running the claim and the
// completion alone), so that it can be compared fairly with River's
// "river bench" and with the database itself.
//
//	taskbench                                   # all modes on SQLite in a temp dir
//	taskbench --database postgres://postgres@127.0.0.1:5432/test?sslmode=disable
//	taskbench --mode burndown --tasks 100000 --concurrency 100 --runs 3
//	taskbench --mode burndown --workers 2       # two worker processes at once
//	taskbench --mode continuous --prefill 100000  # a backlog inserted before the clock starts
//	taskbench --database postgres://… --mode burndown,floor
//	taskbench --mode scaling --scaling-max 1000000
//
// Without flags the worker runs with its own defaults (concurrency
// database.DefaultConcurrency, the default claim batch and poll interval).
//
// Every run of every mode gets a fresh database: on PostgreSQL a new schema
// taskbench_<random> (created with an admin connection, passed to the
// backend through search_path, dropped at the end unless --keep); on SQLite
// a new file in a temporary directory. The burn-down and scaling workers run
// in child processes (this binary re-executed with the hidden mode
// worker-child) so that their peak RSS and CPU time are their own.
//
// Cost per task (burndown and floor, PostgreSQL on this machine only): the
// CPU time of every process named "postgres" (from /proc, the server's
// whole cost: backends, walwriter, checkpointer and the rest) and the WAL
// written (pg_current_wal_lsn), both from just before the workers start to
// when the last has reported, while their connections are still open; and
// the workers' own CPU time (getrusage). The server's figures include
// whatever else runs on it meanwhile.
//
// Output: human progress lines, then at the end one line per figure in the
// form "NAME: VALUE UNIT" (the median over --runs), for scripts to grep.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	_ "github.com/gotasks/gotasks/examples/exampletasks" // Noop, the benchmark task
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Modes a user can ask for; worker-child is internal.
var userModes = []string{"burndown", "continuous", "latency", "enqueue", "scaling", "floor"}

// allModes is what --mode all runs (scaling and floor only when asked for).
var allModes = []string{"burndown", "continuous", "latency", "enqueue"}

// childMode is the hidden mode of the worker child process.
const childMode = "worker-child"

type options struct {
	database    string
	mode        string
	tasks       int
	duration    time.Duration
	concurrency int
	batchSize   int
	poll        time.Duration
	runs        int
	keep        bool
	cpuprofile  string
	memprofile  string
	parentProf  string
	timeout     time.Duration

	latencySamples int
	latencyGap     time.Duration
	latencyWarmup  int

	enqueueSingle int
	manySize      int
	manyReps      int

	producers    int
	produceBatch int
	backlog      int
	// prefill is the backlog enqueued before the continuous run's clock
	// starts (--prefill).
	prefill int

	// workers is the number of burn-down worker processes (--workers).
	workers int

	scalingSizes string
	scalingMax   int
	scalingTasks int
	scalingVac   bool

	// globalLimit sets a global limit on the benchmark's queue
	// (--global-limit; 0: none).
	globalLimit int

	// floorSchema is the table the floor mode runs on (--floor-schema; see
	// floorSchemas).
	floorSchema string

	// worker-child only
	expect int
}

const usage = `Usage: taskbench [flags]

Benchmarks the gotasks database backend on PostgreSQL or SQLite, each run in a
fresh schema (PostgreSQL) or a fresh file (SQLite). Modes:

  burndown    enqueue --tasks no-op tasks, then time --workers worker child
              processes draining them (first start to last end); their
              peak RSS and CPU time; on PostgreSQL on this machine also the
              cost per task: the server's CPU time (all its processes), the
              workers' CPU time, and the WAL written
  continuous  enqueue and work at the same time for --duration; with
              --prefill N, N tasks are enqueued before the clock starts and
              the producers keep max(--backlog, N) unfinished
  latency     enqueue-to-start and enqueue-to-finish of single tasks given to
              an idle worker (PostgreSQL: from another backend instance, so
              the wake-up goes through LISTEN/NOTIFY)
  enqueue     sequential Enqueue rate and EnqueueMany rate
  scaling     time per task at growing table sizes (finished rows)
  floor       PostgreSQL only: the database's own floor for a task. The table
              is filled as for burndown, then pgbench (one connection, -M
              prepared) runs the worker's claim and a completion in batches
              (floor.sql, embedded), with the server's CPU and WAL per task
              as for burndown; needs pgbench in PATH
  all         burndown, continuous, latency, enqueue (default)

Several modes: --mode burndown,latency. The figures come last, one a line:
"NAME: VALUE UNIT", the median over --runs.

Flags:
`

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("taskbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usage)
		fs.VisitAll(func(f *flag.Flag) {
			if f.Name == "expect" {
				return // internal
			}
			name, u := flag.UnquoteUsage(f)
			if name != "" {
				name = " " + name
			}
			fmt.Fprintf(stderr, "  --%s%s\n    \t%s", f.Name, name, strings.ReplaceAll(u, "\n", "\n    \t"))
			if f.DefValue != "" && f.DefValue != "0" && f.DefValue != "0s" && f.DefValue != "false" {
				fmt.Fprintf(stderr, " (default %s)", f.DefValue)
			}
			fmt.Fprintln(stderr)
		})
	}
	fs.StringVar(&o.database, "database", "sqlite", "DSN: postgres://…, or sqlite (a temp dir), or sqlite:///dir/x.db (fresh files in a temp dir under /dir)")
	fs.StringVar(&o.mode, "mode", "all", "comma-separated modes: burndown, continuous, latency, enqueue, scaling, or all")
	fs.IntVar(&o.tasks, "tasks", 100000, "burndown, floor: tasks to enqueue and drain")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "continuous: how long to enqueue and work")
	fs.IntVar(&o.concurrency, "concurrency", 0, "worker concurrency (0: the worker's default, database.DefaultConcurrency)")
	fs.IntVar(&o.batchSize, "batch-size", 0, "worker claim batch, and floor's (0: the worker's default)")
	fs.DurationVar(&o.poll, "poll-interval", 0, "worker poll interval (0: the worker's default, database.DefaultPollInterval)")
	fs.IntVar(&o.runs, "runs", 1, "runs of each mode (each in a fresh database); figures are medians")
	fs.BoolVar(&o.keep, "keep", false, "keep the PostgreSQL schemas and SQLite files")
	fs.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of the burn-down worker child to this file (run N>1 of --runs: FILE.N; child K of --workers >1: FILE.wK)")
	fs.StringVar(&o.memprofile, "memprofile", "", "write a heap profile of the burn-down worker child to this file at its end (run N>1: FILE.N; child K: FILE.wK)")
	fs.StringVar(&o.parentProf, "parent-cpuprofile", "", "write a CPU profile of this (parent) process to this file: enqueue, continuous and latency run here")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "give up on one measurement after this long")
	fs.IntVar(&o.latencySamples, "latency-samples", 200, "latency: measured tasks")
	fs.DurationVar(&o.latencyGap, "latency-gap", 5*time.Millisecond, "latency: pause between a task's finish and the next enqueue")
	fs.IntVar(&o.latencyWarmup, "latency-warmup", 5, "latency: unmeasured tasks first")
	fs.IntVar(&o.enqueueSingle, "enqueue-single", 2000, "enqueue: sequential Enqueue calls")
	fs.IntVar(&o.manySize, "many-size", 10000, "enqueue: tasks per EnqueueMany")
	fs.IntVar(&o.manyReps, "many-reps", 5, "enqueue: EnqueueMany repetitions per run (median)")
	fs.IntVar(&o.producers, "producers", 2, "continuous: producer goroutines")
	fs.IntVar(&o.produceBatch, "produce-batch", 100, "continuous: tasks per EnqueueMany of a producer")
	fs.IntVar(&o.backlog, "backlog", 5000, "continuous: producers pause while this many tasks are enqueued but not finished (or --prefill's, if larger)")
	fs.IntVar(&o.prefill, "prefill", 0, "continuous: tasks enqueued before the clock starts (the worker starts after them)")
	fs.IntVar(&o.workers, "workers", 1, "burndown: worker child processes draining the table at once (each with its own backend and connection pool)")
	fs.StringVar(&o.scalingSizes, "scaling-sizes", "10000,100000,1000000", "scaling: table sizes (finished rows)")
	fs.IntVar(&o.scalingMax, "scaling-max", 100000, "scaling: skip sizes above this (1000000 to include 1M rows; it takes time)")
	fs.IntVar(&o.scalingTasks, "scaling-tasks", 10000, "scaling: fresh tasks burnt down at each size")
	fs.BoolVar(&o.scalingVac, "scaling-analyze", true, "scaling: VACUUM ANALYZE (PostgreSQL) or ANALYZE (SQLite) after each fill, as autovacuum would")
	fs.IntVar(&o.globalLimit, "global-limit", 0, "burndown, continuous: set a global limit of N RUNNING on the benchmark's queue (1000: never binds; measures the limited claim's cost)")
	fs.StringVar(&o.floorSchema, "floor-schema", "", "floor: the table pgbench runs on: empty (as migrated and filled), current (the same, rewritten like the others), hot or lease (changed for HOT completions; see floor_hot.sql)")
	fs.IntVar(&o.expect, "expect", 0, "worker-child: tasks the child should process")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var probs []string
	if o.tasks <= 0 || o.runs <= 0 || o.latencySamples <= 0 || o.enqueueSingle <= 0 || o.manySize <= 0 ||
		o.manyReps <= 0 || o.producers <= 0 || o.produceBatch <= 0 || o.backlog <= 0 || o.scalingTasks <= 0 {
		probs = append(probs, "counts must be positive")
	}
	if o.concurrency < 0 || o.batchSize < 0 || o.poll < 0 || o.duration <= 0 || o.latencyGap < 0 || o.latencyWarmup < 0 ||
		o.prefill < 0 {
		probs = append(probs, "concurrency, batch size, prefill and durations must not be negative (--duration positive)")
	}
	if o.workers < 1 {
		probs = append(probs, "--workers must be at least 1")
	}
	if !slices.Contains(floorSchemas, o.floorSchema) {
		probs = append(probs, fmt.Sprintf("--floor-schema %q: want current, hot or lease", o.floorSchema))
	} else if m, err := o.modes(); o.floorSchema != "" && err == nil && !slices.Contains(m, "floor") {
		probs = append(probs, "--floor-schema is for --mode floor")
	}
	if len(probs) > 0 {
		return nil, errors.New(strings.Join(probs, "; "))
	}
	return o, nil
}

func (o *options) modes() ([]string, error) {
	if o.mode == childMode {
		return []string{childMode}, nil
	}
	var out []string
	for m := range strings.SplitSeq(o.mode, ",") {
		m = strings.TrimSpace(m)
		switch {
		case m == "all":
			out = append(out, allModes...)
		case slices.Contains(userModes, m):
			out = append(out, m)
		default:
			return nil, fmt.Errorf("unknown mode %q (want %s or all)", m, strings.Join(userModes, ", "))
		}
	}
	var uniq []string
	for _, m := range out {
		if !slices.Contains(uniq, m) {
			uniq = append(uniq, m)
		}
	}
	return uniq, nil
}

// scalingList returns the scaling sizes up to --scaling-max, ascending.
func (o *options) scalingList() ([]int, error) {
	var sizes []int
	for s := range strings.SplitSeq(o.scalingSizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 0 {
			return nil, fmt.Errorf("--scaling-sizes: bad size %q", s)
		}
		if n <= o.scalingMax {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	if len(sizes) == 0 {
		return nil, fmt.Errorf("--scaling-sizes %s: none is within --scaling-max %d", o.scalingSizes, o.scalingMax)
	}
	return sizes, nil
}

// workerConfig is the worker configuration the flags ask for.
func (o *options) workerConfig() database.WorkerConfig {
	return database.WorkerConfig{Concurrency: o.concurrency, BatchSize: o.batchSize, PollInterval: o.poll}
}

// workerConcurrency is the concurrency the worker runs with: --concurrency,
// or the worker's default.
func (o *options) workerConcurrency() int {
	if o.concurrency == 0 {
		return database.DefaultConcurrency
	}
	return o.concurrency
}

// claimBatch is the claim batch the worker runs with: --batch-size, or the
// worker's default. The default mirrors WorkerConfig.normalize in
// backends/database/worker_config.go (BatchSize 0: the concurrency, at
// most 1000), which the package does not export: keep the two in step.
func (o *options) claimBatch() int {
	if o.batchSize > 0 {
		return o.batchSize
	}
	return min(o.workerConcurrency(), 1000)
}

// describeWorker says which worker settings come from flags and which from
// the worker's defaults.
func (o *options) describeWorker() string {
	conc := fmt.Sprintf("concurrency=%d (--concurrency)", o.concurrency)
	if o.concurrency == 0 {
		conc = fmt.Sprintf("concurrency=%d (worker default)", o.workerConcurrency())
	}
	batch := fmt.Sprintf("claim batch=%d (--batch-size)", o.batchSize)
	if o.batchSize == 0 {
		batch = fmt.Sprintf("claim batch=%d (worker default)", o.claimBatch())
	}
	poll := fmt.Sprintf("poll interval=%v (--poll-interval)", o.poll)
	if o.poll == 0 {
		poll = fmt.Sprintf("poll interval=%v (worker default)", database.DefaultPollInterval)
	}
	return conc + ", " + batch + ", " + poll + "; other settings: worker defaults"
}

// run is the command; it returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "taskbench:", err)
		return 2
	}
	modes, err := o.modes()
	if err != nil {
		fmt.Fprintln(stderr, "taskbench:", err)
		return 2
	}
	if modes[0] == childMode {
		if err := workerChild(ctx, o, os.Stdin, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "taskbench worker-child:", err)
			return 1
		}
		return 0
	}
	if slices.Contains(modes, "scaling") {
		if _, err := o.scalingList(); err != nil {
			fmt.Fprintln(stderr, "taskbench:", err)
			return 2
		}
	}
	if o.parentProf != "" {
		f, err := os.Create(o.parentProf)
		if err != nil {
			fmt.Fprintln(stderr, "taskbench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "taskbench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	bench, err := newBench(ctx, o, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "taskbench:", err)
		return 1
	}
	defer bench.close()
	bench.printEnvironment(ctx)
	failed := false
	for _, m := range modes {
		if err := bench.runMode(ctx, m); err != nil {
			fmt.Fprintf(stderr, "taskbench: %s: %v\n", m, err)
			failed = true
			if ctx.Err() != nil {
				break
			}
		}
	}
	bench.printFigures()
	if failed {
		return 1
	}
	return 0
}
