package workercmd_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/internal/workerfixture"
	"github.com/gotasks/gotasks/tasks"
)

// Shared helpers (package workerfixture).
type syncBuffer = workerfixture.SyncBuffer

var (
	openBackend   = workerfixture.OpenBackend
	statuses      = workerfixture.Statuses
	waitUntil     = dbtest.WaitUntil
	oneLine       = workerfixture.OneLine
	workerArgs    = workerfixture.WorkerArgs
	enqueueSleeps = workerfixture.EnqueueSleeps
)

// The command's logic, run in-process: flags, exit codes, messages, and
// stop requests delivered on the sig channel of Run.

// dbworker is the command as the stock binary, named dbworker.
var dbworker = workercmd.Command{Name: "dbworker"}

// run runs the command with args to completion (at most 30 s).
func run(t *testing.T, sig chan os.Signal, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runCmd(t, dbworker, sig, args...)
}

// runCmd runs cmd with args to completion (at most 30 s).
func runCmd(t *testing.T, cmd workercmd.Command, sig chan os.Signal, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb syncBuffer
	code = runCmdAsync(t, cmd, sig, &out, &errb, args...)()
	return code, out.String(), errb.String()
}

// runAsync starts the command and returns a function that waits for its
// exit code.
func runAsync(t *testing.T, sig chan os.Signal, stdout, stderr *syncBuffer, args ...string) (wait func() int) {
	t.Helper()
	return runCmdAsync(t, dbworker, sig, stdout, stderr, args...)
}

func runCmdAsync(t *testing.T, cmd workercmd.Command, sig chan os.Signal, stdout, stderr *syncBuffer, args ...string) (wait func() int) {
	t.Helper()
	if sig == nil {
		sig = make(chan os.Signal, 2) // never signalled; keeps the process's signals away
	}
	done := make(chan int, 1)
	go func() { done <- cmd.Run(context.Background(), args, stdout, stderr, sig) }()
	return func() int {
		t.Helper()
		select {
		case code := <-done:
			return code
		case <-time.After(30 * time.Second):
			t.Fatalf("dbworker %v did not exit within 30 s; stderr:\n%s", args, stderr)
			return -1
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := run(t, nil, "--help")
	if code != workercmd.ExitOK {
		t.Errorf("--help exit code %d; want 0", code)
	}
	for _, f := range []string{"Usage: dbworker", "--database", "--backend", "--queues", "--exclude-queues", "--concurrency",
		"--interval", "--sleep", "--duration", "--max-tasks", "--batch", "--no-scheduler", "--worker-id", "--startup-jitter", "--log-level",
		"--log-format", "--grace-period", "GOTASKS_DATABASE_URL", "--metrics-addr", "GOTASKS_METRICS_ADDR"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("--help does not mention %q:\n%s", f, stderr)
		}
	}
	noSingleDash(t, "--help", stderr)
	for _, sub := range []string{"migrate", "check"} {
		code, _, stderr := run(t, nil, sub, "--help")
		if code != workercmd.ExitOK || !strings.Contains(stderr, "  --database") {
			t.Errorf("%s --help: exit %d, output:\n%s", sub, code, stderr)
		}
		noSingleDash(t, sub+" --help", stderr)
	}
}

// noSingleDash checks that a usage text lists its flags in the --flag style
// of the docs, not the flag package's -flag.
func noSingleDash(t *testing.T, what, usage string) {
	t.Helper()
	for l := range strings.Lines(usage) {
		if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") {
			t.Errorf("%s lists a flag as %q; want the --flag style", what, strings.TrimSpace(l))
		}
	}
}

