package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
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
	workerArgs    = workerfixture.WorkerArgs
	enqueueSleeps = workerfixture.EnqueueSleeps
)

// The real processes, built once by TestMain, then run with flags and
// signalled like a service manager would: the stock dbworker of this
// package, which has no tasks, and the example worker (examples/worker),
// the same command with the example tasks compiled in, for the tests that
// run tasks.

var (
	binary        string // path of the built stock dbworker
	exampleBinary string // path of the built examples/worker
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dbworker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dbworker")
	exampleBinary = filepath.Join(dir, "exampleworker")
	for _, b := range []struct{ out, pkg string }{{binary, "."}, {exampleBinary, "../../examples/worker"}} {
		build := exec.Command("go", "build", "-o", b.out, b.pkg)
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "go build %s: %v\n", b.pkg, err)
			_ = os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

type proc struct {
	t              *testing.T
	cmd            *exec.Cmd
	stdout, stderr syncBuffer
	done           chan struct{}
	err            error
}

// start starts the binary bin with args; it is killed if the test leaves it
// running.
func start(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(bin, args...), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), database.DSNEnv+"=")
	p.cmd.Dir = t.TempDir() // where the default DSN would create its file
	p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

// wait waits (at most 20 s) for the process to exit and returns its exit
// code.
func (p *proc) wait() int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		p.t.Fatalf("dbworker %v did not exit within 20 s; stderr:\n%s", p.cmd.Args[1:], p.stderr.String())
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatal(p.err)
	}
	return 0
}

func (p *proc) signal(s os.Signal) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		p.t.Fatal(err)
	}
}

// dbworker runs the stock dbworker to completion.
func dbworker(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, binary, args...)
	code = p.wait()
	return code, p.stdout.String(), p.stderr.String()
}

// exampleWorker runs the example worker to completion.
func exampleWorker(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, exampleBinary, args...)
	code = p.wait()
	return code, p.stdout.String(), p.stderr.String()
}

func TestProcessHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := dbworker(t, "--help")
	if code != 0 {
		t.Errorf("--help: exit %d; want 0", code)
	}
	for _, f := range []string{"Usage: dbworker", "--database", "--queues", "--exclude-queues", "--concurrency",
		"--interval", "--duration", "--max-tasks", "--batch", "--worker-id", "--startup-jitter", "--log-level",
		"--log-format", "--grace-period"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("--help does not list %q", f)
		}
	}
	// The example worker's help says its own name.
	_, _, stderr = exampleWorker(t, "--help")
	if want := "Usage: " + filepath.Base(exampleBinary) + " [flags]"; !strings.Contains(stderr, want) {
		t.Errorf("the example worker's --help does not say %q:\n%s", want, stderr)
	}
}

func TestProcessBadFlag(t *testing.T) {
	t.Parallel()
	code, _, stderr := dbworker(t, "--no-such-flag")
	if code != 2 {
		t.Errorf("exit %d; want 2", code)
	}
	if !strings.Contains(stderr, "no-such-flag") {
		t.Errorf("stderr does not name the flag:\n%s", stderr)
	}
}

// TestProcessBadDatabase runs the example worker: the stock one stops
// before it opens the database (TestProcessStockWorker).
// exampleOneLine checks that stderr is one line starting with the example
// worker's own name (the binary is exampleworker, not dbworker) that
// contains each of want.
func exampleOneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], filepath.Base(exampleBinary)+": ") {
		t.Errorf("want one line starting with %s: ; got:\n%s", filepath.Base(exampleBinary), stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("message does not mention %q:\n%s", w, stderr)
		}
	}
}

