package database_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// The multi-process tests re-execute this test binary: with
// GOTASKS_DBT_HELPER set, TestDbtHelperProcess does the work of one process
// and prints one result line.
const (
	dbtEnvMode   = "GOTASKS_DBT_HELPER"
	dbtEnvDSN    = "GOTASKS_DBT_DSN"
	dbtEnvName   = "GOTASKS_DBT_NAME"
	dbtEnvCount  = "GOTASKS_DBT_COUNT"
	dbtEnvGoFile = "GOTASKS_DBT_GO"
	dbtEnvProcs  = "GOTASKS_DBT_PROCS"
	dbtResultTag = "DBT-HELPER-RESULT "
)

// dbtHelperOut is what a helper process reports.
type dbtHelperOut struct {
	Enqueued  int      `json:"enqueued"`
	Reads     int      `json:"reads"`
	Writes    int      `json:"writes"`
	Errors    []string `json:"errors"`
	ElapsedMS int64    `json:"elapsed_ms"`
}

// dbtProblemLog records every log record at Warn or above: a worker logs
// (and retries) a failed claim or write instead of returning it, so a
// "database is locked" would show up here.
type dbtProblemLog struct {
	mu   sync.Mutex
	msgs []string
}

func (h *dbtProblemLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *dbtProblemLog) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool {
		sb.WriteString(" " + a.String())
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, sb.String())
	h.mu.Unlock()
	return nil
}
func (h *dbtProblemLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *dbtProblemLog) WithGroup(string) slog.Handler      { return h }
func (h *dbtProblemLog) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

// dbtRace reports whether the test binary was built with -race, under
// which the pure-Go SQLite runs some ten times slower (checkptr): the load
// tests then use smaller counts.
var dbtRace = func() bool {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" {
				return s.Value == "true"
			}
		}
	}
	return false
}()

// dbtPoll calls cond every few milliseconds until it returns true or ctx
// is done.
func dbtPoll(ctx context.Context, cond func() bool) error {
	delay := time.Millisecond
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
	return nil
}

// dbtRunHelpers starts n helper processes in mode at once (they wait for a
// common start signal), waits for them and returns their reports.
func dbtRunHelpers(t *testing.T, n int, mode, dsn string, env map[string]string) []dbtHelperOut {
	t.Helper()
	goFile := filepath.Join(t.TempDir(), "go")
	type proc struct {
		cmd            *exec.Cmd
		stdout, stderr bytes.Buffer
	}
	procs := make([]*proc, n)
	for i := range procs {
		p := &proc{cmd: exec.Command(os.Args[0], "-test.run=^TestDbtHelperProcess$", "-test.count=1", "-test.timeout=5m")}
		p.cmd.Env = append(os.Environ(), dbtEnvMode+"="+mode, dbtEnvDSN+"="+dsn, dbtEnvGoFile+"="+goFile,
			dbtEnvProcs+"="+strconv.Itoa(n))
		for k, v := range env {
			p.cmd.Env = append(p.cmd.Env, k+"="+v)
		}
		p.cmd.Stdout, p.cmd.Stderr = &p.stdout, &p.stderr
		if err := p.cmd.Start(); err != nil {
			t.Fatalf("start helper process: %v", err)
		}
		procs[i] = p
	}
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	outs := make([]dbtHelperOut, n)
	for i, p := range procs {
		err := p.cmd.Wait()
		found := false
		sc := bufio.NewScanner(&p.stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), dbtResultTag); ok {
				if jerr := json.Unmarshal([]byte(line), &outs[i]); jerr != nil {
					t.Errorf("process %d: bad report %q: %v", i, line, jerr)
				}
				found = true
			}
		}
		if err != nil || !found {
			t.Errorf("process %d: %v (report found: %v)\nstdout:\n%s\nstderr:\n%s", i, err, found, p.stdout.String(), p.stderr.String())
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	return outs
}

