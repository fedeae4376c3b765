package database_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// The worker tests (issue 4). Every test runs on both dialects, each on its
// own fresh database, with its own backend name.

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
)

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

// uniqueName returns a backend name (at most 64 bytes) unique in the
// process.
func wkName(t testing.TB) string {
	n := fmt.Sprintf("w%d-%s", wkSeq.Add(1), t.Name())
	return n[:min(len(n), 64)]
}

// wkLogger shows warnings (rescues, failed writes) when a test fails.
var wkLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// openNamed opens a backend called name on dsn (migrating it), closed at
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

// openBackend opens and registers a backend with a unique name.
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

// startWorker starts a worker (logging discarded) that is stopped hard at
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

// runWorker runs a worker until it stops by itself (bounded by 20 s).
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

// wait waits for r to finish (at most 10 s).
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

// execSQL runs a statement ($n placeholders work on both dialects) and
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

// dbTS encodes a time as the dialect stores it: fixed-width UTC text on
// SQLite, timestamptz on PostgreSQL.
func wkTS(b *database.Backend, tm time.Time) any {
	if b.Dialect() == database.SQLite {
		return tm.UTC().Format("2006-01-02 15:04:05.000000")
	}
	return tm.UTC()
}

// statusCounts returns the number of the backend's results per status.
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

// sigEvent is one TaskStarted/TaskFinished signal as a test sees it.
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

// recordSignals records the TaskStarted and TaskFinished signals of sender
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

// TestWorkerClaimOrder: priority DESC, run_after ASC, enqueued_at ASC; tasks
// not due are not claimed.
func TestWorkerClaimOrder(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		rec := wkRecord(t, b.Name())
		now := time.Now()
		specs := []struct {
			name string
			opts []tasks.Option
		}{
			{"a", nil},
			{"b", []tasks.Option{tasks.WithPriority(10)}},
			{"c", []tasks.Option{tasks.WithRunAfter(now.Add(-time.Hour))}},
			{"d", nil},
			{"e", []tasks.Option{tasks.WithPriority(-5)}},
			{"f", []tasks.Option{tasks.WithPriority(10), tasks.WithRunAfter(now.Add(-2 * time.Hour))}},
			{"g", []tasks.Option{tasks.WithDelay(time.Hour)}},
			{"h", []tasks.Option{tasks.WithPriority(10)}},
			{"i", []tasks.Option{tasks.WithPriority(-5), tasks.WithRunAfter(now.Add(-time.Minute))}},
		}
		names := map[string]string{}
		results := map[string]*tasks.Result[string]{}
		for _, s := range specs {
			r := wkEnqueue(t, wkOn(workerEcho, b, s.opts...), s.name)
			names[r.ID] = s.name
			results[s.name] = r
		}
		if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 1, ExitWhenEmpty: true,
			PollInterval: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, id := range rec.started() {
			got = append(got, names[id])
		}
		want := []string{"f", "b", "h", "c", "a", "d", "i", "e"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("start order (-want +got):\n%s", diff)
		}
		g := results["g"]
		wkRefresh(t, g)
		if g.Status != tasks.StatusReady || g.Attempts != 0 {
			t.Errorf("deferred task: status %s, attempts %d; want READY, 0", g.Status, g.Attempts)
		}
	})
}

// TestWorkerQueues: Queues selects, "*" and empty mean all, ExcludeQueues
// wins.
func TestWorkerQueues(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		for _, q := range []string{"q1", "q2", "q3"} {
			for i := range 2 {
				wkEnqueue(t, wkOn(workerEcho, b, tasks.WithQueue(q)), fmt.Sprint(q, i))
			}
		}
		byQueue := func() map[string]string {
			rows, err := b.DB().DB.Query(`SELECT queue, status, count(*) FROM gotasks_task WHERE backend = $1
				GROUP BY queue, status`, b.Name())
			if err != nil {
				t.Fatal(err)
			}
			defer rows.Close()
			m := map[string]string{}
			for rows.Next() {
				var q, s string
				var n int
				if err := rows.Scan(&q, &s, &n); err != nil {
					t.Fatal(err)
				}
				m[q] += fmt.Sprintf("%s×%d", s, n)
			}
			return m
		}
		steps := []struct {
			cfg  database.WorkerConfig
			want map[string]string
		}{
			{database.WorkerConfig{Queues: []string{"q1", "q2"}, ExcludeQueues: []string{"q2"}},
				map[string]string{"q1": "SUCCESSFUL×2", "q2": "READY×2", "q3": "READY×2"}},
			{database.WorkerConfig{Queues: []string{"*"}, ExcludeQueues: []string{"q3"}},
				map[string]string{"q1": "SUCCESSFUL×2", "q2": "SUCCESSFUL×2", "q3": "READY×2"}},
			{database.WorkerConfig{Queues: []string{"nothing-here"}},
				map[string]string{"q1": "SUCCESSFUL×2", "q2": "SUCCESSFUL×2", "q3": "READY×2"}},
			{database.WorkerConfig{},
				map[string]string{"q1": "SUCCESSFUL×2", "q2": "SUCCESSFUL×2", "q3": "SUCCESSFUL×2"}},
		}
		for i, s := range steps {
			s.cfg.ExitWhenEmpty, s.cfg.PollInterval = true, 10*time.Millisecond
			if _, err := wkRun(t, b, s.cfg); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			if diff := cmp.Diff(s.want, byQueue()); diff != "" {
				t.Errorf("step %d (queues %v, exclude %v) (-want +got):\n%s", i, s.cfg.Queues, s.cfg.ExcludeQueues, diff)
			}
		}
		for _, bad := range [][]string{{"*", "q1"}, {""}} {
			if _, err := database.NewWorker(b, database.WorkerConfig{Queues: bad}); !errors.Is(err, tasks.ErrInvalidBackend) {
				t.Errorf("NewWorker(Queues: %q) = %v; want ErrInvalidBackend", bad, err)
			}
		}
	})
}

