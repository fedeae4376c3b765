package main

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
)

// TestMain lets the test binary stand in for taskbench when the benchmark
// re-executes itself as the worker child.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

var figureLine = regexp.MustCompile(`^([a-z0-9_]+): (-?[0-9]+(?:\.[0-9]+)?) (\S+)$`)

// figures parses the figure lines that end the output.
func figures(t *testing.T, out string) map[string]float64 {
	t.Helper()
	_, tail, ok := strings.Cut(out, "# figures")
	if !ok {
		t.Fatalf("no figures in the output:\n%s", out)
	}
	lines := strings.Split(strings.TrimSpace(tail), "\n")[1:] // after the header line
	figs := map[string]float64{}
	for _, l := range lines {
		m := figureLine.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("figure line %q is not NAME: VALUE UNIT", l)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) || v < 0 {
			t.Fatalf("figure line %q: bad value", l)
		}
		figs[m[1]] = v
	}
	return figs
}

func TestModes(t *testing.T) {
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			dsn := "sqlite:///" + strings.TrimPrefix(t.TempDir(), "/") + "/x.db"
			if dialect == "postgres" {
				dbtest.RequirePostgres(t)
				dsn = dbtest.BaseDSN()
			}
			args := []string{"--database", dsn, "--mode", "all,scaling", "--tasks", "300", "--duration", "1s",
				"--concurrency", "20", "--latency-samples", "5", "--latency-warmup", "1", "--latency-gap", "1ms",
				"--enqueue-single", "20", "--many-size", "200", "--many-reps", "2", "--producers", "1",
				"--produce-batch", "50", "--backlog", "500", "--scaling-sizes", "100,1000,300", "--scaling-max", "500",
				"--scaling-tasks", "100", "--timeout", "2m"}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			var stdout, stderr bytes.Buffer
			if code := run(ctx, args, &stdout, &stderr); code != 0 {
				t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			out := stdout.String()
			t.Logf("output:\n%s", out)
			figs := figures(t, out)
			for _, name := range []string{
				"burndown_tasks_per_s", "burndown_worker_peak_rss_mib",
				"continuous_tasks_per_s", "continuous_backlog_end", "continuous_pending_min",
				"latency_start_p50_ms", "latency_start_p95_ms", "latency_start_p99_ms",
				"latency_finish_p50_ms", "latency_finish_p95_ms", "latency_finish_p99_ms",
				"enqueue_single_per_s", "enqueue_many_200_per_s",
				"scaling_us_per_task_100", "scaling_us_per_task_300",
			} {
				if _, ok := figs[name]; !ok {
					t.Errorf("figure %s missing from the output:\n%s", name, out)
				}
			}
			if _, ok := figs["scaling_us_per_task_1k"]; ok {
				t.Errorf("scaling ran at 1000 rows beyond --scaling-max 500")
			}
			if figs["burndown_tasks_per_s"] <= 0 || figs["continuous_tasks_per_s"] <= 0 {
				t.Errorf("no task was worked: %v", figs)
			}
			if !strings.Contains(out, "# machine: ") || !strings.Contains(out, "nproc=") ||
				!strings.Contains(out, "# dialect: "+dialect) {
				t.Errorf("machine and dialect lines missing:\n%s", out)
			}
			if dialect == "postgres" {
				for _, s := range []string{"server_version=", "shared_buffers=", "synchronous_commit=", "max_connections=", "fsync="} {
					if !strings.Contains(out, s) {
						t.Errorf("PostgreSQL setting %s missing:\n%s", s, out)
					}
				}
				assertNoSchemaLeft(t, out)
			}
		})
	}
}