func TestProcessBadDatabase(t *testing.T) {
	t.Parallel()
	code, _, stderr := exampleWorker(t, "--database", "mysql://x")
	if code != 1 {
		t.Errorf("bad DSN: exit %d; want 1", code)
	}
	exampleOneLine(t, stderr, "bad database DSN", "mysql://x")

	code, _, stderr = exampleWorker(t, "--database", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if code != 1 {
		t.Errorf("unreachable PostgreSQL: exit %d; want 1", code)
	}
	exampleOneLine(t, stderr, "unreachable")
}

// TestProcessMigrate: a fresh PostgreSQL schema is refused with a message
// naming `dbworker migrate`, which then makes the worker run. The migration
// is applied (and checked) by the stock dbworker, the worker is the example
// one.
func TestProcessMigrate(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresDSN(t)
	code, _, stderr := exampleWorker(t, "--database", dsn, "--batch")
	if code != 1 {
		t.Errorf("missing schema: exit %d; want 1", code)
	}
	exampleOneLine(t, stderr, "dbworker migrate")
	code, stdout, stderr := dbworker(t, "migrate", "--database", dsn)
	if code != 0 {
		t.Fatalf("migrate: exit %d; stdout %q; stderr:\n%s", code, stdout, stderr)
	}
	if code, stdout, stderr := dbworker(t, "check", "--database", dsn); code != 0 || !strings.Contains(stdout, "ok") {
		t.Errorf("check after migrate: exit %d; stdout %q; stderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := exampleWorker(t, "--database", dsn, "--batch"); code != 0 {
		t.Errorf("worker after migrate: exit %d; stderr:\n%s", code, stderr)
	}
}

// TestProcessBatch: --batch runs the example tasks that are due, then exits
// 0 (the example worker).
func TestProcessBatch(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		sum := exampletasks.Sum.Using(tasks.WithBackend(b.Name()))
		rs, err := sum.EnqueueMany(ctx, [][]int{{1, 2}, {3, 4, 5}, {}, {-1, 1}})
		if err != nil {
			t.Fatal(err)
		}
		report, err := exampletasks.Report.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, exampletasks.ReportArgs{Name: "r", Rows: 10})
		if err != nil {
			t.Fatal(err)
		}
		code, _, stderr := exampleWorker(t, workerArgs(b, dsn, "--batch")...)
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		var got []int
		for _, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			v, err := r.Value()
			if err != nil {
				t.Errorf("%s: %v", r.ID, err)
			}
			got = append(got, v)
		}
		if diff := cmp.Diff([]int{3, 12, 0, 0}, got); diff != "" {
			t.Errorf("sums (-want +got):\n%s", diff)
		}
		if err := report.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := report.Value(); err != nil || v.Name != "r" || v.Rows != 10 {
			t.Errorf("report = %+v, %v", v, err)
		}
	})
}

// TestProcessGracefulStop: SIGTERM lets the running tasks finish; the
// process exits 0 and every task is SUCCESSFUL.
func TestProcessGracefulStop(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := openBackend(t, dsn)
		const n = 20
		enqueueSleeps(t, b, n, 1000)
		p := start(t, exampleBinary, workerArgs(b, dsn, "--concurrency", "20")...)
		waitUntil(t, 10*time.Second, "20 running tasks", func() bool { return statuses(t, b)[tasks.StatusRunning] == n })
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 0 {
			t.Fatalf("exit %d; want 0; stderr:\n%s", code, p.stderr.String())
		}
		if diff := cmp.Diff(map[tasks.Status]int{tasks.StatusSuccessful: n}, statuses(t, b)); diff != "" {
			t.Errorf("statuses after a graceful stop (-want +got):\n%s", diff)
		}
	})
}

// TestProcessSecondSignal: a second SIGTERM cancels the running tasks and
// hands them back READY without using up an attempt; the process exits 3,
// and a later worker runs them.
func TestProcessSecondSignal(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		const n = 20
		rs := enqueueSleeps(t, b, n, 1500)
		p := start(t, exampleBinary, workerArgs(b, dsn, "--concurrency", "20")...)
		waitUntil(t, 10*time.Second, "20 running tasks", func() bool { return statuses(t, b)[tasks.StatusRunning] == n })
		p.signal(syscall.SIGTERM)
		// Two signals sent back to back may be delivered as one.
		waitUntil(t, 10*time.Second, "the first signal to be handled", func() bool {
			return strings.Contains(p.stderr.String(), "stop requested")
		})
		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 3 {
			t.Fatalf("exit %d; want 3; stderr:\n%s", code, p.stderr.String())
		}
		for _, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if r.Status != tasks.StatusReady || r.Attempts != 0 || len(r.Errors) != 0 {
				t.Errorf("handed back: %s, attempts %d, errors %v; want READY, 0, none", r.Status, r.Attempts, r.Errors)
			}
		}
		if code, _, stderr := exampleWorker(t, workerArgs(b, dsn, "--concurrency", "20", "--batch")...); code != 0 {
			t.Fatalf("later worker: exit %d; stderr:\n%s", code, stderr)
		}
		for _, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if v, err := r.Value(); err != nil || v != 1500 || r.Attempts != 1 {
				t.Errorf("later run: %d, %v, attempts %d; want 1500, SUCCESSFUL, 1", v, err, r.Attempts)
			}
		}
	})
}

