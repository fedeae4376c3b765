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
	oneLine       = workerfixture.OneLine
	workerArgs    = workerfixture.WorkerArgs
	enqueueSleeps = workerfixture.EnqueueSleeps
)

// The real dbworker process: built once by TestMain, then run with flags
// and signalled like a service manager would.

var binary string // path of the built dbworker

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dbworker-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "dbworker")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "go build dbworker:", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
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

// start starts dbworker with args; it is killed if the test leaves it
// running.
func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, cmd: exec.Command(binary, args...), done: make(chan struct{})}
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

// dbworker runs dbworker to completion.
func dbworker(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	p := start(t, args...)
	code = p.wait()
	return code, p.stdout.String(), p.stderr.String()
}

func TestProcessHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := dbworker(t, "--help")
	if code != 0 {
		t.Errorf("--help: exit %d; want 0", code)
	}
	for _, f := range []string{"Usage: dbworker", "-database", "-queues", "-exclude-queues", "-concurrency",
		"-interval", "-duration", "-max-tasks", "-batch", "-worker-id", "-startup-jitter", "-log-level",
		"-log-format", "-grace-period"} {
		if !strings.Contains(stderr, f) {
			t.Errorf("--help does not list %q", f)
		}
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

func TestProcessBadDatabase(t *testing.T) {
	t.Parallel()
	code, _, stderr := dbworker(t, "--database", "mysql://x")
	if code != 1 {
		t.Errorf("bad DSN: exit %d; want 1", code)
	}
	oneLine(t, stderr, "bad database DSN", "mysql://x")

	code, _, stderr = dbworker(t, "--database", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2")
	if code != 1 {
		t.Errorf("unreachable PostgreSQL: exit %d; want 1", code)
	}
	oneLine(t, stderr, "unreachable")
}

// TestProcessMigrate: a fresh PostgreSQL schema is refused with a message
// naming `dbworker migrate`, which then makes the worker run.
func TestProcessMigrate(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresDSN(t)
	code, _, stderr := dbworker(t, "--database", dsn, "--batch")
	if code != 1 {
		t.Errorf("missing schema: exit %d; want 1", code)
	}
	oneLine(t, stderr, "dbworker migrate")
	code, stdout, stderr := dbworker(t, "migrate", "--database", dsn)
	if code != 0 {
		t.Fatalf("migrate: exit %d; stdout %q; stderr:\n%s", code, stdout, stderr)
	}
	if code, _, stderr := dbworker(t, "--database", dsn, "--batch"); code != 0 {
		t.Errorf("worker after migrate: exit %d; stderr:\n%s", code, stderr)
	}
}

// TestProcessBatch: --batch runs the example tasks that are due, then exits
// 0.
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
		code, _, stderr := dbworker(t, workerArgs(b, dsn, "--batch")...)
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
		p := start(t, workerArgs(b, dsn, "--concurrency", "20")...)
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
		p := start(t, workerArgs(b, dsn, "--concurrency", "20")...)
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
		if code, _, stderr := dbworker(t, workerArgs(b, dsn, "--concurrency", "20", "--batch")...); code != 0 {
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