// TestUsageName: usage texts and messages say the binary's own name: the
// base name of os.Args[0] by default (here the test binary), or
// Command.Name.
func TestUsageName(t *testing.T) {
	t.Parallel()
	self := strings.TrimSuffix(filepath.Base(os.Args[0]), ".exe")
	for _, tc := range []struct {
		name string
		cmd  workercmd.Command
		want string
	}{
		{"default", workercmd.Command{}, self},
		{"Name", workercmd.Command{Name: "myworker"}, "myworker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, _, help := runCmd(t, tc.cmd, nil, "--help")
			for _, want := range []string{"Usage: " + tc.want + " [flags]", tc.want + " migrate [--sql]", `"` + tc.want + ` tasks" lists them`} {
				if !strings.Contains(help, want) {
					t.Errorf("--help does not say %q:\n%s", want, help)
				}
			}
			if tc.want != "dbworker" && strings.Contains(help, "dbworker") {
				t.Errorf("--help of %s says dbworker:\n%s", tc.want, help)
			}
			code, _, stderr := runCmd(t, tc.cmd, nil, "--database", dbtest.SQLiteDSN(t), "extra")
			if code != workercmd.ExitUsage || !strings.HasPrefix(stderr, tc.want+`: unexpected argument "extra"`) {
				t.Errorf("exit %d, stderr:\n%s\nwant %d and a message starting with %q", code, stderr, workercmd.ExitUsage, tc.want+":")
			}
			for _, sub := range []string{"migrate", "check", "tasks"} {
				if _, _, stderr := runCmd(t, tc.cmd, nil, sub, "--help"); !strings.Contains(stderr, "Usage: "+tc.want+" "+sub) {
					t.Errorf("%s --help does not say %q:\n%s", sub, "Usage: "+tc.want+" "+sub, stderr)
				}
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	dsn := dbtest.SQLiteDSN(t)
	for _, args := range [][]string{
		{"--no-such-flag"},
		{"--concurrency", "many"},
		{"--database", dsn, "extra-argument"},
		{"--database", dsn, "--log-format", "xml"},
		{"--database", dsn, "--log-level", "loud"},
		{"--database", dsn, "--concurrency", "-1"},
		{"--database", dsn, "--queues", "a,*"},
		{"--database", dsn, "--heartbeat", "1m", "--rescue-after", "30s"},
		{"migrate", "--no-such-flag"},
	} {
		if code, _, stderr := run(t, nil, args...); code != workercmd.ExitUsage {
			t.Errorf("%q: exit %d; want %d; stderr:\n%s", args, code, workercmd.ExitUsage, stderr)
		}
	}
}

// TestWorkerFlagCombinations: --exclude-queues only with all queues, and an
// explicit --worker-id must not be empty; each is a one-line usage error.
func TestWorkerFlagCombinations(t *testing.T) {
	t.Parallel()
	dsn := dbtest.SQLiteDSN(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // "" : runs (exit 0)
	}{
		{"ExcludeWithAList", []string{"--queues", "a,b", "--exclude-queues", "b"}, "--exclude-queues applies only to all queues"},
		{"ExcludeWithOneQueue", []string{"--queue", "a", "--exclude-queues", "c"}, "with the explicit list --queues a"},
		{"ExcludeWithAllQueues", []string{"--queues", "*", "--exclude-queues", "b"}, ""},
		{"ExcludeAlone", []string{"--exclude-queues", "b,c"}, ""},
		{"EmptyWorkerID", []string{"--worker-id", ""}, "--worker-id: must not be empty"},
		{"EmptyWorkerIDEquals", []string{"--worker-id="}, "--worker-id: must not be empty"},
		{"BlankWorkerID", []string{"--worker-id", "  "}, "--worker-id: must not be empty"},
		{"WorkerID", []string{"--worker-id", "w1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := run(t, nil, append([]string{"--database", dsn, "--batch", "--log-level", "error"}, tc.args...)...)
			if tc.want == "" {
				if code != workercmd.ExitOK {
					t.Errorf("exit %d; want 0; stderr:\n%s", code, stderr)
				}
				return
			}
			if code != workercmd.ExitUsage {
				t.Errorf("exit %d; want %d", code, workercmd.ExitUsage)
			}
			oneLine(t, stderr, tc.want)
		})
	}
}

func TestBadDSN(t *testing.T) {
	t.Parallel()
	for _, sub := range [][]string{nil, {"migrate"}, {"check"}} {
		code, _, stderr := run(t, nil, append(sub, "--database", "mysql://x")...)
		if code != workercmd.ExitError {
			t.Errorf("%v: exit %d; want 1", sub, code)
		}
		oneLine(t, stderr, "bad database DSN", "mysql://x")
	}
	code, _, stderr := run(t, nil, "--database", "postgres://u:secret@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	if code != workercmd.ExitError {
		t.Errorf("unreachable: exit %d; want 1", code)
	}
	oneLine(t, stderr, "unreachable")
	if strings.Contains(stderr, "secret") {
		t.Errorf("the message shows the password:\n%s", stderr)
	}
}

// TestMissingSchema: PostgreSQL is not migrated implicitly; the message says
// how, and migrate then makes the worker work.
func TestMissingSchema(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresDSN(t)
	code, _, stderr := run(t, nil, "--database", dsn, "--batch")
	if code != workercmd.ExitError {
		t.Errorf("exit %d; want 1", code)
	}
	oneLine(t, stderr, "dbworker migrate")
	if code, _, stderr := run(t, nil, "check", "--database", dsn); code != workercmd.ExitError || !strings.Contains(stderr, "dbworker migrate") {
		t.Errorf("check before migrate: exit %d, stderr:\n%s", code, stderr)
	}
	code, stdout, stderr := run(t, nil, "migrate", "--database", dsn)
	if code != workercmd.ExitOK || !strings.Contains(stdout, "up to date") {
		t.Fatalf("migrate: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, nil, "migrate", "--database", dsn); code != workercmd.ExitOK {
		t.Errorf("second migrate: exit %d, stderr:\n%s", code, stderr)
	}
	if code, stdout, stderr := run(t, nil, "check", "--database", dsn); code != workercmd.ExitOK || !strings.Contains(stdout, "ok") {
		t.Errorf("check: exit %d, stdout %q, stderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := run(t, nil, "--database", dsn, "--batch"); code != workercmd.ExitOK {
		t.Errorf("worker after migrate: exit %d, stderr:\n%s", code, stderr)
	}
	if code, stdout, _ := run(t, nil, "migrate", "--sql", "--database", dsn); code != workercmd.ExitOK || !strings.Contains(stdout, "CREATE TABLE gotasks_task") {
		t.Errorf("migrate --sql: exit %d, stdout:\n%s", code, stdout)
	}
}

// TestBatch: --batch runs what is due and exits 0.
func TestBatch(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		sum := exampletasks.Sum.Using(tasks.WithBackend(b.Name()))
		var rs []*tasks.Result[int]
		for i := range 5 {
			r, err := sum.Enqueue(ctx, []int{i, i, 1})
			if err != nil {
				t.Fatal(err)
			}
			rs = append(rs, r)
		}
		div, err := exampletasks.Divide.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, [2]int{1, 0})
		if err != nil {
			t.Fatal(err)
		}
		later, err := sum.Using(tasks.WithDelay(time.Hour)).Enqueue(ctx, []int{1})
		if err != nil {
			t.Fatal(err)
		}
		code, _, stderr := run(t, nil, workerArgs(b, dsn, "--batch", "--log-format", "json")...)
		if code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		if !strings.Contains(stderr, `"msg":"gotasks: worker stopping"`) {
			t.Errorf("no JSON log of the stop:\n%s", stderr)
		}
		var got []int
		for _, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			v, err := r.Value()
			if err != nil {
				t.Errorf("sum %s: %v", r.ID, err)
			}
			got = append(got, v)
		}
		if diff := cmp.Diff([]int{1, 3, 5, 7, 9}, got); diff != "" {
			t.Errorf("sums (-want +got):\n%s", diff)
		}
		if err := div.Refresh(ctx); err != nil || div.Status != tasks.StatusFailed {
			t.Errorf("divide by zero: %s, %v; want FAILED", div.Status, err)
		}
		if err := later.Refresh(ctx); err != nil || later.Status != tasks.StatusReady {
			t.Errorf("deferred task: %s, %v; want READY", later.Status, err)
		}
	})
}

// TestDatabaseFromEnv: the DSN comes from GOTASKS_DATABASE_URL when
// --database is not given. (Not parallel: it sets the environment.)
func TestDatabaseFromEnv(t *testing.T) {
	dsn := dbtest.SQLiteDSN(t)
	b := openBackend(t, dsn)
	r, err := exampletasks.Sum.Using(tasks.WithBackend(b.Name())).Enqueue(context.Background(), []int{2, 3})
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv(database.DSNEnv, dsn)
	if code, _, stderr := run(t, nil, "--backend", b.Name(), "--batch", "--interval", "10ms"); code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Value(); v != 5 || err != nil {
		t.Errorf("sum = %d, %v; want 5", v, err)
	}
}

// TestStopsByItself: --max-tasks and --duration end the worker with exit 0.
func TestStopsByItself(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := openBackend(t, dsn)
		sum := exampletasks.Sum.Using(tasks.WithBackend(b.Name()))
		if _, err := sum.EnqueueMany(context.Background(), [][]int{{1}, {2}, {3}, {4}, {5}}); err != nil {
			t.Fatal(err)
		}
		if code, _, stderr := run(t, nil, workerArgs(b, dsn, "--max-tasks", "2", "--concurrency", "1")...); code != workercmd.ExitOK {
			t.Fatalf("--max-tasks: exit %d; stderr:\n%s", code, stderr)
		}
		if diff := cmp.Diff(map[tasks.Status]int{tasks.StatusSuccessful: 2, tasks.StatusReady: 3}, statuses(t, b)); diff != "" {
			t.Errorf("after --max-tasks 2 (-want +got):\n%s", diff)
		}
		start := time.Now()
		if code, _, stderr := run(t, nil, workerArgs(b, dsn, "--duration", "300ms")...); code != workercmd.ExitOK {
			t.Fatalf("--duration: exit %d; stderr:\n%s", code, stderr)
		}
		if d := time.Since(start); d < 300*time.Millisecond {
			t.Errorf("--duration 300ms exited after %v", d)
		}
		if diff := cmp.Diff(map[tasks.Status]int{tasks.StatusSuccessful: 5}, statuses(t, b)); diff != "" {
			t.Errorf("after --duration (-want +got):\n%s", diff)
		}
	})
}