// TestProcessStockWorker: the stock dbworker, as `go install` builds it,
// contains no tasks. Asked to run a worker, it explains that on stderr,
// shows how to build a worker with tasks and exits 2, before it opens the
// database (the default DSN would create gotasks.db in its directory); its
// other sub-commands work.
func TestProcessStockWorker(t *testing.T) {
	t.Parallel()
	type outcome struct {
		Code          int
		Stdout        string
		Files         []string // created in the working directory
		MissingPieces []string // of the explanation on stderr
	}
	explanation := []string{
		"dbworker: no tasks are compiled into this binary, so it has nothing to run; not starting.",
		"Tasks are Go functions (tasks.Define) that must be\ncompiled into the worker",
		`This binary can still apply and check the
schema: "dbworker migrate", "dbworker check".`,
		`	package main

	import (
		"os"

		"github.com/gotasks/gotasks/cmd/dbworker/workercmd"

		_ "example.com/myapp/jobs" // defines (registers) your tasks
	)

	func main() { os.Exit(workercmd.Main(os.Args[1:])) }
`,
		"go run ./examples/worker",
	}
	files := func(t *testing.T, dir string) []string {
		t.Helper()
		es, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range es {
			names = append(names, e.Name())
		}
		return names
	}
	missing := func(s string, want []string) []string {
		var out []string
		for _, w := range want {
			if !strings.Contains(s, w) {
				out = append(out, w)
			}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"no arguments", nil},
		{"batch on a SQLite file", []string{"--database", "sqlite://tasks.db", "--batch"}},
		{"JSON logs", []string{"--log-format", "json", "--concurrency", "5"}},
	} {
		t.Run("refuses to run a worker/"+tc.name, func(t *testing.T) {
			t.Parallel()
			p := start(t, binary, tc.args...)
			got := outcome{Code: p.wait(), Stdout: p.stdout.String(), Files: files(t, p.cmd.Dir),
				MissingPieces: missing(p.stderr.String(), explanation)}
			if diff := cmp.Diff(outcome{Code: 2}, got); diff != "" {
				t.Errorf("dbworker %q (-want +got):\n%s\nstderr:\n%s", tc.args, diff, p.stderr.String())
			}
		})
	}
	t.Run("help says it has no tasks", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := dbworker(t, "--help")
		got := outcome{Code: code, MissingPieces: missing(stderr, []string{"Tasks compiled into this binary: none", "dbworker tasks"})}
		if diff := cmp.Diff(outcome{Code: 0}, got); diff != "" {
			t.Errorf("--help (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
	})
	t.Run("tasks lists none", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := dbworker(t, "tasks")
		got := outcome{Code: code, Stdout: stdout,
			MissingPieces: missing(stderr, append([]string{"dbworker tasks: no tasks are compiled into this binary."}, explanation[1:]...))}
		if diff := cmp.Diff(outcome{Code: 0}, got); diff != "" {
			t.Errorf("tasks (-want +got):\n%s\nstderr:\n%s", diff, stderr)
		}
	})
	t.Run("migrate and check work", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			type step struct {
				Code   int
				Stdout string
				Stderr string
			}
			var got []step
			for _, sub := range []string{"migrate", "check"} {
				code, stdout, stderr := dbworker(t, sub, "--database", dsn)
				got = append(got, step{code, strings.SplitN(stdout, ": ok", 2)[0], stderr})
			}
			dialect := strings.SplitN(dsn, ":", 2)[0]
			want := []step{{0, "gotasks schema is up to date\n", ""}, {0, `backend "default" on ` + dialect, ""}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("migrate, check (-want +got):\n%s", diff)
			}
		})
	})
}

// TestProcessExampleWorker: examples/worker is the command with the
// example tasks; it lists them, and logs them when it starts.
func TestProcessExampleWorker(t *testing.T) {
	t.Parallel()
	want := []string{"examples.divide", "examples.flaky", "examples.noop", "examples.report",
		"examples.send_email", "examples.sleep", "examples.sum"}
	t.Run("tasks", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := exampleWorker(t, "tasks")
		if code != 0 || stderr != "" {
			t.Errorf("exit %d; want 0; stderr:\n%s", code, stderr)
		}
		if diff := cmp.Diff(want, strings.Fields(stdout)); diff != "" {
			t.Errorf("tasks (-want +got):\n%s", diff)
		}
	})
	t.Run("start-up log", func(t *testing.T) {
		t.Parallel()
		code, _, stderr := exampleWorker(t, "--database", dbtest.SQLiteDSN(t), "--batch")
		if code != 0 {
			t.Fatalf("exit %d; stderr:\n%s", code, stderr)
		}
		line := `msg="gotasks: tasks this worker can run" count=7 tasks="[` + strings.Join(want, " ") + `]"`
		if !strings.Contains(stderr, line) {
			t.Errorf("no log line %s:\n%s", line, stderr)
		}
	})
}