// assertNoSchemaLeft checks that the run dropped the schemas it created
// (named in its output: other runs may be going on at the same time).
func assertNoSchemaLeft(t *testing.T, out string) {
	t.Helper()
	schemas := regexp.MustCompile(`database: schema (taskbench_[0-9a-f]+)`).FindAllStringSubmatch(out, -1)
	if len(schemas) == 0 {
		t.Fatalf("no schema named in the output:\n%s", out)
	}
	tg, err := newTarget(context.Background(), dbtest.BaseDSN(), false)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.close()
	for _, m := range schemas {
		var n int
		if err := tg.admin.QueryRow(`SELECT count(*) FROM pg_namespace WHERE nspname = $1`, m[1]).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("schema %s was not dropped", m[1])
		}
	}
}

func TestBadUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--mode", "nope"},
		{"--tasks", "0"},
		{"--mode", "scaling", "--scaling-max", "10"},
		{"extra"},
		{"--workers", "0"},
		{"--prefill", "-1"},
		{"--mode", "floor,nope"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit code %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "--concurrency") || strings.Contains(stderr.String(), "--expect") ||
		!strings.Contains(stderr.String(), "--workers") || !strings.Contains(stderr.String(), "--prefill") ||
		!strings.Contains(stderr.String(), "floor ") {
		t.Errorf("--help: exit %d, output %q", code, stderr.String())
	}
}