func running(t *testing.T, b *database.Backend) int { return statuses(t, b)[tasks.StatusRunning] }

// TestSignals: the first stop request lets running tasks finish (exit 0);
// a second one cancels them and hands them back (exit 3).
func TestSignals(t *testing.T) {
	t.Parallel()
	t.Run("graceful", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := openBackend(t, dsn)
			enqueueSleeps(t, b, 5, 300)
			sig := make(chan os.Signal, 2)
			var stdout, stderr syncBuffer
			wait := runAsync(t, sig, &stdout, &stderr, workerArgs(b, dsn, "--concurrency", "5")...)
			waitUntil(t, 10*time.Second, "5 running tasks", func() bool { return running(t, b) == 5 })
			sig <- os.Interrupt
			if code := wait(); code != workercmd.ExitOK {
				t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
			}
			if diff := cmp.Diff(map[tasks.Status]int{tasks.StatusSuccessful: 5}, statuses(t, b)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	})
	t.Run("second", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := openBackend(t, dsn)
			rs := enqueueSleeps(t, b, 5, 60_000)
			sig := make(chan os.Signal, 2)
			var stdout, stderr syncBuffer
			wait := runAsync(t, sig, &stdout, &stderr, workerArgs(b, dsn, "--concurrency", "5")...)
			waitUntil(t, 10*time.Second, "5 running tasks", func() bool { return running(t, b) == 5 })
			sig <- os.Interrupt
			sig <- os.Interrupt
			if code := wait(); code != workercmd.ExitHardStop {
				t.Fatalf("exit %d; want %d; stderr:\n%s", code, workercmd.ExitHardStop, stderr.String())
			}
			for _, r := range rs {
				if err := r.Refresh(context.Background()); err != nil {
					t.Fatal(err)
				}
				if r.Status != tasks.StatusReady || r.Attempts != 0 || len(r.Errors) != 0 {
					t.Errorf("handed back: %s, attempts %d, errors %v; want READY, 0, none", r.Status, r.Attempts, r.Errors)
				}
			}
		})
	})
	// Stopping by itself (--duration) is graceful, bounded by the grace
	// period, and signals still work during it.
	t.Run("duration", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := openBackend(t, dsn)
			rs := enqueueSleeps(t, b, 1, 60_000)
			sig := make(chan os.Signal, 2)
			var stdout, stderr syncBuffer
			// The duration leaves the worker time to claim the task even on a
			// loaded machine (with 200 ms it sometimes had not yet).
			wait := runAsync(t, sig, &stdout, &stderr, workerArgs(b, dsn, "--duration", "2s")...)
			waitUntil(t, 10*time.Second, "the task to start", func() bool { return running(t, b) == 1 })
			waitUntil(t, 10*time.Second, "the duration to elapse", func() bool {
				return strings.Contains(stderr.String(), "duration elapsed")
			})
			sig <- os.Interrupt // acknowledged: the stop is already graceful
			waitUntil(t, 10*time.Second, "the stop request to be acknowledged", func() bool {
				return strings.Contains(stderr.String(), "stop requested")
			})
			if running(t, b) != 1 {
				t.Fatalf("the task does not run to the end of the graceful stop: %v", statuses(t, b))
			}
			sig <- os.Interrupt
			if code := wait(); code != workercmd.ExitHardStop {
				t.Fatalf("exit %d; want %d; stderr:\n%s", code, workercmd.ExitHardStop, stderr.String())
			}
			if err := rs[0].Refresh(context.Background()); err != nil || rs[0].Status != tasks.StatusReady {
				t.Errorf("task after the hard stop: %s, %v; want READY", rs[0].Status, err)
			}
		})
	})
	t.Run("grace period", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := openBackend(t, dsn)
			rs := enqueueSleeps(t, b, 1, 60_000)
			start := time.Now()
			code, _, stderr := run(t, nil, workerArgs(b, dsn, "--duration", "200ms", "--grace-period", "300ms")...)
			if code != workercmd.ExitHardStop {
				t.Fatalf("exit %d; want %d; stderr:\n%s", code, workercmd.ExitHardStop, stderr)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("exited after %v; want about 500ms", d)
			}
			if err := rs[0].Refresh(context.Background()); err != nil || rs[0].Status != tasks.StatusReady || rs[0].Attempts != 0 {
				t.Errorf("task after the grace period: %s, attempts %d, %v; want READY, 0", rs[0].Status, rs[0].Attempts, err)
			}
		})
	})
}

