package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

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
				"continuous_tasks_per_s", "continuous_backlog_end",
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
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit code %d, want 2 (stderr %q)", args, code, stderr.String())
		}
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != 0 ||
		!strings.Contains(stderr.String(), "--concurrency") || strings.Contains(stderr.String(), "--expect") {
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
