package reliability_test

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/reliability/internal/reltasks"
	"github.com/gotasks/gotasks/tasks"
)

// Environment switches of the suite.
const (
	// envLong enables the long variants (more tasks, more kills).
	envLong = "GOTASKS_LONG"
	// envPGRestart enables the PostgreSQL restart scenario, which restarts
	// the server under every other test that uses it: run it alone.
	envPGRestart = "GOTASKS_TEST_PG_RESTART"
	// envWorkerRace=1 builds relworker with -race.
	envWorkerRace = "GOTASKS_RELWORKER_RACE"
	// envLogDir, when set, is a directory where the worker logs are kept.
	envLogDir = "GOTASKS_REL_LOGDIR"
)

func long() bool { return os.Getenv(envLong) == "1" }

// skipShort skips a multi-process scenario under -short.
func skipShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-process reliability scenario; skipped with -short")
	}
}

// ---------------------------------------------------------------------------
// The worker binary.

var (
	binOnce sync.Once
	binPath string
	binErr  error
	binDir  string
)

// workerBin builds reliability/internal/relworker once per test run and
// returns its path. The worker is built without -race unless
// GOTASKS_RELWORKER_RACE=1: a race-instrumented worker is several times
// slower, which on a 2-core CI machine stretches the scenarios' timings
// (heartbeats, rescue) more than it finds (the backend's own tests run under
// -race). Run with GOTASKS_RELWORKER_RACE=1 to check the worker itself.
func workerBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "relworker-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "relworker")
		args := []string{"build", "-o", binPath}
		if os.Getenv(envWorkerRace) == "1" {
			args = append(args, "-race")
		}
		args = append(args, "github.com/gotasks/gotasks/reliability/internal/relworker")
		cmd := exec.Command("go", args...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if binErr != nil {
		t.Fatalf("build relworker: %v", binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// ---------------------------------------------------------------------------
// Databases.

// pgSlot admits one heavy PostgreSQL scenario of this package at a time:
// their worker processes share the server's max_connections with the other
// packages' tests (100 by default), and the restart scenario must not
// restart the server under another of them.
var pgSlot = make(chan struct{}, 1)

// env is one scenario's database: a fresh PostgreSQL schema or SQLite file
// with the gotasks schema, rel_exec, and a backend registered under a name
// of its own.
type env struct {
	t       *testing.T
	dialect string
	dsn     string
	name    string
	b       *database.Backend
	db      *sql.DB
	task    *tasks.Task[reltasks.RecordArgs, reltasks.RecordResult]

	mu    sync.Mutex
	procs []*proc
}

// newEnv prepares a database of dialect ("postgres" or "sqlite"). heavy
// PostgreSQL scenarios take the package's PostgreSQL slot.
func newEnv(t *testing.T, dialect string, heavy bool) *env {
	t.Helper()
	if dialect == "postgres" {
		dbtest.RequirePostgres(t)
		if heavy {
			select {
			case pgSlot <- struct{}{}:
			case <-time.After(15 * time.Minute):
				t.Fatal("waited 15 minutes for the PostgreSQL slot")
			}
			t.Cleanup(func() { <-pgSlot })
		}
	}
	dsn := dbtest.DSN(t, dialect)
	ctx := context.Background()
	name := backendName(t)
	b, err := database.Open(ctx, dsn, database.WithName(name), database.WithAutoMigrate(true),
		database.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { b.Close() })
	if _, err := b.DB().DB.ExecContext(ctx, reltasks.Schema); err != nil {
		t.Fatalf("create rel_exec: %v", err)
	}
	t.Cleanup(tasks.RegisterBackend(b))
	e := &env{t: t, dialect: dialect, dsn: dsn, name: name, b: b, db: b.DB().DB,
		task: reltasks.Record.Using(tasks.WithBackend(name))}
	t.Cleanup(e.stopAll)
	return e
}

// backendName derives a backend name (≤ 64 bytes) from the test's name.
func backendName(t *testing.T) string {
	n := strings.NewReplacer("/", ".", " ", "_").Replace(strings.TrimPrefix(t.Name(), "Test"))
	if len(n) > 56 {
		n = n[len(n)-56:]
	}
	return "rel." + n
}

// forDialects runs f as a parallel subtest per dialect.
func forDialects(t *testing.T, f func(t *testing.T, dialect string)) {
	for _, d := range dbtest.Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, d)
		})
	}
}

