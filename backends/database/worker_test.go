package database_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// The worker tests (issues 4 and 12), as a specification: one test per
// service of the worker, one named subtest per behaviour, each run on both
// dialects (Behaviour/postgres, Behaviour/sqlite), each on its own fresh
// database, with its own backend name (see setup).
//
//   - worker_fetcher_test.go: TestWorkerFetcher, what is claimed, when and by whom
//   - worker_executor_test.go: TestWorkerExecutor, running attempts and what comes of them
//   - worker_rescuer_test.go: TestWorkerRescuer, tasks of vanished workers
//   - worker_lifecycle_test.go: TestWorkerLifecycle, stopping (gracefully, hard, by itself)
//
// Behaviours marked "(fault N)" are the regression tests of the faults a
// fault-injection run found (issue 12).
//
// This file holds what they share: the task definitions, setup and the wk*
// helpers. The services' internal tests (package database) are in
// worker_*internal_test.go.

// testBundle is what every behaviour starts from (see setup).
type testBundle struct {
	// dsn is the behaviour's own fresh database (for a second backend on
	// it, as another process would open).
	dsn string
	// b is a backend on dsn, migrated, with a name unique in the process
	// (so that the signals, result waiters and task keys of concurrent
	// subtests never mix), registered until the subtest ends.
	b   *database.Backend
	rec *wkRecorder // see signals
}

// setup opens the backend of one behaviour on dsn (see testBundle).
func setup(t *testing.T, dsn string) *testBundle {
	t.Helper()
	return &testBundle{dsn: dsn, b: wkOpen(t, dsn)}
}

// signals records the TaskStarted and TaskFinished signals of the bundle's
// backend from now until the test ends; later calls return the same
// recorder.
func (bundle *testBundle) signals(t *testing.T) *wkRecorder {
	if bundle.rec == nil {
		bundle.rec = wkRecord(t, bundle.b.Name())
	}
	return bundle.rec
}

// wkBehaviour runs f as the parallel subtest name of t, once per dialect
// (name/postgres, name/sqlite), each with setup on a fresh database.
func wkBehaviour(t *testing.T, name string, f func(t *testing.T, bundle *testBundle)) {
	t.Helper()
	t.Run(name, func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			f(t, setup(t, dsn))
		})
	})
}

type wkIntArgs struct {
	X int `json:"x"`
}

// workerFastBackoff is the retry delay of workerFailFast: 20 ms × attempt.
func workerFastBackoff(attempt int) time.Duration {
	return time.Duration(attempt) * 20 * time.Millisecond
}

var (
	// workerExecutions counts the runs of workerCount per key.
	workerExecutions sync.Map // string → *atomic.Int64
	// workerFlakyCalls counts the calls of workerFlaky per key.
	workerFlakyCalls sync.Map // string → *atomic.Int64
	// workerGates hold workerGate tasks until closed.
	workerGates sync.Map // string → chan struct{}
	// workerGateStarts tell when a workerGate task has started.
	workerGateStarts sync.Map // string → *gateStart
)

// gateStart is closed once, by the first workerGate task of its key to start.
type gateStart struct {
	once sync.Once
	ch   chan struct{}
}

// wkGateStarted is closed when a workerGate task of key has started: its
// worker holds it (a RUNNING row alone says only that a worker claimed it).
func wkGateStarted(key string) chan struct{} {
	g, _ := workerGateStarts.LoadOrStore(key, &gateStart{ch: make(chan struct{})})
	return g.(*gateStart).ch
}

func wkCounter(m *sync.Map, key string) *atomic.Int64 {
	c, _ := m.LoadOrStore(key, new(atomic.Int64))
	return c.(*atomic.Int64)
}

func wkGate(key string) chan struct{} {
	c, _ := workerGates.LoadOrStore(key, make(chan struct{}))
	return c.(chan struct{})
}