func TestHelpers(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3}
	if got := median(xs); got != 3 {
		t.Errorf("median = %v", got)
	}
	if got := percentile(xs, 100); got != 5 {
		t.Errorf("p100 = %v", got)
	}
	if got := percentile([]float64{1, 2}, 50); got != 1.5 {
		t.Errorf("p50 of 1,2 = %v", got)
	}
	for n, want := range map[int]string{10000: "10k", 100000: "100k", 1000000: "1m", 300: "300", 1500: "1500"} {
		if got := sizeLabel(n); got != want {
			t.Errorf("sizeLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestFlags(t *testing.T) {
	var stderr bytes.Buffer
	o, err := parseFlags(nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.concurrency != 0 || o.batchSize != 0 || o.workers != 1 || o.prefill != 0 {
		t.Errorf("defaults: concurrency %d, batch %d, workers %d, prefill %d; want 0, 0, 1, 0",
			o.concurrency, o.batchSize, o.workers, o.prefill)
	}
	if got := o.workerConcurrency(); got != database.DefaultConcurrency {
		t.Errorf("worker concurrency %d, want database.DefaultConcurrency %d", got, database.DefaultConcurrency)
	}
	desc := o.describeWorker()
	if want := fmt.Sprintf("concurrency=%d (worker default)", database.DefaultConcurrency); !strings.Contains(desc, want) {
		t.Errorf("describeWorker() = %q, want it to say %q", desc, want)
	}
	if want := fmt.Sprintf("claim batch=%d (worker default)", o.claimBatch()); !strings.Contains(desc, want) {
		t.Errorf("describeWorker() = %q, want it to say %q", desc, want)
	}
	o, err = parseFlags([]string{"--workers", "3", "--prefill", "5000", "--concurrency", "50", "--mode", "floor"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if o.workers != 3 || o.prefill != 5000 || o.concurrency != 50 {
		t.Errorf("parsed workers %d, prefill %d, concurrency %d", o.workers, o.prefill, o.concurrency)
	}
	if got := o.claimBatch(); got != 50 {
		t.Errorf("claim batch at concurrency 50: %d, want 50", got)
	}
	if m, err := o.modes(); err != nil || !slices.Equal(m, []string{"floor"}) {
		t.Errorf("--mode floor: %v, %v", m, err)
	}
	for _, c := range []struct{ conc, batch, want int }{{5000, 0, 1000}, {5000, 7, 7}, {1, 0, 1}} {
		o := &options{concurrency: c.conc, batchSize: c.batch}
		if got := o.claimBatch(); got != c.want {
			t.Errorf("claimBatch(concurrency %d, batch %d) = %d, want %d", c.conc, c.batch, got, c.want)
		}
	}
	all := &options{mode: "all"}
	if m, _ := all.modes(); slices.Contains(m, "floor") {
		t.Errorf("--mode all runs floor: %v", m)
	}
	o, err = parseFlags([]string{"--mode", "floor", "--floor-schema", "lease"}, &stderr)
	if err != nil || o.floorSchema != "lease" {
		t.Errorf("--floor-schema lease: %+v, %v", o, err)
	}
	for _, args := range [][]string{{"--mode", "floor", "--floor-schema", "fast"}, {"--mode", "burndown", "--floor-schema", "hot"}} {
		if _, err := parseFlags(args, &stderr); err == nil || !strings.Contains(err.Error(), "--floor-schema") {
			t.Errorf("%q: err = %v, want one about --floor-schema", args, err)
		}
	}
}

// TestFloorScripts: each --floor-schema has a pgbench script that claims the
// benchmark backend's tasks in batches of :batch, and the HOT schemas'
// scripts claim through the column their DDL adds.
func TestFloorScripts(t *testing.T) {
	t.Parallel()
	for _, v := range floorSchemas {
		script := floorScriptFor(v)
		if !strings.Contains(script, "backend = '"+backendName+"'") || !strings.Contains(script, ":batch") {
			t.Errorf("--floor-schema %q: the script does not claim the tasks of backend %q in batches of :batch", v, backendName)
		}
		ddl := strings.Join(floorVariantDDL("s", v), "\n")
		if hot := v == "hot" || v == "lease"; hot != strings.Contains(script, "WHERE claimable") ||
			hot != strings.Contains(ddl, "ADD COLUMN claimable") {
			t.Errorf("--floor-schema %q: script and DDL disagree on the claimable column:\n%s\n%s", v, script, ddl)
		}
		if lease := v == "lease"; lease != strings.Contains(script, "gotasks_lease") || lease != strings.Contains(ddl, "gotasks_lease") {
			t.Errorf("--floor-schema %q: script and DDL disagree on gotasks_lease", v)
		}
	}
}

func TestCostHelpers(t *testing.T) {
	line := []byte("2236 (postgres) S 2235 2235 2235 0 -1 4194624 3 0 0 0 7 5 11 13 20 0 1 0 1234 0 0")
	k, ticks, ok := parseStat(2236, line)
	if !ok || k != (procKey{pid: 2236, start: 1234}) || ticks != 7+5+11+13 {
		t.Errorf("parseStat = %v, %d, %v", k, ticks, ok)
	}
	if _, _, ok := parseStat(1, []byte("1 (post gres)) S 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0 0")); ok {
		t.Error("parseStat took a process that is not named postgres")
	}
	pm, a, b, c := procKey{1, 1}, procKey{2, 2}, procKey{3, 3}, procKey{4, 4}
	before := map[procKey]int64{pm: 100, a: 50, b: 30}
	// a ran 10 ticks more; b ran 5 more, ended and was waited for by the
	// postmaster (its 35 are in the postmaster's children's time); c is new.
	after := map[procKey]int64{pm: 100 + 35 + 2, a: 60, c: 7}
	if got, want := dbCPU(before, after), (10+5+7+2)*time.Second/clockTicks; got != want {
		t.Errorf("dbCPU = %v, want %v", got, want)
	}
	args, env, err := pgbenchConn("postgres://u:pw@db.example:6543/test?sslmode=disable&search_path=x")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"-h", "db.example", "-p", "6543", "-U", "u", "test"}; !slices.Equal(args, want) {
		t.Errorf("pgbench args %q, want %q", args, want)
	}
	slices.Sort(env)
	if want := []string{"PGPASSWORD=pw", "PGSSLMODE=disable"}; !slices.Equal(env, want) {
		t.Errorf("pgbench env %q, want %q", env, want)
	}
	if !strings.Contains(floorScript, "backend = '"+backendName+"'") || !strings.Contains(floorScript, ":batch") {
		t.Errorf("floor.sql does not claim the tasks of backend %q in batches of :batch", backendName)
	}
}

// runTaskbench runs taskbench with args and returns its output and figures.
func runTaskbench(t *testing.T, args ...string) (string, map[string]float64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	if code := run(ctx, append(args, "--timeout", "1m"), &stdout, &stderr); code != 0 {
		t.Fatalf("%v: exit code %d\nstdout:\n%s\nstderr:\n%s", args, code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	t.Logf("output:\n%s", out)
	return out, figures(t, out)
}

func requireFigures(t *testing.T, out string, figs map[string]float64, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, ok := figs[name]; !ok {
			t.Errorf("figure %s missing from the output:\n%s", name, out)
		}
	}
}

// checkChildren checks the per-child lines of a burn-down with n workers:
// the tasks they processed add up to tasks.
func checkChildren(t *testing.T, out string, n, tasks int) {
	t.Helper()
	lines := regexp.MustCompile(`worker child (\d+)/(\d+) \(concurrency \d+, GOMAXPROCS \d+\): processed (\d+) tasks`).
		FindAllStringSubmatch(out, -1)
	if len(lines) != n {
		t.Fatalf("%d per-child lines, want %d:\n%s", len(lines), n, out)
	}
	sum := 0
	for _, m := range lines {
		if m[2] != strconv.Itoa(n) {
			t.Errorf("child line says %s workers, want %d", m[2], n)
		}
		k, _ := strconv.Atoi(m[3])
		sum += k
	}
	if sum != tasks {
		t.Errorf("the children processed %d tasks in all, want %d", sum, tasks)
	}
}

func TestBurndownWorkersSQLite(t *testing.T) {
	dsn := "sqlite:///" + strings.TrimPrefix(t.TempDir(), "/") + "/x.db"
	out, figs := runTaskbench(t, "--database", dsn, "--mode", "burndown", "--workers", "2", "--tasks", "2000",
		"--concurrency", "200")
	requireFigures(t, out, figs, "burndown_tasks_per_s", "burndown_worker_peak_rss_mib", "burndown_workers")
	if figs["burndown_workers"] != 2 || figs["burndown_tasks_per_s"] <= 0 || figs["burndown_worker_peak_rss_mib"] <= 0 {
		t.Errorf("figures %v", figs)
	}
	checkChildren(t, out, 2, 2000)
	if _, ok := figs["burndown_db_cpu_us_per_task"]; ok {
		t.Errorf("cost figures on SQLite: %v", figs)
	}
	if !strings.Contains(out, "workers' CPU: ") {
		t.Errorf("no workers' CPU line:\n%s", out)
	}
}

func TestContinuousPrefillSQLite(t *testing.T) {
	dsn := "sqlite:///" + strings.TrimPrefix(t.TempDir(), "/") + "/x.db"
	out, figs := runTaskbench(t, "--database", dsn, "--mode", "continuous", "--prefill", "3000", "--backlog", "500",
		"--duration", "1s", "--concurrency", "50", "--producers", "1")
	requireFigures(t, out, figs, "continuous_tasks_per_s", "continuous_pending_min", "continuous_backlog_end")
	if !strings.Contains(out, "prefilled 3000 tasks") || !strings.Contains(out, "back-pressure at 3000 unfinished") {
		t.Errorf("the prefill is not in the output:\n%s", out)
	}
	if figs["continuous_tasks_per_s"] <= 0 {
		t.Errorf("no task was worked: %v", figs)
	}
}

func TestFloorNeedsPostgres(t *testing.T) {
	dsn := "sqlite:///" + strings.TrimPrefix(t.TempDir(), "/") + "/x.db"
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--database", dsn, "--mode", "floor", "--tasks", "10"}, &stdout, &stderr); code != 1 ||
		!strings.Contains(stderr.String(), "PostgreSQL") {
		t.Errorf("floor on SQLite: exit %d, stderr %q", code, stderr.String())
	}
	if strings.Contains(stdout.String(), "database: ") {
		t.Errorf("floor on SQLite created a database:\n%s", stdout.String())
	}
}

func TestCostPostgres(t *testing.T) {
	dbtest.RequirePostgres(t)
	local := len(postgresCPU(0)) > 0
	modes := "burndown,floor"
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Logf("pgbench not in PATH: floor not tested (%v)", err)
		modes = "burndown"
	}
	out, figs := runTaskbench(t, "--database", dbtest.BaseDSN(), "--mode", modes, "--workers", "2", "--tasks", "2000")
	requireFigures(t, out, figs, "burndown_tasks_per_s", "burndown_worker_peak_rss_mib", "burndown_workers")
	checkChildren(t, out, 2, 2000)
	if figs["burndown_workers"] != 2 {
		t.Errorf("burndown_workers %v, want 2", figs["burndown_workers"])
	}
	if modes == "burndown,floor" {
		requireFigures(t, out, figs, "floor_tasks_per_s")
		if !strings.Contains(out, "pgbench: number of transactions actually processed: ") {
			t.Errorf("pgbench's output is missing:\n%s", out)
		}
	}
	if !local {
		t.Logf("the server is not on this machine: no cost figures")
		if !strings.Contains(out, "cost per task: skipped") {
			t.Errorf("no line says the cost per task was skipped:\n%s", out)
		}
	} else {
		requireFigures(t, out, figs, "burndown_db_cpu_us_per_task", "burndown_worker_cpu_us_per_task",
			"burndown_total_cpu_us_per_task", "burndown_wal_bytes_per_task")
		if figs["burndown_worker_cpu_us_per_task"] <= 0 || figs["burndown_wal_bytes_per_task"] <= 0 ||
			figs["burndown_total_cpu_us_per_task"] < figs["burndown_db_cpu_us_per_task"] {
			t.Errorf("cost figures %v", figs)
		}
		if modes == "burndown,floor" {
			requireFigures(t, out, figs, "floor_db_cpu_us_per_task", "floor_wal_bytes_per_task")
			if figs["floor_wal_bytes_per_task"] <= 0 {
				t.Errorf("floor wrote no WAL: %v", figs)
			}
		}
	}
	assertNoSchemaLeft(t, out)
}

// TestFloorSchemaPostgres: --floor-schema lease changes the filled table,
// pgbench drains it with floor_lease.sql, and its completions are HOT.
func TestFloorSchemaPostgres(t *testing.T) {
	dbtest.RequirePostgres(t)
	if _, err := exec.LookPath("pgbench"); err != nil {
		t.Skipf("pgbench not in PATH: %v", err)
	}
	out, figs := runTaskbench(t, "--database", dbtest.BaseDSN(), "--mode", "floor", "--floor-schema", "lease",
		"--tasks", "2000", "--batch-size", "500")
	requireFigures(t, out, figs, "floor_tasks_per_s")
	if !strings.Contains(out, "--floor-schema lease: table prepared") {
		t.Errorf("the output does not say the table was prepared:\n%s", out)
	}
	var upd, hot int
	if i := strings.Index(out, "row updates of gotasks_task: "); i < 0 {
		t.Errorf("no row-update line:\n%s", out)
	} else if _, err := fmt.Sscanf(out[i:], "row updates of gotasks_task: %d, of which heap-only (HOT, no index entry): %d", &upd, &hot); err != nil {
		t.Errorf("row-update line: %v\n%s", err, out)
	} else if upd < 4000 || hot < 1990 {
		// 2000 claims and 2000 completions, and each completion finds room
		// on its page (fillfactor 25) even while another test's snapshot
		// keeps the claims' dead versions there: all 2000 were HOT in every
		// run seen, with and without such a snapshot.
		t.Errorf("row updates %d, HOT %d: want ≥ 4000 updates and nearly all 2000 completions HOT", upd, hot)
	}
	assertNoSchemaLeft(t, out)
}