// TestWorkerRunAfter: a deferred task is not claimed before it is due and
// is claimed once it is.
func TestWorkerRunAfter(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		r := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithDelay(400*time.Millisecond)), "later")
		// While it is not due, the polling worker must leave it READY.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for time.Now().Before(r.RunAfter.Add(-30 * time.Millisecond)) {
			if got := wkGet(t, b, r.ID); got.Status != tasks.StatusReady {
				t.Fatalf("task claimed %v before its run_after %v: status %s", time.Until(r.RunAfter), r.RunAfter, got.Status)
			}
			<-tick.C
		}
		wkWait(t, r)
		if r.Status != tasks.StatusSuccessful {
			t.Fatalf("status %s; want SUCCESSFUL", r.Status)
		}
		if r.StartedAt == nil || r.StartedAt.Before(r.RunAfter) {
			t.Errorf("started at %v, before run_after %v", r.StartedAt, r.RunAfter)
		}
		if d := r.StartedAt.Sub(r.RunAfter); d > 3*time.Second {
			t.Errorf("started %v after it was due", d)
		}
	})
}

// TestWorkerNoDoubleClaim: several workers on separate backends (as in
// separate processes) claim thousands of tasks; each runs exactly once.
func TestWorkerNoDoubleClaim(t *testing.T) {
	t.Parallel()
	const (
		workers     = 4
		concurrency = 20
	)
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		n := 3000
		if wkRaceEnabled() && strings.HasPrefix(dsn, "sqlite") {
			// The race detector slows the transpiled SQLite about twentyfold,
			// and four backends contend for its one write lock: 3000 tasks
			// take 40 s there (2 s without -race).
			n = 1000
		}
		b0 := wkOpen(t, dsn)
		// Every worker's backend has the name of b0: count the successes
		// they signal.
		var succeeded atomic.Int64
		allDone := make(chan struct{})
		t.Cleanup(signals.TaskFinished.Connect(func(ctx context.Context, from string, r *tasks.RawResult) {
			if from == b0.Name() && r.Status == tasks.StatusSuccessful && succeeded.Add(1) == int64(n) {
				close(allDone)
			}
		}))
		ws := make([]*database.Worker, workers)
		for i := range ws {
			b := b0
			if i > 0 {
				b = wkOpenNamed(t, dsn, b0.Name())
			}
			ws[i] = wkStart(t, b, database.WorkerConfig{Concurrency: concurrency, PollInterval: 10 * time.Millisecond})
		}
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("%s/%d", b0.Name(), i)
		}
		if _, err := wkOn(workerCount, b0).EnqueueMany(context.Background(), keys); err != nil {
			t.Fatal(err)
		}
		select {
		case <-allDone:
		case <-time.After(60 * time.Second):
			t.Fatalf("%d of %d tasks SUCCESSFUL after 60 s", succeeded.Load(), n)
		}
		var total int64
		var per []int64
		for _, w := range ws {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			if err := w.Stop(ctx); err != nil {
				t.Errorf("stop: %v", err)
			}
			cancel()
			total += w.Processed()
			per = append(per, w.Processed())
		}
		t.Logf("tasks per worker: %v", per)
		if total != int64(n) {
			t.Errorf("workers processed %d tasks in all; want %d", total, n)
		}
		var runs []string
		for _, k := range keys {
			if c := wkCounter(&workerExecutions, k).Load(); c != 1 {
				runs = append(runs, fmt.Sprintf("%s ran %d times", k, c))
			}
		}
		if len(runs) > 0 {
			t.Errorf("%d tasks did not run exactly once: %v", len(runs), runs[:min(len(runs), 10)])
		}
		if diff := cmp.Diff(map[tasks.Status]int{tasks.StatusSuccessful: n}, wkStatusCounts(t, b0)); diff != "" {
			t.Errorf("statuses (-want +got):\n%s", diff)
		}
		if c := wkCount(t, b0, "attempts <> 1"); c != 0 {
			t.Errorf("%d tasks have attempts <> 1", c)
		}
	})
}

// TestWorkerRetryDefaultBackoff: after a failed attempt the task is READY
// again with run_after = finish time + (attempt⁴ + 5) s.
func TestWorkerRetryDefaultBackoff(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		r := wkEnqueue(t, wkOn(workerFailDefault, b), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "the first failure", func() bool {
			wkRefresh(t, r)
			return len(r.Errors) > 0 && r.Status == tasks.StatusReady
		})
		type view struct {
			Status      tasks.Status
			Attempts    int
			MaxAttempts int
			Backoff     time.Duration
			FinishedAt  *time.Time
			Error       tasks.TaskError
		}
		got := view{r.Status, r.Attempts, r.MaxAttempts, r.RunAfter.Sub(r.Errors[0].At), r.FinishedAt, r.Errors[0]}
		got.Error.At = time.Time{}
		want := view{tasks.StatusReady, 1, tasks.DefaultMaxAttempts, 6 * time.Second, nil,
			tasks.TaskError{Attempt: 1, Type: "*errors.errorString", Message: "always fails"}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("stored row after the first failure (-want +got):\n%s", diff)
		}
		if _, err := r.Value(); !errors.Is(err, tasks.ErrNotFinished) {
			t.Errorf("Value() = %v; want ErrNotFinished", err)
		}
	})
}