// TestDbtHelperProcess is one helper process of the multi-process tests; it
// does nothing in a normal run.
func TestDbtHelperProcess(t *testing.T) {
	mode := os.Getenv(dbtEnvMode)
	if mode == "" {
		t.Skip("helper process of the multi-process tests")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	dsn := os.Getenv(dbtEnvDSN)
	goFile := os.Getenv(dbtEnvGoFile)
	if err := dbtPoll(ctx, func() bool { _, err := os.Stat(goFile); return err == nil }); err != nil {
		t.Fatalf("no start signal: %v", err)
	}
	var out dbtHelperOut
	start := time.Now()
	switch mode {
	case "migrate":
		b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithLogger(dbtLogger))
		if err != nil {
			out.Errors = append(out.Errors, "open: "+err.Error())
			break
		}
		if err := database.Migrate(ctx, b.DB()); err != nil {
			out.Errors = append(out.Errors, "migrate: "+err.Error())
		}
		if err := b.Check(ctx); err != nil {
			out.Errors = append(out.Errors, "check: "+err.Error())
		}
		_ = b.Close()
	case "lock":
		count, _ := strconv.Atoi(os.Getenv(dbtEnvCount))
		procs, _ := strconv.Atoi(os.Getenv(dbtEnvProcs))
		// Every process keeps its worker running until all of them have
		// enqueued everything.
		barrier := func() error {
			dir := filepath.Dir(goFile)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("enqueued-%d", os.Getpid())), nil, 0o600); err != nil {
				return err
			}
			return dbtPoll(ctx, func() bool {
				m, _ := filepath.Glob(filepath.Join(dir, "enqueued-*"))
				return len(m) >= procs
			})
		}
		out = dbtHammer(ctx, dsn, []string{os.Getenv(dbtEnvName)}, 4, count, barrier)
	default:
		t.Fatalf("unknown mode %q", mode)
	}
	out.ElapsedMS = time.Since(start).Milliseconds()
	line, _ := json.Marshal(out)
	fmt.Println(dbtResultTag + string(line))
}