// check reports a missing SQLite file instead of creating an empty one.
func TestCheckMissingSQLiteFile(t *testing.T) {
	t.Parallel()
	path := t.TempDir() + "/missing.db"
	var stdout, stderr bytes.Buffer
	code := workercmd.Run(t.Context(), []string{"check", "--database", "sqlite://" + path}, &stdout, &stderr, nil)
	if code != workercmd.ExitError || !strings.Contains(stderr.String(), "no SQLite database at "+path) {
		t.Errorf("check on a missing file = %d, stderr %q; want %d and a message naming the file", code, stderr.String(), workercmd.ExitError)
	}
	if _, err := os.Stat(path); err == nil {
		t.Errorf("check created %s", path)
	}
}

// exampleTaskNames are the tasks this test binary has compiled in (package
// exampletasks, and the tasks of setup_test.go and metrics_test.go),
// sorted.
var exampleTaskNames = []string{"examples.divide", "examples.flaky", "examples.noop", "examples.report",
	"examples.send_email", "examples.sleep", "examples.sum", "workercmd_test.deps", "workercmd_test.followup",
	"workercmd_test.log", "workercmd_test.retry", "workercmd_test.span"}

// lines splits output into its non-empty lines.
func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// noTasksMessage is what a binary without tasks must explain, in pieces.
var noTasksMessage = []string{
	"no tasks are compiled into this binary",
	"Tasks are Go functions",
	"compiled into the worker",
	`"dbworker migrate", "dbworker check"`,
	"package main",
	`"github.com/gotasks/gotasks/cmd/dbworker/workercmd"`,
	`_ "example.com/myapp/jobs"`,
	"func main() { os.Exit(workercmd.Main(os.Args[1:])) }",
	"go run ./examples/worker",
}