// TestWorkerRetryUntilFailed: with a short backoff the task is retried until
// MaxAttempts and ends FAILED with one error per attempt.
func TestWorkerRetryUntilFailed(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		rec := wkRecord(t, b.Name())
		r := wkEnqueue(t, wkOn(workerFailFast, b), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		wkWait(t, r)
		if r.Status != tasks.StatusFailed || r.Attempts != 3 || r.FinishedAt == nil {
			t.Fatalf("status %s, attempts %d, finished %v; want FAILED, 3, set", r.Status, r.Attempts, r.FinishedAt)
		}
		var got []tasks.TaskError
		for _, e := range r.Errors {
			e.At = time.Time{}
			got = append(got, e)
		}
		var want []tasks.TaskError
		for i := 1; i <= 3; i++ {
			want = append(want, tasks.TaskError{Attempt: i, Type: "*errors.errorString", Message: "always fails"})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
		if _, err := r.Value(); !errors.Is(err, tasks.ErrTaskFailed) || !strings.Contains(err.Error(), "always fails") {
			t.Errorf("Value() = %v; want ErrTaskFailed with the last message", err)
		}
		// Each retry was scheduled at finish time + backoff(attempt).
		dbtest.WaitUntil(t, 5*time.Second, "3 TaskFinished signals", func() bool {
			return len(rec.resultsOf("finished", r.ID)) == 3
		})
		var backoffs []time.Duration
		for _, f := range rec.resultsOf("finished", r.ID) {
			if f.Status == tasks.StatusReady {
				backoffs = append(backoffs, f.RunAfter.Sub(f.LastError().At))
			}
		}
		if diff := cmp.Diff([]time.Duration{workerFastBackoff(1), workerFastBackoff(2)}, backoffs); diff != "" {
			t.Errorf("retry delays (-want +got):\n%s", diff)
		}
		if len(r.WorkerIDs) != 3 {
			t.Errorf("worker ids %v; want one per attempt", r.WorkerIDs)
		}
	})
}

// TestWorkerTimeout: an attempt that overruns its timeout fails with a
// *tasks.TimeoutError.
func TestWorkerTimeout(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		r := wkEnqueue(t, wkOn(workerTimeout, b), "slow")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		wkWait(t, r)
		if r.Status != tasks.StatusFailed || len(r.Errors) != 1 {
			t.Fatalf("status %s, errors %v; want FAILED with one error", r.Status, r.Errors)
		}
		if e := r.Errors[0]; e.Type != "*tasks.TimeoutError" || !strings.Contains(e.Message, "timed out after 50ms") {
			t.Errorf("error %+v; want a *tasks.TimeoutError after 50ms", e)
		}
	})
}

// claimAsGhost marks the READY task id RUNNING by a worker "ghost" whose
// last heartbeat was at hb, as a worker that then vanished leaves it.
func wkClaimAsGhost(t *testing.T, b *database.Backend, id string, hb time.Time) {
	t.Helper()
	n := wkExec(t, b, `UPDATE gotasks_task SET status = 'RUNNING', worker_id = 'ghost', attempts = attempts + 1,
		started_at = $1, last_attempted_at = $1, heartbeat_at = $1, worker_ids = '["ghost"]'
		WHERE id = $2 AND status = 'READY'`, wkTS(b, hb), id)
	if n != 1 {
		t.Fatalf("ghost claim updated %d rows", n)
	}
}

var wkRescueConfig = database.WorkerConfig{PollInterval: 10 * time.Millisecond,
	HeartbeatInterval: 50 * time.Millisecond, RescueAfter: 300 * time.Millisecond}

// TestWorkerRescuesVanishedWorker: a RUNNING task whose worker stopped
// heartbeating goes back to READY with a WorkerLost error and runs again.
func TestWorkerRescuesVanishedWorker(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		rec := wkRecord(t, b.Name())
		r := wkEnqueue(t, wkOn(workerEcho, b), "orphan")
		wkClaimAsGhost(t, b, r.ID, time.Now().Add(-time.Minute))
		w := wkStart(t, b, wkRescueConfig)
		wkWait(t, r)
		if r.Status != tasks.StatusSuccessful || r.Attempts != 2 || len(r.Errors) != 1 {
			t.Fatalf("status %s, attempts %d, errors %v; want SUCCESSFUL, 2, one error", r.Status, r.Attempts, r.Errors)
		}
		e := r.Errors[0]
		if e.Type != database.WorkerLostType || e.Attempt != 1 || !strings.Contains(e.Message, "ghost") {
			t.Errorf("error %+v; want %s of attempt 1 naming the ghost worker", e, database.WorkerLostType)
		}
		if diff := cmp.Diff([]string{"ghost", w.ID()}, r.WorkerIDs); diff != "" {
			t.Errorf("worker ids (-want +got):\n%s", diff)
		}
		dbtest.WaitUntil(t, 5*time.Second, "3 signals", func() bool { return len(rec.of(r.ID)) == 3 })
		want := []wkEvent{
			{"finished", r.ID, tasks.StatusReady, 1, 1}, // the rescue
			{"started", r.ID, tasks.StatusRunning, 2, 1},
			{"finished", r.ID, tasks.StatusSuccessful, 2, 1},
		}
		if diff := cmp.Diff(want, rec.of(r.ID)); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
	})
}