// dbtHammer opens one backend (connection pool) per name on dsn, each with
// a worker, and has g goroutines enqueue count tasks in all, spread over the
// backends, while reading, listing and cancelling. Then, after barrier (if
// any) returned, it stops the workers. Every error and every warning logged
// is reported.
func dbtHammer(ctx context.Context, dsn string, names []string, g, count int, barrier func() error) dbtHelperOut {
	var (
		out    dbtHelperOut
		mu     sync.Mutex
		logs   = &dbtProblemLog{}
		logger = slog.New(logs)
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		out.Errors = append(out.Errors, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	var (
		backends []*database.Backend
		workers  []*database.Worker
	)
	nb := len(names)
	for _, name := range names {
		b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithName(name), database.WithLogger(logger))
		if err != nil {
			fail("open: %v", err)
			return out
		}
		defer b.Close()
		w, err := database.NewWorker(b, database.WorkerConfig{Concurrency: 4, PollInterval: 50 * time.Millisecond, Logger: logger})
		if err == nil {
			err = w.Start(ctx)
		}
		if err != nil {
			fail("worker: %v", err)
			return out
		}
		backends, workers = append(backends, b), append(workers, w)
		defer tasks.RegisterBackend(b)()
	}

	var enqueued, reads, writes atomic.Int64
	var wg sync.WaitGroup
	for gi := range g {
		quota := count / g
		if gi < count%g {
			quota++
		}
		b := backends[gi%nb]
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		wg.Go(func() {
			var mine []string
			for op := 0; len(mine) < quota; op++ {
				var ids []string
				if n := min(5, quota-len(mine)); op%3 == 0 && n > 1 {
					args := make([]dbtArgs, n)
					for i := range args {
						args[i] = dbtArgs{A: gi, B: op}
					}
					rs, err := task.EnqueueMany(ctx, args)
					if err != nil {
						fail("EnqueueMany: %v", err)
						return
					}
					for _, r := range rs {
						ids = append(ids, r.ID)
					}
				} else {
					r, err := task.Enqueue(ctx, dbtArgs{A: gi, B: op})
					if err != nil {
						fail("Enqueue: %v", err)
						return
					}
					ids = append(ids, r.ID)
				}
				enqueued.Add(int64(len(ids)))
				mine = append(mine, ids...)
				for _, id := range ids {
					if _, err := b.GetResult(ctx, id); err != nil {
						fail("GetResult: %v", err)
					}
					reads.Add(1)
				}
				if op%7 == 0 {
					if _, err := task.GetResult(ctx, mine[len(mine)/2]); err != nil {
						fail("typed GetResult: %v", err)
					}
					if _, err := b.List(ctx, database.Filter{Limit: 20}); err != nil {
						fail("List: %v", err)
					}
					reads.Add(2)
				}
				if op%25 == 0 {
					err := b.Cancel(ctx, ids[0])
					if err != nil && !errors.Is(err, tasks.ErrNotCancellable) {
						fail("Cancel: %v", err)
					}
					writes.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if barrier != nil {
		if err := barrier(); err != nil {
			fail("barrier: %v", err)
		}
	}
	// The workers stop while tasks are still READY and claims may be in
	// flight: a graceful stop must leave no task RUNNING (dbtCheckAllRows
	// drains the rest and checks).
	for _, w := range workers {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		if err := w.Stop(sctx); err != nil {
			fail("worker stop: %v", err)
		}
		cancel()
	}
	for _, m := range logs.all() {
		fail("logged: %s", m)
	}
	out.Enqueued, out.Reads, out.Writes = int(enqueued.Load()), int(reads.Load()), int(writes.Load())
	return out
}

// dbtCheckAllRows checks that the backends names hold want rows in all,
// that workers finish them all, and that none ran twice.
func dbtCheckAllRows(t *testing.T, dsn string, names []string, want int) {
	t.Helper()
	ctx := dbtCtx(t)
	count := func(b *database.Backend, where string) int {
		t.Helper()
		var n int
		if err := b.DB().DB.QueryRowContext(ctx, `SELECT count(*) FROM gotasks_task WHERE backend = $1`+where, b.Name()).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	total, cancelled := 0, 0
	for _, name := range names {
		b := dbtOpen(t, dsn, database.WithName(name))
		total += count(b, "")
		dbtDrain(t, b)
		if n := count(b, ` AND status NOT IN ('SUCCESSFUL', 'CANCELLED')`); n != 0 {
			t.Errorf("%s: %d rows neither SUCCESSFUL nor CANCELLED after a drain", name, n)
			rs, _ := b.List(ctx, database.Filter{Statuses: []tasks.Status{tasks.StatusReady, tasks.StatusRunning}})
			for _, r := range rs {
				t.Logf("not finished: %s %s attempts %d run_after %v enqueued %v started %v workers %v errors %v",
					r.ID, r.Status, r.Attempts, r.RunAfter, r.EnqueuedAt, r.StartedAt, r.WorkerIDs, r.Errors)
			}
		}
		if n := count(b, ` AND attempts > 1`); n != 0 {
			t.Errorf("%s: %d tasks ran more than once", name, n)
		}
		cancelled += count(b, ` AND status = 'CANCELLED'`)
	}
	if total != want {
		t.Errorf("%d rows, want %d", total, want)
	}
	t.Logf("rows: %d (%d cancelled), all finished", total, cancelled)
}

// Several goroutines on several connection pools (each a Backend, as in
// separate processes) enqueue, read and run tasks on one database at once:
// no error, no warning, every row present.
func TestConcurrentGoroutinesNeverLocked(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		const pools, goroutines = 2, 8
		total := 2000
		if dbtRace {
			total = 800
		}
		names := []string{dbtName(t), dbtName(t)}
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		start := time.Now()
		out := dbtHammer(ctx, dsn, names, goroutines, total, nil)
		elapsed := time.Since(start)
		for _, e := range out.Errors {
			t.Error(e)
		}
		if out.Enqueued != total {
			t.Errorf("enqueued %d, want %d", out.Enqueued, total)
		}
		t.Logf("%s: %d goroutines on %d pools: %d tasks enqueued, %d reads, %d cancels in %v (%.0f tasks/s, workers running)",
			dbtDialect(dsn), goroutines, pools, out.Enqueued, out.Reads, out.Writes, elapsed.Round(time.Millisecond),
			float64(out.Enqueued)/elapsed.Seconds())
		dbtCheckAllRows(t, dsn, names, total)
	})
}

// Several processes enqueue, read and run tasks on one database at once:
// on SQLite, "database is locked" never surfaces.
func TestConcurrentProcessesNeverLocked(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		const procs = 4
		each := 500
		if dbtRace {
			each = 200
		}
		name := dbtName(t)
		// Migrate first so that the processes contend on the work only (the
		// concurrent migration is TestMigrateConcurrentProcesses).
		dbtOpen(t, dsn)
		start := time.Now()
		outs := dbtRunHelpers(t, procs, "lock", dsn, map[string]string{dbtEnvName: name, dbtEnvCount: strconv.Itoa(each)})
		elapsed := time.Since(start)
		total, reads, writes := 0, 0, 0
		for i, o := range outs {
			for _, e := range o.Errors {
				t.Errorf("process %d: %s", i, e)
			}
			if o.Enqueued != each {
				t.Errorf("process %d enqueued %d, want %d", i, o.Enqueued, each)
			}
			total, reads, writes = total+o.Enqueued, reads+o.Reads, writes+o.Writes
			t.Logf("%s: process %d: %d tasks, %d reads, %d cancels in %d ms", dbtDialect(dsn), i, o.Enqueued, o.Reads, o.Writes, o.ElapsedMS)
		}
		t.Logf("%s: %d processes (4 goroutines and a worker each): %d tasks enqueued, %d reads, %d cancels; %v wall clock including process start (%.0f tasks/s)",
			dbtDialect(dsn), procs, total, reads, writes, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds())
		dbtCheckAllRows(t, dsn, []string{name}, procs*each)
	})
}