var (
	workerEcho = tasks.Define("database_test.worker_echo", func(ctx context.Context, s string) (string, error) {
		return s, nil
	})
	workerCount = tasks.Define("database_test.worker_count", func(ctx context.Context, key string) (string, error) {
		wkCounter(&workerExecutions, key).Add(1)
		return key, nil
	})
	workerInt = tasks.Define("database_test.worker_int", func(ctx context.Context, a wkIntArgs) (int, error) {
		return 2 * a.X, nil
	})
	// workerFailDefault always fails; default backoff and max attempts.
	workerFailDefault = tasks.Define("database_test.worker_fail_default", func(ctx context.Context, s string) (int, error) {
		return 0, errors.New("always fails")
	})
	// workerFailFast always fails; 3 attempts, short backoff.
	workerFailFast = tasks.Define("database_test.worker_fail_fast", func(ctx context.Context, s string) (int, error) {
		return 0, errors.New("always fails")
	}, tasks.WithMaxAttempts(3), tasks.WithBackoff(workerFastBackoff))
	// workerFlaky fails on its first call per key, then succeeds.
	workerFlaky = tasks.Define("database_test.worker_flaky", func(ctx context.Context, key string) (string, error) {
		if wkCounter(&workerFlakyCalls, key).Add(1) == 1 {
			return "", errors.New("first call fails")
		}
		return key, nil
	}, tasks.WithMaxAttempts(3), tasks.WithBackoff(tasks.ConstantBackoff(0)))
	workerTimeout = tasks.Define("database_test.worker_timeout", func(ctx context.Context, s string) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}, tasks.WithTimeout(50*time.Millisecond), tasks.WithMaxAttempts(1))
	// workerPanic panics. It stays in worker_test.go: BadRows looks for
	// this file's name in the stack of the panic.
	workerPanic = tasks.Define("database_test.worker_panic", func(ctx context.Context, s string) (string, error) {
		panic("boom: " + s)
	}, tasks.WithMaxAttempts(1))
	// workerSleep sleeps ms milliseconds, or until its context is done.
	workerSleep = tasks.Define("database_test.worker_sleep", func(ctx context.Context, ms int) (int, error) {
		t := time.NewTimer(time.Duration(ms) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return ms, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	})
	// workerGate blocks until gate(key) is closed or its context is done.
	workerGate = tasks.Define("database_test.worker_gate", func(ctx context.Context, key string) (string, error) {
		g, _ := workerGateStarts.LoadOrStore(key, &gateStart{ch: make(chan struct{})})
		g.(*gateStart).once.Do(func() { close(g.(*gateStart).ch) })
		select {
		case <-wkGate(key):
			return key, nil
		case <-ctx.Done():
			return "", ctx.Err()
		}
	})
)

var wkSeq atomic.Int64

// wkRaceEnabled reports whether the test binary was built with -race.
func wkRaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// wkName returns a backend name (at most 64 bytes) unique in the
// process.
func wkName(t testing.TB) string {
	n := fmt.Sprintf("w%d-%s", wkSeq.Add(1), t.Name())
	return n[:min(len(n), 64)]
}

// wkLogger shows warnings (rescues, failed writes) when a test fails.
var wkLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// wkOpenNamed opens a backend called name on dsn (migrating it), closed at
// cleanup.
func wkOpenNamed(t *testing.T, dsn, name string) *database.Backend {
	t.Helper()
	b, err := database.Open(context.Background(), dsn, database.WithAutoMigrate(true),
		database.WithName(name), database.WithLogger(wkLogger))
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// wkOpen opens and registers a backend with a unique name.
func wkOpen(t *testing.T, dsn string) *database.Backend {
	t.Helper()
	b := wkOpenNamed(t, dsn, wkName(t))
	t.Cleanup(tasks.RegisterBackend(b))
	return b
}

func wkOn[A, R any](task *tasks.Task[A, R], b *database.Backend, opts ...tasks.Option) *tasks.Task[A, R] {
	return task.Using(append([]tasks.Option{tasks.WithBackend(b.Name())}, opts...)...)
}

func wkEnqueue[A, R any](t *testing.T, task *tasks.Task[A, R], args A) *tasks.Result[R] {
	t.Helper()
	r, err := task.Enqueue(context.Background(), args)
	if err != nil {
		t.Fatalf("enqueue %s: %v", task.Name(), err)
	}
	return r
}

// wkStart starts a worker (logging discarded) that is stopped hard at
// cleanup if the test did not stop it.
func wkStart(t *testing.T, b *database.Backend, cfg database.WorkerConfig) *database.Worker {
	t.Helper()
	w := wkNewWorker(t, b, cfg)
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	return w
}

func wkNewWorker(t *testing.T, b *database.Backend, cfg database.WorkerConfig) *database.Worker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = wkLogger
	}
	w, err := database.NewWorker(b, cfg)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	return w
}