// TestWorkerRescueOutOfAttempts: a rescued task without attempts left ends
// FAILED.
func TestWorkerRescueOutOfAttempts(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		r := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithMaxAttempts(1)), "orphan")
		wkClaimAsGhost(t, b, r.ID, time.Now().Add(-time.Minute))
		wkStart(t, b, wkRescueConfig)
		wkWait(t, r)
		if r.Status != tasks.StatusFailed || r.Attempts != 1 || len(r.Errors) != 1 || r.FinishedAt == nil {
			t.Fatalf("status %s, attempts %d, errors %v, finished %v; want FAILED, 1, one error, set",
				r.Status, r.Attempts, r.Errors, r.FinishedAt)
		}
		if r.Errors[0].Type != database.WorkerLostType {
			t.Errorf("error type %q; want %q", r.Errors[0].Type, database.WorkerLostType)
		}
		if _, err := r.Value(); !errors.Is(err, tasks.ErrTaskFailed) {
			t.Errorf("Value() = %v; want ErrTaskFailed", err)
		}
	})
}

// TestWorkerLiveTaskNotRescued: a long task of a live worker keeps its
// lease through heartbeats; another worker's rescue leaves it alone.
func TestWorkerLiveTaskNotRescued(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		other := wkOpenNamed(t, dsn, b.Name())
		r := wkEnqueue(t, wkOn(workerSleep, b), 1000)
		w := wkStart(t, b, wkRescueConfig)
		dbtest.WaitUntil(t, 5*time.Second, "the task to run", func() bool {
			return wkGet(t, b, r.ID).Status == tasks.StatusRunning
		})
		// It rescues at start and every ~150-300 ms; it has nothing to claim.
		otherCfg := wkRescueConfig
		otherCfg.PollInterval = time.Minute
		wkStart(t, other, otherCfg)
		wkWait(t, r)
		if r.Status != tasks.StatusSuccessful || r.Attempts != 1 || len(r.Errors) != 0 {
			t.Fatalf("status %s, attempts %d, errors %v; want SUCCESSFUL, 1, none", r.Status, r.Attempts, r.Errors)
		}
		if diff := cmp.Diff([]string{w.ID()}, r.WorkerIDs); diff != "" {
			t.Errorf("worker ids (-want +got):\n%s", diff)
		}
	})
}

// TestWorkerRepeat: after a success the next run is enqueued at scheduled
// time + interval stepped past now, with the same arguments, until
// RepeatUntil; a final failure ends the chain.
func TestWorkerRepeat(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := wkOpen(t, dsn)
		// Runs at scheduled + 1 s, 2 s and 3 s are already missed.
		scheduled := time.Now().UTC().Add(-3500 * time.Millisecond).Truncate(time.Microsecond)
		until := scheduled.Add(5500 * time.Millisecond)
		task := wkOn(workerEcho, b, tasks.WithRunAfter(scheduled), tasks.WithRepeat(time.Second), tasks.WithRepeatUntil(until))
		first := wkEnqueue(t, task, "tick")
		failing := wkEnqueue(t, wkOn(workerFailFast, b, tasks.WithMaxAttempts(1), tasks.WithRepeat(time.Second)), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		// The next run is inserted with the outcome of the last: when none is
		// READY or RUNNING, the chain has ended.
		dbtest.WaitUntil(t, 10*time.Second, "the end of the chain", func() bool {
			return wkCount(t, b, "task_name = $2 AND status IN ('READY', 'RUNNING')", workerEcho.Name()) == 0
		})
		list := func(name string) []*tasks.RawResult {
			rs, err := b.List(ctx, database.Filter{TaskName: name})
			if err != nil {
				t.Fatal(err)
			}
			sort.Slice(rs, func(i, j int) bool { return rs[i].RunAfter.Before(rs[j].RunAfter) })
			return rs
		}
		// nextAfter is the next run after r: scheduled time + interval,
		// stepped forward past the end of r's run.
		nextAfter := func(r *tasks.RawResult) time.Time {
			next := r.RunAfter.Add(r.Repeat)
			for !next.After(*r.FinishedAt) {
				next = next.Add(r.Repeat)
			}
			return next
		}
		type run struct {
			Status      tasks.Status
			Args        string
			RunAfter    time.Time
			Repeat      time.Duration
			RepeatUntil *time.Time
		}
		rs := list(workerEcho.Name())
		if len(rs) < 2 || rs[0].ID != first.ID {
			t.Fatalf("%d runs, the first %s; want at least 2, the first %s", len(rs), rs[0].ID, first.ID)
		}
		var want, got []run
		for i, r := range rs {
			ra := scheduled
			if i > 0 {
				ra = nextAfter(rs[i-1])
			}
			want = append(want, run{tasks.StatusSuccessful, `"tick"`, ra, time.Second, &until})
			got = append(got, run{r.Status, string(r.Args), r.RunAfter, r.Repeat, r.RepeatUntil})
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("runs (-want +got):\n%s", diff)
		}
		if d := rs[1].RunAfter.Sub(scheduled); d < 4*time.Second {
			t.Errorf("second run %v after the first's schedule; want the missed runs skipped (at least 4s)", d)
		}
		if last := rs[len(rs)-1]; !nextAfter(last).After(until) {
			t.Errorf("the chain ended at %v though the next run %v is before RepeatUntil %v", last.RunAfter, nextAfter(last), until)
		}
		wkWait(t, failing)
		if got := list(workerFailFast.Name()); len(got) != 1 || got[0].Status != tasks.StatusFailed {
			t.Errorf("failed repeating task: %d results; want the one FAILED (the chain ends)", len(got))
		}
	})
}