// missing returns the pieces of want that s does not contain.
func missing(s string, want []string) []string {
	var out []string
	for _, w := range want {
		if !strings.Contains(s, w) {
			out = append(out, w)
		}
	}
	return out
}

// TestNoTasks: the command in a binary without tasks (the stock dbworker)
// refuses to run a worker, before it opens the database, with a message
// saying why and how to build a worker; its sub-commands work. (Not
// parallel: it replaces the binary's task list.)
func TestNoTasks(t *testing.T) {
	workercmd.SetTaskNames(t, nil)
	type outcome struct {
		Code          int
		Stdout        string
		DatabaseMade  bool
		MissingPieces []string
	}
	t.Run("worker refuses to start", func(t *testing.T) {
		for _, args := range [][]string{nil, {"--batch"}, {"--concurrency", "5", "--log-format", "json"}} {
			path := t.TempDir() + "/tasks.db"
			code, stdout, stderr := run(t, nil, append([]string{"--database", "sqlite://" + path}, args...)...)
			_, statErr := os.Stat(path)
			got := outcome{code, stdout, statErr == nil, missing(stderr, noTasksMessage)}
			want := outcome{Code: workercmd.ExitUsage}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%q (-want +got):\n%s\nstderr:\n%s", args, diff, stderr)
			}
			if first := lines(stderr)[0]; !strings.HasPrefix(first, "dbworker: no tasks are compiled into this binary") {
				t.Errorf("%q: first line %q; want the reason first", args, first)
			}
		}
	})
	t.Run("flag errors come first", func(t *testing.T) {
		code, _, stderr := run(t, nil, "--no-such-flag")
		got := outcome{Code: code, MissingPieces: missing(stderr, []string{"no-such-flag"})}
		if diff := cmp.Diff(outcome{Code: workercmd.ExitUsage}, got); diff != "" {
			t.Errorf("--no-such-flag (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
		if strings.Contains(stderr, "no tasks are compiled") {
			t.Errorf("a flag error also gets the no-tasks message:\n%s", stderr)
		}
	})
	t.Run("help says there are none", func(t *testing.T) {
		code, _, stderr := run(t, nil, "--help")
		got := outcome{Code: code, MissingPieces: missing(stderr, []string{"Tasks compiled into this binary: none", "-database", "dbworker tasks"})}
		if diff := cmp.Diff(outcome{Code: workercmd.ExitOK}, got); diff != "" {
			t.Errorf("--help (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
	})
	t.Run("tasks lists none", func(t *testing.T) {
		code, stdout, stderr := run(t, nil, "tasks")
		got := outcome{Code: code, Stdout: stdout, MissingPieces: missing(stderr, noTasksMessage)}
		if diff := cmp.Diff(outcome{Code: workercmd.ExitOK}, got); diff != "" {
			t.Errorf("tasks (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
	})
	t.Run("migrate and check work", func(t *testing.T) {
		dsn := dbtest.SQLiteDSN(t)
		type step struct {
			Code   int
			Stdout string
		}
		var got []step
		for _, sub := range []string{"migrate", "check"} {
			code, stdout, stderr := run(t, nil, sub, "--database", dsn)
			if stderr != "" {
				t.Errorf("%s: stderr:\n%s", sub, stderr)
			}
			got = append(got, step{code, strings.SplitN(stdout, " (", 2)[0]})
		}
		want := []step{{workercmd.ExitOK, "gotasks schema is up to date\n"}, {workercmd.ExitOK, `backend "default" on sqlite: ok`}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("migrate, check (-want +got):\n%s", diff)
		}
	})
}

// TestTasks: "tasks" lists the tasks compiled into the binary, one a line,
// and a worker logs them when it starts.
func TestTasks(t *testing.T) {
	t.Parallel()
	t.Run("sub-command", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := run(t, nil, "tasks")
		if code != workercmd.ExitOK || stderr != "" {
			t.Errorf("exit %d; want 0; stderr:\n%s", code, stderr)
		}
		if diff := cmp.Diff(exampleTaskNames, lines(stdout)); diff != "" {
			t.Errorf("tasks (-want +got):\n%s", diff)
		}
	})
	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		var got []int
		for _, args := range [][]string{{"tasks", "--help"}, {"tasks", "extra"}, {"tasks", "--database", "x"}} {
			code, _, _ := run(t, nil, args...)
			got = append(got, code)
		}
		if diff := cmp.Diff([]int{workercmd.ExitOK, workercmd.ExitUsage, workercmd.ExitUsage}, got); diff != "" {
			t.Errorf("exit codes of tasks --help, tasks extra, tasks --database (-want +got):\n%s", diff)
		}
	})
	t.Run("help", func(t *testing.T) {
		t.Parallel()
		_, _, stderr := run(t, nil, "--help")
		want := fmt.Sprintf("Tasks compiled into this binary (%d): ", len(exampleTaskNames)) + strings.Join(exampleTaskNames, ", ")
		if !strings.Contains(stderr, want) {
			t.Errorf("--help does not say %q:\n%s", want, stderr)
		}
	})
	t.Run("start-up log", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := run(t, nil, "--database", dbtest.SQLiteDSN(t), "--batch", "--log-format", "json")
		if code != workercmd.ExitOK {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		type entry struct {
			Msg   string   `json:"msg"`
			Count int      `json:"count"`
			Tasks []string `json:"tasks"`
		}
		var got []entry
		for _, l := range lines(stderr) {
			var e entry
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("log line %q: %v", l, err)
			}
			if e.Tasks != nil { // the lines that list tasks
				got = append(got, e)
			}
		}
		want := []entry{{Msg: "gotasks: tasks this worker can run", Count: len(exampleTaskNames), Tasks: exampleTaskNames}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("log of the tasks (-want +got):\n%s", diff)
		}
	})
}