// wkRun runs a worker until it stops by itself (bounded by 20 s).
func wkRun(t *testing.T, b *database.Backend, cfg database.WorkerConfig) (*database.Worker, error) {
	t.Helper()
	w := wkNewWorker(t, b, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := w.Run(ctx)
	if ctx.Err() != nil {
		t.Fatalf("worker did not stop by itself within 20 s")
	}
	return w, err
}

// wkWait waits for r to finish (at most 10 s).
func wkWait[R any](t *testing.T, r *tasks.Result[R]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.Wait(ctx); err != nil {
		t.Fatalf("wait for %s (%s): %v", r.ID, r.TaskName, err)
	}
}

func wkRefresh[R any](t *testing.T, r *tasks.Result[R]) {
	t.Helper()
	if err := r.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func wkGet(t *testing.T, b *database.Backend, id string) *tasks.RawResult {
	t.Helper()
	r, err := b.GetResult(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// wkExec runs a statement ($n placeholders work on both dialects) and
// returns the number of rows affected.
func wkExec(t *testing.T, b *database.Backend, q string, args ...any) int64 {
	t.Helper()
	res, err := b.DB().DB.ExecContext(context.Background(), q, args...)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// wkTS encodes a time as the dialect stores it: fixed-width UTC text on
// SQLite, timestamptz on PostgreSQL.
func wkTS(b *database.Backend, tm time.Time) any {
	if b.Dialect() == database.SQLite {
		return tm.UTC().Format("2006-01-02 15:04:05.000000")
	}
	return tm.UTC()
}

// wkStatusCounts returns the number of the backend's results per status.
func wkStatusCounts(t *testing.T, b *database.Backend) map[tasks.Status]int {
	t.Helper()
	out, err := dbtest.StatusCounts(context.Background(), b.DB().DB, b.Name())
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wkCount(t *testing.T, b *database.Backend, cond string, args ...any) int {
	t.Helper()
	var n int
	q := `SELECT count(*) FROM gotasks_task WHERE backend = $1 AND ` + cond
	if err := b.DB().DB.QueryRowContext(context.Background(), q, append([]any{b.Name()}, args...)...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// wkEvent is one TaskStarted/TaskFinished signal as a test sees it.
type wkEvent struct {
	Signal   string
	ID       string
	Status   tasks.Status
	Attempts int
	Errors   int
}

type wkRecorder struct {
	mu      sync.Mutex
	events  []wkEvent
	results []*tasks.RawResult
}

// wkRecord records the TaskStarted and TaskFinished signals of sender
// until the test ends.
func wkRecord(t *testing.T, sender string) *wkRecorder {
	rec := &wkRecorder{}
	for _, s := range []*signals.Signal{signals.TaskStarted, signals.TaskFinished} {
		name := strings.TrimPrefix(s.Name(), "task_")
		t.Cleanup(s.Connect(func(ctx context.Context, from string, r *tasks.RawResult) {
			if from != sender {
				return
			}
			rec.mu.Lock()
			defer rec.mu.Unlock()
			rec.events = append(rec.events, wkEvent{Signal: name, ID: r.ID, Status: r.Status,
				Attempts: r.Attempts, Errors: len(r.Errors)})
			rec.results = append(rec.results, r.Clone())
		}))
	}
	return rec
}

// of returns the events of result id, in order.
func (rec *wkRecorder) of(id string) []wkEvent {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []wkEvent
	for _, e := range rec.events {
		if e.ID == id {
			out = append(out, e)
		}
	}
	return out
}

// resultsOf returns the results sent with signal name for id, in order.
func (rec *wkRecorder) resultsOf(signal, id string) []*tasks.RawResult {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []*tasks.RawResult
	for i, e := range rec.events {
		if e.ID == id && e.Signal == signal {
			out = append(out, rec.results[i])
		}
	}
	return out
}

// wkFailedOnce returns the signals of a task that failed its first attempt
// and succeeded on its retry, in order.
func wkFailedOnce(id string) []wkEvent {
	return []wkEvent{
		{"started", id, tasks.StatusRunning, 1, 0},
		{"finished", id, tasks.StatusReady, 1, 1},
		{"started", id, tasks.StatusRunning, 2, 1},
		{"finished", id, tasks.StatusSuccessful, 2, 1},
	}
}

// started returns the ids of TaskStarted signals, in order.
func (rec *wkRecorder) started() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []string
	for _, e := range rec.events {
		if e.Signal == "started" {
			out = append(out, e.ID)
		}
	}
	return out
}

// wkNilErr is an error type whose Error method dereferences its receiver:
// returned as a typed nil, calling Error panics.
type wkNilErr struct{ msg string }

func (e *wkNilErr) Error() string { return e.msg }

var (
	// workerTypedNil returns a typed-nil error: a non-nil error interface
	// holding a nil *wkNilErr.
	workerTypedNil = tasks.Define("database_test.worker_typed_nil", func(ctx context.Context, s string) (int, error) {
		var e *wkNilErr
		return 0, e
	}, tasks.WithMaxAttempts(1))
	// workerGoexit calls runtime.Goexit, as testing.T.FailNow does.
	workerGoexit = tasks.Define("database_test.worker_goexit", func(ctx context.Context, s string) (int, error) {
		runtime.Goexit()
		return 0, nil
	}, tasks.WithMaxAttempts(1))
)

// wkStatusOf reads a task's status with SQL (GetResult cannot read a row
// whose timestamps are broken).
func wkStatusOf(t *testing.T, b *database.Backend, id string) (status string, attempts int, errs string) {
	t.Helper()
	err := b.DB().DB.QueryRowContext(context.Background(),
		`SELECT status, attempts, COALESCE(CAST(errors AS TEXT), '') FROM gotasks_task WHERE id = $1`, id).
		Scan(&status, &attempts, &errs)
	if err != nil {
		t.Fatal(err)
	}
	return status, attempts, errs
}