// TestWorkerBadRows: an unknown task name, undecodable arguments and a
// panic each fail their task with a clear error, and the worker goes on.
func TestWorkerBadRows(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		unknown := wkEnqueue(t, wkOn(workerEcho, b), "unknown")
		wkExec(t, b, `UPDATE gotasks_task SET task_name = 'database_test.worker_not_registered' WHERE id = $1`, unknown.ID)
		badArgs := wkEnqueue(t, wkOn(workerInt, b), wkIntArgs{X: 1})
		wkExec(t, b, `UPDATE gotasks_task SET args = '{"x": "not-an-int"}' WHERE id = $1`, badArgs.ID)
		ids := []string{unknown.ID, badArgs.ID}
		if b.Dialect() == database.SQLite { // PostgreSQL's json column refuses it
			badJSON := wkEnqueue(t, wkOn(workerInt, b), wkIntArgs{X: 2})
			wkExec(t, b, `UPDATE gotasks_task SET args = '[' WHERE id = $1`, badJSON.ID)
			ids = append(ids, badJSON.ID)
		}
		panicky := wkEnqueue(t, wkOn(workerPanic, b), "x")
		after := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithPriority(-1)), "after")
		if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 1, ExitWhenEmpty: true,
			PollInterval: 10 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
		for _, id := range ids {
			r := wkGet(t, b, id)
			if r.Status != tasks.StatusFailed || r.Attempts != 1 || len(r.Errors) != 1 {
				t.Errorf("%s (%s): status %s, attempts %d, errors %v; want FAILED after 1 attempt with 1 error",
					r.TaskName, r.Args, r.Status, r.Attempts, r.Errors)
				continue
			}
			e := r.Errors[0]
			switch {
			case id == unknown.ID:
				if !strings.Contains(e.Message, "not registered") || !strings.Contains(e.Message, "database_test.worker_not_registered") {
					t.Errorf("unknown task: error %+v; want it to say the task is not registered", e)
				}
			default:
				if e.Type != "*tasks.ArgsError" {
					t.Errorf("args %s: error type %q (%s); want *tasks.ArgsError", r.Args, e.Type, e.Message)
				}
			}
		}
		wkRefresh(t, panicky)
		if panicky.Status != tasks.StatusFailed || len(panicky.Errors) != 1 {
			t.Fatalf("panicking task: status %s, errors %v", panicky.Status, panicky.Errors)
		}
		if e := panicky.Errors[0]; e.Type != "panic" || !strings.Contains(e.Message, "boom: x") ||
			!strings.Contains(e.Stack, "worker_test.go") {
			t.Errorf("panic error %+v; want type panic, the value and a stack", e)
		}
		wkRefresh(t, after)
		if v, err := after.Value(); err != nil || v != "after" {
			t.Errorf("task after the bad ones: %q, %v; want it SUCCESSFUL", v, err)
		}
	})
}

// TestWorkerGracefulStop: Stop stops claiming, lets running tasks finish
// and records their outcomes; unclaimed tasks stay READY.
func TestWorkerGracefulStop(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		key := b.Name()
		var running []*tasks.Result[string]
		for i := range 2 {
			running = append(running, wkEnqueue(t, wkOn(workerGate, b), fmt.Sprint(key, i)))
		}
		var waiting []*tasks.Result[string]
		for i := range 2 {
			waiting = append(waiting, wkEnqueue(t, wkOn(workerEcho, b, tasks.WithPriority(-1)), fmt.Sprint(i)))
		}
		w := wkStart(t, b, database.WorkerConfig{Concurrency: 2, PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "2 running tasks", func() bool {
			return wkCount(t, b, "status = 'RUNNING'") == 2
		})
		// Let the tasks finish a little after Stop began waiting for them.
		release := time.AfterFunc(200*time.Millisecond, func() {
			for i := range 2 {
				close(wkGate(fmt.Sprint(key, i)))
			}
		})
		defer release.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		for _, r := range running {
			wkRefresh(t, r)
			if r.Status != tasks.StatusSuccessful {
				t.Errorf("running task after Stop: %s; want SUCCESSFUL", r.Status)
			}
		}
		for _, r := range waiting {
			wkRefresh(t, r)
			if r.Status != tasks.StatusReady || r.Attempts != 0 {
				t.Errorf("unclaimed task after Stop: %s, attempts %d; want READY, 0", r.Status, r.Attempts)
			}
		}
		if w.Processed() != 2 {
			t.Errorf("processed %d; want 2", w.Processed())
		}
		select {
		case <-w.Done():
		default:
			t.Error("Done not closed after Stop")
		}
	})
}

// TestWorkerStopLeavesNothingRunning: however often a busy worker is
// stopped, no task it claimed is left RUNNING (a claim in flight at Stop
// must not be lost).
func TestWorkerStopLeavesNothingRunning(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		args := make([]int, 400)
		if _, err := wkOn(workerSleep, b).EnqueueMany(context.Background(), args); err != nil {
			t.Fatal(err)
		}
		started := atomic.Int64{}
		t.Cleanup(signals.TaskStarted.Connect(func(ctx context.Context, from string, r *tasks.RawResult) {
			if from == b.Name() {
				started.Add(1)
			}
		}))
		for i := range 10 {
			w := wkStart(t, b, database.WorkerConfig{Concurrency: 1 + i%3, PollInterval: time.Millisecond})
			target := started.Load() + int64(3+i%5)
			dbtest.WaitUntil(t, 5*time.Second, "tasks to start", func() bool { return started.Load() >= target })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := w.Stop(ctx)
			cancel()
			if err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if n := wkCount(t, b, "status = 'RUNNING'"); n != 0 {
				t.Fatalf("round %d: %d tasks left RUNNING after Stop", i, n)
			}
		}
	})
}