// enqueue enqueues args in batches of 500 and returns the result ids by
// key.
func (e *env) enqueue(args []reltasks.RecordArgs) map[string]string {
	e.t.Helper()
	ids := map[string]string{}
	for start := 0; start < len(args); start += 500 {
		batch := args[start:min(start+500, len(args))]
		rs, err := e.task.EnqueueMany(context.Background(), batch)
		if err != nil {
			e.t.Fatalf("enqueue: %v", err)
		}
		for i, r := range rs {
			ids[batch[i].Key] = r.ID
		}
	}
	return ids
}

// recordArgs returns n tasks keyed prefix-0… sleeping sleep(i) ms.
func recordArgs(prefix string, n int, sleep func(i int) int) []reltasks.RecordArgs {
	out := make([]reltasks.RecordArgs, n)
	for i := range out {
		out[i] = reltasks.RecordArgs{Key: fmt.Sprintf("%s-%05d", prefix, i), SleepMS: sleep(i)}
	}
	return out
}

// counts returns the number of this backend's rows per status.
func (e *env) counts(ctx context.Context) (map[tasks.Status]int, error) {
	return dbtest.StatusCounts(ctx, e.db, e.name)
}

// runningOf returns the ids of the RUNNING rows held by worker.
func (e *env) runningOf(ctx context.Context, worker string) ([]string, error) {
	rows, err := e.db.QueryContext(ctx, `SELECT id FROM gotasks_task WHERE backend = $1 AND status = 'RUNNING' AND worker_id = $2 ORDER BY id`, e.name, worker)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// results returns every result of the backend by id (through the API:
// List, which decodes every stored column).
func (e *env) results(ctx context.Context) map[string]*tasks.RawResult {
	e.t.Helper()
	rs, err := e.b.List(ctx, database.Filter{Limit: 10000})
	if err != nil {
		e.t.Fatalf("list results: %v", err)
	}
	if len(rs) == 10000 {
		e.t.Fatalf("list results: more than 10000 results; the suite reads at most 10000")
	}
	out := make(map[string]*tasks.RawResult, len(rs))
	for _, r := range rs {
		out[r.ID] = r
	}
	return out
}

// executions reads rel_exec, grouped by key.
func (e *env) executions(ctx context.Context) ([]reltasks.Exec, map[string][]reltasks.Exec) {
	e.t.Helper()
	xs, err := reltasks.Executions(ctx, e.db)
	if err != nil {
		e.t.Fatalf("read rel_exec: %v", err)
	}
	by := map[string][]reltasks.Exec{}
	for _, x := range xs {
		by[x.Key] = append(by[x.Key], x)
	}
	return xs, by
}

// waitUntil polls cond every 50 ms until it returns true or timeout
// passes. Errors from cond (a database restarting) are retried; the last
// one is reported on timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ok, err := cond(ctx)
		cancel()
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last error: %v)", timeout, what, lastErr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitSuccessful waits until n of the backend's rows are SUCCESSFUL.
func (e *env) waitSuccessful(n int, timeout time.Duration) {
	e.t.Helper()
	waitUntil(e.t, timeout, fmt.Sprintf("%d SUCCESSFUL tasks", n), func(ctx context.Context) (bool, error) {
		c, err := e.counts(ctx)
		if err != nil {
			return false, err
		}
		return c[tasks.StatusSuccessful] >= n, nil
	})
}

// ---------------------------------------------------------------------------
// Worker processes.