// TestWorkerHardStop: StopAndCancel (or Stop/Run past their grace period)
// cancels running tasks and hands them back READY without using up an
// attempt; a later worker runs them.
func TestWorkerHardStop(t *testing.T) {
	t.Parallel()
	modes := []struct {
		name string
		stop func(t *testing.T, b *database.Backend, wkWait func()) error
	}{
		{"StopAndCancel", func(t *testing.T, b *database.Backend, wkWait func()) error {
			w := wkStart(t, b, database.WorkerConfig{Concurrency: 3, PollInterval: 10 * time.Millisecond})
			wkWait()
			return w.StopAndCancel(context.Background())
		}},
		{"StopDeadline", func(t *testing.T, b *database.Backend, wkWait func()) error {
			w := wkStart(t, b, database.WorkerConfig{Concurrency: 3, PollInterval: 10 * time.Millisecond})
			wkWait()
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			return w.Stop(ctx)
		}},
		{"RunGracePeriod", func(t *testing.T, b *database.Backend, wkWait func()) error {
			w := wkNewWorker(t, b, database.WorkerConfig{Concurrency: 3, PollInterval: 10 * time.Millisecond,
				GracePeriod: 100 * time.Millisecond})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			errc := make(chan error, 1)
			go func() { errc <- w.Run(ctx) }()
			wkWait()
			cancel()
			return <-errc
		}},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
				b := wkOpen(t, dsn)
				key := b.Name()
				var rs []*tasks.Result[string]
				for range 3 {
					rs = append(rs, wkEnqueue(t, wkOn(workerGate, b), key))
				}
				err := m.stop(t, b, func() {
					dbtest.WaitUntil(t, 5*time.Second, "3 running tasks", func() bool {
						return wkCount(t, b, "status = 'RUNNING'") == 3
					})
				})
				if !errors.Is(err, database.ErrHardStop) {
					t.Errorf("stop = %v; want ErrHardStop", err)
				}
				for _, r := range rs {
					wkRefresh(t, r)
					if r.Status != tasks.StatusReady || r.Attempts != 0 || len(r.Errors) != 0 || r.FinishedAt != nil {
						t.Errorf("handed-back task: status %s, attempts %d, errors %v, finished %v; want READY, 0, none, nil",
							r.Status, r.Attempts, r.Errors, r.FinishedAt)
					}
				}
				close(wkGate(key))
				if _, err := wkRun(t, b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 10 * time.Millisecond}); err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					wkRefresh(t, r)
					if r.Status != tasks.StatusSuccessful || r.Attempts != 1 {
						t.Errorf("later run: status %s, attempts %d; want SUCCESSFUL, 1", r.Status, r.Attempts)
					}
				}
			})
		})
	}
}

// TestWorkerStopNothingRunning: a hard stop of an idle worker hands nothing
// back and is not an error.
func TestWorkerStopNothingRunning(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		w := wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		if err := w.StopAndCancel(context.Background()); err != nil {
			t.Errorf("StopAndCancel of an idle worker = %v; want nil", err)
		}
		if err := w.Stop(context.Background()); err != nil {
			t.Errorf("Stop after StopAndCancel = %v; want nil", err)
		}
	})
}

// TestWorkerStopsByItself: MaxTasks, ExitWhenEmpty and Duration.
func TestWorkerStopsByItself(t *testing.T) {
	t.Parallel()
	t.Run("MaxTasks", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := wkOpen(t, dsn)
			for i := range 10 {
				wkEnqueue(t, wkOn(workerEcho, b), fmt.Sprint(i))
			}
			w, err := wkRun(t, b, database.WorkerConfig{MaxTasks: 4, Concurrency: 3, PollInterval: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if w.Processed() != 4 {
				t.Errorf("processed %d; want 4", w.Processed())
			}
			want := map[tasks.Status]int{tasks.StatusSuccessful: 4, tasks.StatusReady: 6}
			if diff := cmp.Diff(want, wkStatusCounts(t, b)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
		})
	})
	t.Run("ExitWhenEmpty", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := wkOpen(t, dsn)
			for i := range 5 {
				wkEnqueue(t, wkOn(workerEcho, b), fmt.Sprint(i))
			}
			deferred := wkEnqueue(t, wkOn(workerEcho, b, tasks.WithDelay(time.Hour)), "later")
			// Retried at once (backoff 0): due again, so the worker is not
			// empty until the retry ran.
			var flaky []*tasks.Result[string]
			for i := range 3 {
				flaky = append(flaky, wkEnqueue(t, wkOn(workerFlaky, b), fmt.Sprint(b.Name(), i)))
			}
			w, err := wkRun(t, b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			want := map[tasks.Status]int{tasks.StatusSuccessful: 8, tasks.StatusReady: 1}
			if diff := cmp.Diff(want, wkStatusCounts(t, b)); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if w.Processed() != 11 {
				t.Errorf("processed %d; want 11 (5 + 3 × 2 attempts)", w.Processed())
			}
			wkRefresh(t, deferred)
			if deferred.Status != tasks.StatusReady {
				t.Errorf("deferred task: %s; want READY", deferred.Status)
			}
			for _, r := range flaky {
				wkRefresh(t, r)
				if r.Attempts != 2 {
					t.Errorf("flaky task: attempts %d; want 2", r.Attempts)
				}
			}
		})
	})
	t.Run("Duration", func(t *testing.T) {
		t.Parallel()
		dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
			b := wkOpen(t, dsn)
			start := time.Now()
			w, err := wkRun(t, b, database.WorkerConfig{Duration: 300 * time.Millisecond, PollInterval: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < 300*time.Millisecond || d > 5*time.Second {
				t.Errorf("worker ran %v; want about 300ms", d)
			}
			select {
			case <-w.StoppedByItself():
			default:
				t.Error("StoppedByItself not closed")
			}
		})
	})
}

// TestWorkerWakeUp: an idle worker polling once a minute starts a new task
// at once: woken in-process on SQLite and by NOTIFY on PostgreSQL (the task
// is enqueued through another backend there, so nothing else can wake it).
func TestWorkerWakeUp(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		enq := b
		w := wkStart(t, b, database.WorkerConfig{PollInterval: time.Minute})
		if b.Dialect() == database.Postgres {
			enq = wkOpenNamed(t, dsn, b.Name())
			select {
			case <-database.WorkerTestListenerConnected(b):
			case <-time.After(5 * time.Second):
				t.Fatal("the worker's listener did not connect")
			}
		}
		task := wkOn(workerEcho, b)
		for i := range 4 {
			// The first round makes sure the worker is idle in its poll wait.
			start := time.Now()
			raw, err := enq.Enqueue(context.Background(), &tasks.EnqueueRequest{ID: tasks.NewID(),
				TaskName: task.Name(), Args: []byte(`"wake"`), Queue: tasks.DefaultQueue})
			if err != nil {
				t.Fatal(err)
			}
			r, err := task.GetResult(context.Background(), raw.ID)
			if err != nil {
				t.Fatal(err)
			}
			wkWait(t, r)
			if d := time.Since(start); r.Status != tasks.StatusSuccessful || d > 5*time.Second {
				t.Fatalf("round %d: %s after %v; want SUCCESSFUL well before the 1-minute poll", i, r.Status, d)
			} else {
				t.Logf("round %d: done in %v", i, d)
			}
		}
		// The result can be read SUCCESSFUL a moment before the worker
		// counts it.
		dbtest.WaitUntil(t, 5*time.Second, "4 processed tasks", func() bool { return w.Processed() == 4 })
	})
}

// TestWorkerSignals: TaskStarted (RUNNING) then TaskFinished (READY for a
// retry, SUCCESSFUL or FAILED) for each attempt.
func TestWorkerSignals(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		rec := wkRecord(t, b.Name())
		flaky := wkEnqueue(t, wkOn(workerFlaky, b), b.Name())
		failing := wkEnqueue(t, wkOn(workerFailFast, b, tasks.WithMaxAttempts(1)), "x")
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		dbtest.WaitUntil(t, 5*time.Second, "6 signals", func() bool { return len(rec.of(flaky.ID))+len(rec.of(failing.ID)) == 6 })
		if diff := cmp.Diff(wkFailedOnce(flaky.ID), rec.of(flaky.ID)); diff != "" {
			t.Errorf("retried task (-want +got):\n%s", diff)
		}
		want := []wkEvent{
			{"started", failing.ID, tasks.StatusRunning, 1, 0},
			{"finished", failing.ID, tasks.StatusFailed, 1, 1},
		}
		if diff := cmp.Diff(want, rec.of(failing.ID)); diff != "" {
			t.Errorf("failed task (-want +got):\n%s", diff)
		}
		if fs := rec.resultsOf("finished", flaky.ID); len(fs) == 2 && string(fs[1].ReturnValue) != fmt.Sprintf("%q", b.Name()) {
			t.Errorf("TaskFinished return value %s", fs[1].ReturnValue)
		}
	})
}

// TestWorkerRetrySignalsInOrder: a retry with no backoff is claimable as
// soon as the failed attempt is recorded, before the worker has sent that
// attempt's TaskFinished; TaskStarted of the retry still comes after it,
// even when a TaskFinished receiver is slow.
func TestWorkerRetrySignalsInOrder(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		flaky := wkOn(workerFlaky, b)
		r, err := flaky.Enqueue(context.Background(), b.Name())
		if err != nil {
			t.Fatal(err)
		}
		id := r.ID // the receivers run while Wait refreshes r
		retryStarted := make(chan struct{})
		var once sync.Once
		t.Cleanup(signals.TaskStarted.Connect(func(ctx context.Context, from string, got *tasks.RawResult) {
			if from == b.Name() && got.ID == id && got.Attempts == 2 {
				once.Do(func() { close(retryStarted) })
			}
		}))
		// Connected before the recorder, so that the recorder sees the
		// TaskFinished of the first attempt only once this receiver returns:
		// it holds that signal until the retry has been claimed again, and
		// a little longer for a TaskStarted that must not come.
		t.Cleanup(signals.TaskFinished.Connect(func(ctx context.Context, from string, got *tasks.RawResult) {
			if from != b.Name() || got.ID != id || got.Status != tasks.StatusReady {
				return
			}
			deadline := time.Now().Add(10 * time.Second)
			for {
				cur, err := b.GetResult(context.Background(), id)
				if err != nil {
					t.Errorf("GetResult: %v", err)
					return
				}
				if cur.Status == tasks.StatusRunning && cur.Attempts == 2 {
					break
				}
				if time.Now().After(deadline) {
					t.Errorf("the retry was not claimed while TaskFinished of the first attempt was being sent")
					return
				}
				time.Sleep(5 * time.Millisecond) // polling the database
			}
			select {
			case <-retryStarted:
			case <-time.After(300 * time.Millisecond):
			}
		}))
		rec := wkRecord(t, b.Name())
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		wkWait(t, r)
		dbtest.WaitUntil(t, 5*time.Second, "4 signals", func() bool { return len(rec.of(r.ID)) == 4 })
		if diff := cmp.Diff(wkFailedOnce(r.ID), rec.of(r.ID)); diff != "" {
			t.Errorf("signals (-want +got):\n%s", diff)
		}
	})
}