// proc is a relworker process.
type proc struct {
	id     string
	cmd    *exec.Cmd
	stderr *syncBuffer
	start  time.Time
	done   chan struct{}
	code   int // exit code, -1 when killed by a signal
	killed bool
}

// syncBuffer is a bytes.Buffer safe for a writer and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// defaultWorkerFlags: quick heartbeats and rescue so that the scenarios
// see a crashed worker's tasks come back within seconds.
var defaultWorkerFlags = []string{"--interval", "100ms", "--heartbeat", "200ms", "--rescue-after", "2s",
	"--concurrency", "20", "--log-level", "info"}

// startWorker starts a relworker with the id id on the env's database;
// flags override defaultWorkerFlags.
func (e *env) startWorker(id string, flags ...string) *proc {
	e.t.Helper()
	args := []string{"--database", e.dsn, "--backend", e.name, "--worker-id", id}
	args = append(args, defaultWorkerFlags...)
	args = append(args, flags...)
	cmd := exec.Command(workerBin(e.t), args...)
	cmd.Env = append(os.Environ(), reltasks.DSNEnv+"="+e.dsn, reltasks.WorkerEnv+"="+id)
	p := &proc{id: id, cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	cmd.Stdout = p.stderr
	if err := cmd.Start(); err != nil {
		e.t.Fatalf("start worker %s: %v", id, err)
	}
	p.start = time.Now()
	go func() {
		err := cmd.Wait()
		p.code = 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		} else if err != nil {
			p.code = -2
		}
		close(p.done)
	}()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p
}

// kill9 kills p with SIGKILL and waits for it; it returns the time just
// before the signal.
func (p *proc) kill9(t *testing.T) time.Time {
	t.Helper()
	at := time.Now()
	p.killed = true
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %s: %v", p.id, err)
	}
	<-p.done
	return at
}

func (p *proc) signal(t *testing.T, s os.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(s); err != nil {
		t.Fatalf("signal %v to %s: %v", s, p.id, err)
	}
}

// wait waits up to timeout for p to exit and returns its exit code.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("worker %s did not exit within %v; its log:\n%s", p.id, timeout, tail(p.stderr.String(), 40))
		return 0
	}
}