// TestWorkerReturnValueVerbatim: the stored return value is the text the task
// produced, byte for byte (key order, escapes, non-ASCII, a NUL escape), and
// decodes to the value returned.
func TestWorkerReturnValueVerbatim(t *testing.T) {
	t.Parallel()
	tricky := []string{
		`plain`,
		`quote " backslash \ slash / tab	 newline
 end`,
		"nul \x00 and bell \a",
		`unicode ü € 😀 and an escape \u0041`,
		`{"looks": "like json"}`,
	}
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		wkStart(t, b, database.WorkerConfig{PollInterval: 10 * time.Millisecond})
		var rs []*tasks.Result[string]
		for _, s := range tricky {
			rs = append(rs, wkEnqueue(t, wkOn(workerEcho, b), s))
		}
		for i, r := range rs {
			wkWait(t, r)
			got, err := r.Value()
			if err != nil {
				t.Fatalf("%q: Value: %v", tricky[i], err)
			}
			if diff := cmp.Diff(tricky[i], got); diff != "" {
				t.Errorf("return value (-want +got):\n%s", diff)
			}
			want, _ := json.Marshal(tricky[i])
			if diff := cmp.Diff(string(want), string(wkGet(t, b, r.ID).ReturnValue)); diff != "" {
				t.Errorf("stored return value text (-want +got):\n%s", diff)
			}
		}
	})
}

// TestWorkerClaimAheadShortThenLong: a worker busy with short tasks claims
// ahead of its free slots; when the next tasks turn out long, what it took
// ahead goes back to the queue for another worker. Either way every task
// runs once, on its first attempt, and its history names only the worker
// that ran it.
func TestWorkerClaimAheadShortThenLong(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := wkOpen(t, dsn)
		key := b.Name()
		keys := make([]string, 300)
		for i := range keys {
			keys[i] = fmt.Sprint(key, "-short-", i)
		}
		short, err := wkOn(workerCount, b).EnqueueMany(context.Background(), keys)
		if err != nil {
			t.Fatal(err)
		}
		const long = 6
		gated := make([]string, long)
		for i := range gated {
			gated[i] = fmt.Sprint(key, "-long-", i)
		}
		longs, err := wkOn(workerGate, b).EnqueueMany(context.Background(), gated)
		if err != nil {
			t.Fatal(err)
		}
		released := &wkReleaseLog{}
		cfgShort := database.WorkerConfig{Concurrency: 2, PollInterval: 10 * time.Millisecond,
			Logger: slog.New(released)}
		w1 := wkStart(t, b, cfgShort)
		dbtest.WaitUntil(t, 20*time.Second, "the short tasks done", func() bool {
			return wkCount(t, b, "task_name = $2 AND status = 'SUCCESSFUL'", workerCount.Name()) == len(keys)
		})
		// Its slots free, the first worker runs two long tasks (and may
		// hold more claimed ahead, released within a second).
		dbtest.WaitUntil(t, 10*time.Second, "the first worker running two long tasks", func() bool {
			return wkCount(t, b, "task_name = $2 AND status = 'RUNNING' AND worker_id = $3",
				workerGate.Name(), w1.ID()) >= cfgShort.Concurrency
		})
		cfg := database.WorkerConfig{Concurrency: long, PollInterval: 10 * time.Millisecond}
		w2 := wkStart(t, b, cfg) // takes what the first worker cannot run
		dbtest.WaitUntil(t, 10*time.Second, "the second worker running all but two long tasks", func() bool {
			return wkCount(t, b, "task_name = $2 AND status = 'RUNNING' AND worker_id = $3",
				workerGate.Name(), w2.ID()) == long-cfgShort.Concurrency
		})
		for _, g := range gated {
			close(wkGate(g))
		}
		for _, r := range longs {
			wkWait(t, r)
		}
		for i, r := range append(short, longs...) {
			got := wkGet(t, b, r.ID)
			if got.Status != tasks.StatusSuccessful || got.Attempts != 1 || len(got.WorkerIDs) != 1 || got.StartedAt == nil {
				t.Errorf("task %d: status %s, attempts %d, worker_ids %v, started %v; want SUCCESSFUL, 1, one worker, set",
					i, got.Status, got.Attempts, got.WorkerIDs, got.StartedAt)
			}
		}
		for _, k := range keys {
			if n := wkCounter(&workerExecutions, k).Load(); n != 1 {
				t.Errorf("short task %s ran %d times; want 1", k, n)
			}
		}
		t.Logf("tasks claimed ahead and released by the first worker: %d", released.n.Load())
	})
}

// wkReleaseLog is a slog handler that counts the tasks a worker released
// after claiming them ahead, and drops every record.
type wkReleaseLog struct{ n atomic.Int64 }

func (h *wkReleaseLog) Enabled(context.Context, slog.Level) bool { return true }
func (h *wkReleaseLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "gotasks: released tasks claimed ahead" {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "tasks" {
				h.n.Add(a.Value.Int64())
			}
			return true
		})
	}
	return nil
}
func (h *wkReleaseLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *wkReleaseLog) WithGroup(string) slog.Handler      { return h }