// exited reports whether p has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stopAll kills what still runs and checks every worker's log for data
// races and crashes; on failure it shows the logs' ends.
func (e *env) stopAll() {
	e.mu.Lock()
	procs := e.procs
	e.mu.Unlock()
	for _, p := range procs {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	}
	logDir := os.Getenv(envLogDir)
	for _, p := range procs {
		log := p.stderr.String()
		if logDir != "" {
			name := strings.NewReplacer("/", "_").Replace(e.t.Name()) + "." + p.id + ".log"
			_ = os.WriteFile(filepath.Join(logDir, name), []byte(log), 0o644)
		}
		if strings.Contains(log, "WARNING: DATA RACE") {
			e.t.Errorf("worker %s: data race:\n%s", p.id, excerpt(log, "WARNING: DATA RACE", 60))
		}
		if i := strings.Index(log, "goroutine "); i >= 0 && strings.Contains(log, "panic: ") && !p.killed {
			e.t.Errorf("worker %s crashed:\n%s", p.id, excerpt(log, "panic: ", 40))
		}
		if e.t.Failed() {
			e.t.Logf("worker %s (exit %d) log tail:\n%s", p.id, p.code, tail(log, 25))
		}
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// excerpt returns n lines of s from the first line containing sub.
func excerpt(s, sub string, n int) string {
	i := strings.Index(s, sub)
	if i < 0 {
		return ""
	}
	if j := strings.LastIndexByte(s[:i], '\n'); j >= 0 {
		i = j + 1
	}
	lines := strings.SplitN(s[i:], "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// logLines returns the lines of p's log that contain sub.
func (p *proc) logLines(sub string) []string {
	var out []string
	for _, l := range strings.Split(p.stderr.String(), "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// Checks shared by the scenarios.

// resultKey decodes the key of a Record result.
func resultKey(t *testing.T, r *tasks.RawResult) string {
	t.Helper()
	a, err := reltasks.Record.DecodeArgs(r.Args)
	if err != nil {
		t.Fatalf("result %s: %v", r.ID, err)
	}
	return a.Key
}

// checkRecordedOnce checks, for every SUCCESSFUL Record result, that its
// success was recorded exactly once and by the execution that produced it:
// one claim per attempt or hand-back (worker_ids), one error per attempt
// that did not succeed, and a return value naming an execution of the key
// that ended "ok" on the worker of the last attempt.
func checkRecordedOnce(t *testing.T, rs map[string]*tasks.RawResult, byKey map[string][]reltasks.Exec) {
	t.Helper()
	bad := 0
	for _, r := range rs {
		if r.Status != tasks.StatusSuccessful || r.TaskName != reltasks.Name {
			continue
		}
		key := resultKey(t, r)
		var ret reltasks.RecordResult
		if err := json.Unmarshal(r.ReturnValue, &ret); err != nil {
			t.Errorf("%s (%s): return value %q: %v", key, r.ID, r.ReturnValue, err)
			bad++
			continue
		}
		// A task handed back at a hard stop was claimed without using up an
		// attempt; its execution ended "cancelled".
		handedBack := 0
		for _, x := range byKey[key] {
			if x.Outcome == reltasks.OutcomeCancelled {
				handedBack++
			}
		}
		var problems []string
		if len(r.WorkerIDs) != r.Attempts+handedBack {
			problems = append(problems, fmt.Sprintf("%d worker ids for %d attempts and %d hand-backs", len(r.WorkerIDs), r.Attempts, handedBack))
		}
		if len(r.Errors) != r.Attempts-1 {
			problems = append(problems, fmt.Sprintf("%d errors for %d attempts", len(r.Errors), r.Attempts))
		}
		if n := len(r.WorkerIDs); n > 0 && r.WorkerIDs[n-1] != ret.Worker {
			problems = append(problems, fmt.Sprintf("return value from worker %s, last attempt on %s", ret.Worker, r.WorkerIDs[n-1]))
		}
		found := false
		for _, x := range byKey[key] {
			if x.Token == ret.Token {
				found = x.Outcome == reltasks.OutcomeOK && x.Worker == ret.Worker
			}
		}
		if !found {
			problems = append(problems, fmt.Sprintf("no execution %s ended ok on %s", ret.Token, ret.Worker))
		}
		if len(problems) > 0 {
			bad++
			if bad <= 10 {
				t.Errorf("%s (%s): success not recorded once: %s (attempts %d, workers %v, errors %v)",
					key, r.ID, strings.Join(problems, "; "), r.Attempts, r.WorkerIDs, r.Errors)
			}
		}
	}
	if bad > 10 {
		t.Errorf("… %d results in all with recording problems", bad)
	}
}

// checkNoOverlap fails the test for every two executions of a key that ran
// at the same time. endOf gives the end of executions cut short by a kill.
func checkNoOverlap(t *testing.T, xs []reltasks.Exec, endOf func(reltasks.Exec) int64) {
	t.Helper()
	ov := reltasks.Overlaps(xs, endOf)
	for i, o := range ov {
		if i == 10 {
			t.Errorf("… %d overlapping executions in all", len(ov))
			break
		}
		t.Errorf("a task ran in two places at once: %v", o)
	}
}

// checkNoLocked fails the test when a worker log line carries SQLite's
// "database is locked".
func checkNoLocked(t *testing.T, procs ...*proc) {
	t.Helper()
	for _, p := range procs {
		for _, l := range strings.Split(p.stderr.String(), "\n") {
			if reltasks.IsLocked(l) {
				t.Errorf("worker %s logged a locking error: %s", p.id, l)
			}
		}
	}
}

// percentile returns the p-th percentile (0..100) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}
