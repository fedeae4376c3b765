package database_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// ---------------------------------------------------------------------------
// Helpers shared by backend_test.go, tx_test.go, errors_test.go,
// sqlite_lock_test.go, bench_enqueue_test.go and conformance_test.go. Their
// names start with dbt so that they do not collide with the helpers of the
// package's other test files.

// dbtArgs and dbtSum are the arguments and the return value of dbtAdd.
type dbtArgs struct {
	A, B int
	// Key, when set, records that the task ran (see dbtRan).
	Key string `json:",omitempty"`
}

type dbtSum struct {
	Sum int
	Key string `json:",omitempty"`
}

// dbtRan records the keys of the dbtAdd runs.
var dbtRan sync.Map // string → *atomic.Int32

func dbtRuns(key string) int32 {
	if v, ok := dbtRan.Load(key); ok {
		return v.(*atomic.Int32).Load()
	}
	return 0
}

var dbtAdd = tasks.Define("database_test.api.add", func(ctx context.Context, a dbtArgs) (dbtSum, error) {
	if a.Key != "" {
		v, _ := dbtRan.LoadOrStore(a.Key, new(atomic.Int32))
		v.(*atomic.Int32).Add(1)
	}
	return dbtSum{Sum: a.A + a.B, Key: a.Key}, nil
})

// dbtOther is another task, for result mismatches.
var dbtOther = tasks.Define("database_test.api.other", func(ctx context.Context, s string) (string, error) {
	return s, nil
})

// dbtGates holds the gates of dbtGated, by key.
var dbtGates sync.Map // string → chan struct{}

// dbtGated blocks until the gate of its key is closed (or its context is
// done), then returns the key.
var dbtGated = tasks.Define("database_test.api.gated", func(ctx context.Context, key string) (string, error) {
	v, ok := dbtGates.Load(key)
	if !ok {
		return "", fmt.Errorf("no gate %q", key)
	}
	select {
	case <-v.(chan struct{}):
		return key, nil
	case <-ctx.Done():
		return "", ctx.Err()
	}
})

// dbtGate creates a gate for dbtGated and returns its key and its release
// function (also called at cleanup).
func dbtGate(t testing.TB) (string, func()) {
	key := dbtName(t)
	ch := make(chan struct{})
	dbtGates.Store(key, ch)
	var once sync.Once
	release := func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return key, release
}

var dbtSeq atomic.Int64

// dbtName returns a backend name (or key) unique in this process: at most
// 64 bytes, derived from the test's name.
func dbtName(t testing.TB) string {
	h := fnv.New32a()
	h.Write([]byte(t.Name()))
	return fmt.Sprintf("dbt-%08x-%d", h.Sum32(), dbtSeq.Add(1))
}

// dbtLogger drops the backend's and the workers' Info logs and keeps
// warnings on stderr.
var dbtLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func dbtIsPostgres(dsn string) bool { return strings.HasPrefix(dsn, "postgres") }

// dbtDialect returns the dbtest dialect name of dsn.
func dbtDialect(dsn string) string {
	if dbtIsPostgres(dsn) {
		return "postgres"
	}
	return "sqlite"
}

// dbtOpen opens a backend on dsn (migrating it) under a name of its own,
// registers it for the test and closes it at cleanup.
func dbtOpen(t testing.TB, dsn string, opts ...database.Option) *database.Backend {
	t.Helper()
	all := append([]database.Option{database.WithAutoMigrate(true), database.WithName(dbtName(t)),
		database.WithLogger(dbtLogger)}, opts...)
	b, err := database.Open(context.Background(), dsn, all...)
	if err != nil {
		t.Fatalf("Open(%s): %v", dsn, err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	t.Cleanup(tasks.RegisterBackend(b))
	return b
}

// dbtCtx returns a context that ends with the test or after a minute.
func dbtCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// dbtDrain runs a worker on b until no task is due and none is running.
func dbtDrain(t testing.TB, b *database.Backend) {
	t.Helper()
	w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatalf("worker: %v", err)
	}
}

// dbtStartWorker starts a long-running worker on b, stopped at cleanup.
func dbtStartWorker(t testing.TB, b *database.Backend) *database.Worker {
	t.Helper()
	w, err := database.NewWorker(b, database.WorkerConfig{PollInterval: 20 * time.Millisecond, Concurrency: 4})
	if err != nil {
		t.Fatalf("NewWorker: %v", err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("worker start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := w.Stop(ctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
	})
	return w
}

// dbtEvents records one signal's results sent by one backend.
type dbtEvents struct {
	mu  sync.Mutex
	ids []string
	ch  chan *tasks.RawResult
}

func dbtRecord(t testing.TB, s *signals.Signal, sender string) *dbtEvents {
	e := &dbtEvents{ch: make(chan *tasks.RawResult, 1024)}
	t.Cleanup(s.Connect(func(_ context.Context, from string, r *tasks.RawResult) {
		if from != sender {
			return
		}
		e.mu.Lock()
		e.ids = append(e.ids, r.ID)
		e.mu.Unlock()
		select {
		case e.ch <- r:
		default: // next is for tests with few events; never block a sender
		}
	}))
	return e
}

func (e *dbtEvents) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.ids)
}

func (e *dbtEvents) all() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.ids)
}

// next waits for the next event of id.
func (e *dbtEvents) next(t testing.TB, id string) *tasks.RawResult {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case r := <-e.ch:
			if r.ID == id {
				return r
			}
		case <-deadline:
			t.Fatalf("no signal for %s within 30s", id)
			return nil
		}
	}
}

// dbtWantUTC fails unless every time of r is in UTC.
func dbtWantUTC(t testing.TB, r *tasks.RawResult) {
	t.Helper()
	check := func(field string, tm *time.Time) {
		if tm != nil && tm.Location() != time.UTC {
			t.Errorf("%s: %s is in %v, want UTC", r.ID, field, tm.Location())
		}
	}
	check("RunAfter", &r.RunAfter)
	check("EnqueuedAt", &r.EnqueuedAt)
	check("StartedAt", r.StartedAt)
	check("FinishedAt", r.FinishedAt)
	check("LastAttemptedAt", r.LastAttemptedAt)
	check("RepeatUntil", r.RepeatUntil)
	for i := range r.Errors {
		check(fmt.Sprintf("Errors[%d].At", i), &r.Errors[i].At)
	}
}

// dbtIDs returns the sorted ids of rs (nil when there is none).
func dbtIDs(rs []*tasks.RawResult) []string {
	var ids []string
	for _, r := range rs {
		ids = append(ids, r.ID)
	}
	slices.Sort(ids)
	return ids
}

// ---------------------------------------------------------------------------

func TestEnqueueGetResultRefresh(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()), tasks.WithPriority(7), tasks.WithQueue("q1"),
			tasks.WithVerboseName("Add two numbers"), tasks.WithCreator("user:42"))

		key := dbtName(t)
		before := time.Now().UTC()
		res, err := task.Enqueue(ctx, dbtArgs{A: 1, B: 2, Key: key})
		after := time.Now().UTC()
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}

		want := tasks.RawResult{
			ID: res.ID, TaskName: "database_test.api.add", Status: tasks.StatusReady,
			Args:     json.RawMessage(fmt.Sprintf(`{"A":1,"B":2,"Key":%q}`, key)),
			Priority: 7, Queue: "q1", Backend: b.Name(), RunAfter: res.EnqueuedAt, EnqueuedAt: res.EnqueuedAt,
			MaxAttempts: tasks.DefaultMaxAttempts, VerboseName: "Add two numbers", Creator: "user:42",
		}
		if diff := cmp.Diff(want, res.RawResult); diff != "" {
			t.Errorf("Enqueue result mismatch (-want +got):\n%s", diff)
		}
		if len(res.ID) == 0 || len(res.ID) >= 64 {
			t.Errorf("id %q: want 1-63 characters", res.ID)
		}
		if res.EnqueuedAt.Before(before.Add(-time.Microsecond)) || res.EnqueuedAt.After(after) {
			t.Errorf("EnqueuedAt %v not within [%v, %v]", res.EnqueuedAt, before, after)
		}
		dbtWantUTC(t, &res.RawResult)
		if _, err := res.Value(); !errors.Is(err, tasks.ErrNotFinished) {
			t.Errorf("Value() of a READY task: %v, want ErrNotFinished", err)
		}

		// Untyped, from the backend and through the registry.
		raw, err := b.GetResult(ctx, res.ID)
		if err != nil {
			t.Fatalf("GetResult: %v", err)
		}
		if diff := cmp.Diff(res.Raw(), raw); diff != "" {
			t.Errorf("stored result differs from what Enqueue returned (-want +got):\n%s", diff)
		}
		dbtWantUTC(t, raw)
		reg, err := tasks.GetBackend(b.Name())
		if err != nil {
			t.Fatal(err)
		}
		if raw2, err := reg.GetResult(ctx, res.ID); err != nil {
			t.Errorf("registry GetResult: %v", err)
		} else if diff := cmp.Diff(res.Raw(), raw2); diff != "" {
			t.Errorf("registry GetResult (-want +got):\n%s", diff)
		}

		// Typed.
		typed, err := task.GetResult(ctx, res.ID)
		if err != nil {
			t.Fatalf("typed GetResult: %v", err)
		}
		if diff := cmp.Diff(res.RawResult, typed.RawResult); diff != "" {
			t.Errorf("typed GetResult (-want +got):\n%s", diff)
		}

		// Refresh before and after a worker ran it.
		if err := typed.Refresh(ctx); err != nil || typed.Status != tasks.StatusReady {
			t.Fatalf("Refresh of a READY task: status %s, %v", typed.Status, err)
		}
		dbtDrain(t, b)
		if err := res.Refresh(ctx); err != nil {
			t.Fatalf("Refresh: %v", err)
		}
		if res.Status != tasks.StatusSuccessful || res.Attempts != 1 || len(res.WorkerIDs) != 1 {
			t.Errorf("after the worker: status %s, attempts %d, workers %v; want SUCCESSFUL, 1, one worker",
				res.Status, res.Attempts, res.WorkerIDs)
		}
		if res.StartedAt == nil || res.FinishedAt == nil || res.LastAttemptedAt == nil {
			t.Fatalf("started/finished/last attempted times missing: %+v", res.RawResult)
		}
		if res.StartedAt.Before(res.EnqueuedAt) || res.FinishedAt.Before(*res.StartedAt) {
			t.Errorf("times out of order: enqueued %v started %v finished %v", res.EnqueuedAt, res.StartedAt, res.FinishedAt)
		}
		dbtWantUTC(t, &res.RawResult)
		v, err := res.Value()
		if err != nil {
			t.Fatalf("Value: %v", err)
		}
		if diff := cmp.Diff(dbtSum{Sum: 3, Key: key}, v); diff != "" {
			t.Errorf("Value (-want +got):\n%s", diff)
		}
		raw, err = b.GetResult(ctx, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(res.Raw(), raw); diff != "" {
			t.Errorf("GetResult after Refresh (-want +got):\n%s", diff)
		}
	})
}

func TestEnqueueMany(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()), tasks.WithCreator("batch"))
		enq := dbtRecord(t, signals.TaskEnqueued, b.Name())

		if rs, err := task.EnqueueMany(ctx, nil); err != nil || rs != nil {
			t.Errorf("EnqueueMany(nil) = %v, %v; want nil, nil", rs, err)
		}
		in := []dbtArgs{{A: 1}, {A: 2, B: 2}, {A: 3, B: 3}, {A: 4, B: 4}, {A: 5, B: 5}}
		rs, err := task.EnqueueMany(ctx, in)
		if err != nil {
			t.Fatalf("EnqueueMany: %v", err)
		}
		if len(rs) != len(in) {
			t.Fatalf("%d results, want %d", len(rs), len(in))
		}
		seen := map[string]bool{}
		for i, r := range rs {
			a, err := dbtAdd.DecodeArgs(r.Args)
			if err != nil || a != in[i] {
				t.Errorf("result %d: args %s, want %+v (in order)", i, r.Args, in[i])
			}
			if !r.EnqueuedAt.Equal(rs[0].EnqueuedAt) || !r.RunAfter.Equal(r.EnqueuedAt) {
				t.Errorf("result %d: enqueued %v run after %v; want the batch's enqueue time %v", i, r.EnqueuedAt, r.RunAfter, rs[0].EnqueuedAt)
			}
			if seen[r.ID] {
				t.Errorf("duplicate id %s", r.ID)
			}
			seen[r.ID] = true
			got, err := b.GetResult(ctx, r.ID)
			if err != nil {
				t.Fatalf("GetResult: %v", err)
			}
			if diff := cmp.Diff(r.Raw(), got); diff != "" {
				t.Errorf("result %d (-want +got):\n%s", i, diff)
			}
		}
		if n := enq.count(); n != len(in) {
			t.Errorf("%d TaskEnqueued signals, want %d", n, len(in))
		}
		dbtDrain(t, b)
		for i, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if v, err := r.Value(); err != nil || v.Sum != in[i].A+in[i].B {
				t.Errorf("result %d: Value() = %+v, %v", i, v, err)
			}
		}
	})
}

func TestRunAfterAndTimesUTC(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		if dbtIsPostgres(dsn) {
			// A session time zone far from UTC must change nothing.
			dsn += "&timezone=Asia%2FKolkata"
		}
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))

		// Default: run_after is the enqueue time, stored as such.
		r0, err := task.Enqueue(ctx, dbtArgs{})
		if err != nil {
			t.Fatal(err)
		}
		if !r0.RunAfter.Equal(r0.EnqueuedAt) {
			t.Errorf("RunAfter %v, want the enqueue time %v", r0.RunAfter, r0.EnqueuedAt)
		}

		// An absolute time in another zone is stored in UTC.
		zone := time.FixedZone("UTC+5", 5*3600)
		at := time.Date(2100, 1, 2, 8, 4, 5, 123456000, zone)
		r1, err := task.Using(tasks.WithRunAfter(at)).Enqueue(ctx, dbtArgs{})
		if err != nil {
			t.Fatal(err)
		}
		if !r1.RunAfter.Equal(at) || r1.RunAfter.Location() != time.UTC {
			t.Errorf("RunAfter = %v, want %v in UTC", r1.RunAfter, at)
		}
		// A delay counts from the enqueue time.
		r2, err := task.Using(tasks.WithDelay(time.Hour)).Enqueue(ctx, dbtArgs{})
		if err != nil {
			t.Fatal(err)
		}
		if d := r2.RunAfter.Sub(r2.EnqueuedAt); d < time.Hour-time.Second || d > time.Hour+time.Second {
			t.Errorf("RunAfter - EnqueuedAt = %v, want 1h", d)
		}

		for _, r := range []*tasks.Result[dbtSum]{r0, r1, r2} {
			got, err := b.GetResult(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(r.Raw(), got); diff != "" {
				t.Errorf("stored (-want +got):\n%s", diff)
			}
			dbtWantUTC(t, got)
		}

		// What the database holds is the UTC wall clock.
		q := `SELECT run_after FROM gotasks_task WHERE id = $1`
		if dbtIsPostgres(dsn) {
			q = `SELECT (run_after AT TIME ZONE 'UTC')::text FROM gotasks_task WHERE id = $1`
		}
		var stored string
		if err := b.DB().DB.QueryRowContext(ctx, q, r1.ID).Scan(&stored); err != nil {
			t.Fatal(err)
		}
		if want := "2100-01-02 03:04:05.123456"; stored != want {
			t.Errorf("stored run_after %q, want %q (UTC)", stored, want)
		}

		// Deferred tasks are not run before their time; a due one is.
		dbtDrain(t, b)
		for _, c := range []struct {
			r    *tasks.Result[dbtSum]
			want tasks.Status
		}{{r0, tasks.StatusSuccessful}, {r1, tasks.StatusReady}, {r2, tasks.StatusReady}} {
			if err := c.r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if c.r.Status != c.want {
				t.Errorf("%s (run after %v): status %s, want %s", c.r.ID, c.r.RunAfter, c.r.Status, c.want)
			}
			dbtWantUTC(t, &c.r.RawResult)
		}
	})
}

func TestPriorityCheck(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		for _, p := range []int{tasks.MinPriority, -1, 0, 1, tasks.MaxPriority} {
			r, err := task.Using(tasks.WithPriority(p)).Enqueue(ctx, dbtArgs{})
			if err != nil {
				t.Fatalf("priority %d: %v", p, err)
			}
			if got, err := b.GetResult(ctx, r.ID); err != nil || got.Priority != p {
				t.Errorf("priority %d stored as %v (%v)", p, got, err)
			}
		}
		for _, p := range []int{tasks.MinPriority - 1, tasks.MaxPriority + 1, 1000} {
			if _, err := task.Using(tasks.WithPriority(p)).Enqueue(ctx, dbtArgs{}); !errors.Is(err, tasks.ErrInvalidTask) {
				t.Errorf("priority %d: %v, want ErrInvalidTask", p, err)
			}
		}
		// The table's CHECK constraint holds even for a request that skipped
		// validation.
		for _, p := range []int{101, -101} {
			req := &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: dbtAdd.Name(), Args: json.RawMessage(`{}`),
				Priority: p, Queue: tasks.DefaultQueue}
			_, err := b.Enqueue(ctx, req)
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), "check") {
				t.Errorf("Enqueue of priority %d bypassing validation: %v, want a CHECK constraint error", p, err)
			}
			if _, err := b.GetResult(ctx, req.ID); !errors.Is(err, tasks.ErrResultNotFound) {
				t.Errorf("priority %d row: %v, want ErrResultNotFound", p, err)
			}
		}
		var n int
		if err := b.DB().QueryRowContext(ctx, `SELECT count(*) FROM gotasks_task WHERE priority NOT BETWEEN -100 AND 100`).Scan(&n); err != nil || n != 0 {
			t.Errorf("%d rows out of range (%v)", n, err)
		}
	})
}

func TestWaitWokenByWorker(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtGated.Using(tasks.WithBackend(b.Name()))
		started := dbtRecord(t, signals.TaskStarted, b.Name())
		finished := dbtRecord(t, signals.TaskFinished, b.Name())

		// Wait on a finished handle returns at once; on a READY task without
		// a worker it ends with its context.
		key, release := dbtGate(t)
		res, err := task.Enqueue(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
		err = res.Wait(short)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Wait without a worker: %v, want context.DeadlineExceeded", err)
		}
		if res.Status != tasks.StatusReady {
			t.Errorf("status after a failed Wait: %s", res.Status)
		}

		// A second backend on the same database waits too: on PostgreSQL it
		// is woken through LISTEN/NOTIFY, as another process would be.
		var other *database.Backend
		if dbtIsPostgres(dsn) {
			other = dbtOpen(t, dsn, database.WithName(b.Name()))
		}

		dbtStartWorker(t, b)
		started.next(t, res.ID)

		type waited struct {
			at  time.Time
			r   *tasks.RawResult
			err error
		}
		waitDone := make(chan waited, 1)
		otherDone := make(chan waited, 1)
		id := res.ID
		waitStart := time.Now()
		go func() {
			err := res.Wait(ctx)
			waitDone <- waited{at: time.Now(), err: err}
		}()
		if other != nil {
			go func() {
				r, err := other.WaitResult(ctx, id)
				otherDone <- waited{at: time.Now(), r: r, err: err}
			}()
		}
		// Hold the task for 3 s so that the waiters' backstop polls have
		// backed off (to 1-2 s) and the release falls between two polls (the
		// next one is at least 550 ms away): a waiter that returns within a
		// few hundred milliseconds of the release was woken by the worker's
		// notice, not by its poll. This is a deliberate delay, not a wait
		// for a condition.
		<-time.After(time.Until(waitStart.Add(3 * time.Second)))
		releasedAt := time.Now()
		release()
		fin := finished.next(t, id)
		if fin.Status != tasks.StatusSuccessful {
			t.Fatalf("TaskFinished with status %s", fin.Status)
		}
		w := <-waitDone
		if w.err != nil {
			t.Fatalf("Wait: %v", w.err)
		}
		latency := w.at.Sub(releasedAt)
		t.Logf("Wait returned %v after the task was released (run, recorded, notified)", latency)
		if latency > 400*time.Millisecond {
			t.Errorf("Wait returned %v after the task was released: not woken by the worker", latency)
		}
		if res.Status != tasks.StatusSuccessful {
			t.Errorf("status after Wait: %s", res.Status)
		}
		if v, err := res.Value(); err != nil || v != key {
			t.Errorf("Value() = %q, %v; want %q", v, err, key)
		}
		if err := res.Wait(ctx); err != nil {
			t.Errorf("Wait on a finished handle: %v", err)
		}
		if other != nil {
			o := <-otherDone
			if o.err != nil {
				t.Fatalf("WaitResult on a second backend: %v", o.err)
			}
			latency := o.at.Sub(releasedAt)
			t.Logf("WaitResult on a second backend (NOTIFY) returned %v after the task was released", latency)
			if latency > 400*time.Millisecond {
				t.Errorf("WaitResult on a second backend returned %v after the task was released: not woken by NOTIFY", latency)
			}
			if diff := cmp.Diff(res.Raw(), o.r); diff != "" {
				t.Errorf("WaitResult (-want +got):\n%s", diff)
			}
		}
	})
}

func TestCancelAndLookupErrors(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		started := dbtRecord(t, signals.TaskStarted, b.Name())

		// Cancel of READY: CANCELLED, never runs.
		key := dbtName(t)
		res, err := task.Enqueue(ctx, dbtArgs{A: 1, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if err := res.Cancel(ctx); err != nil {
			t.Fatalf("Cancel of a READY task: %v", err)
		}
		if res.Status != tasks.StatusCancelled || res.FinishedAt == nil {
			t.Errorf("after Cancel: status %s, finished %v; want CANCELLED with a finish time", res.Status, res.FinishedAt)
		}
		if _, err := res.Value(); !errors.Is(err, tasks.ErrTaskCancelled) {
			t.Errorf("Value() of a cancelled task: %v, want ErrTaskCancelled", err)
		}
		// Finished: cancelling again fails.
		if err := res.Cancel(ctx); !errors.Is(err, tasks.ErrNotCancellable) {
			t.Errorf("second Cancel: %v, want ErrNotCancellable", err)
		}

		done, err := task.Enqueue(ctx, dbtArgs{A: 2})
		if err != nil {
			t.Fatal(err)
		}
		dbtDrain(t, b)
		if n := dbtRuns(key); n != 0 {
			t.Errorf("the cancelled task ran %d times", n)
		}
		for _, id := range started.all() {
			if id == res.ID {
				t.Error("TaskStarted was sent for the cancelled task")
			}
		}
		got, err := b.GetResult(ctx, res.ID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(res.Raw(), got); diff != "" {
			t.Errorf("cancelled result after a worker ran (-want +got):\n%s", diff)
		}
		if err := done.Refresh(ctx); err != nil || done.Status != tasks.StatusSuccessful {
			t.Fatalf("other task: %s, %v", done.Status, err)
		}
		if err := done.Cancel(ctx); !errors.Is(err, tasks.ErrNotCancellable) {
			t.Errorf("Cancel of a SUCCESSFUL task: %v, want ErrNotCancellable", err)
		}
		if err := b.Cancel(ctx, done.ID); !errors.Is(err, tasks.ErrNotCancellable) {
			t.Errorf("Backend.Cancel of a SUCCESSFUL task: %v, want ErrNotCancellable", err)
		}
		if got, _ := b.GetResult(ctx, done.ID); got == nil || got.Status != tasks.StatusSuccessful {
			t.Errorf("a refused Cancel changed the task: %+v", got)
		}

		// Cancel of RUNNING is refused too.
		gkey, release := dbtGate(t)
		running, err := dbtGated.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, gkey)
		if err != nil {
			t.Fatal(err)
		}
		dbtStartWorker(t, b)
		started.next(t, running.ID)
		if err := running.Cancel(ctx); !errors.Is(err, tasks.ErrNotCancellable) {
			t.Errorf("Cancel of a RUNNING task: %v, want ErrNotCancellable", err)
		}
		release()
		if err := running.Wait(ctx); err != nil || running.Status != tasks.StatusSuccessful {
			t.Errorf("the running task after a refused Cancel: %s, %v", running.Status, err)
		}

		// Unknown ids.
		const unknown = "0000-no-such-task"
		if _, err := b.GetResult(ctx, unknown); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("GetResult(unknown): %v, want ErrResultNotFound", err)
		}
		if _, err := task.GetResult(ctx, unknown); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("typed GetResult(unknown): %v, want ErrResultNotFound", err)
		}
		if err := b.Cancel(ctx, unknown); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("Cancel(unknown): %v, want ErrResultNotFound", err)
		}
		// Another task's id.
		if _, err := dbtOther.Using(tasks.WithBackend(b.Name())).GetResult(ctx, res.ID); !errors.Is(err, tasks.ErrResultMismatch) {
			t.Errorf("GetResult of another task's id: %v, want ErrResultMismatch", err)
		}
		// Another backend sharing the table sees none of this backend's rows.
		b2 := dbtOpen(t, dsn)
		if _, err := b2.GetResult(ctx, res.ID); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("GetResult on another backend: %v, want ErrResultNotFound", err)
		}
		if err := b2.Cancel(ctx, res.ID); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("Cancel on another backend: %v, want ErrResultNotFound", err)
		}
	})
}

func TestListFilter(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		add := dbtAdd.Using(tasks.WithBackend(b.Name()))
		var all []*tasks.RawResult
		enqueue := func(task *tasks.Task[dbtArgs, dbtSum], n int) []*tasks.RawResult {
			t.Helper()
			args := make([]dbtArgs, n)
			for i := range args {
				args[i].A = i
			}
			rs, err := task.EnqueueMany(ctx, args)
			if err != nil {
				t.Fatal(err)
			}
			var raws []*tasks.RawResult
			for _, r := range rs {
				raws = append(raws, r.Raw())
			}
			all = append(all, raws...)
			return raws
		}
		reports := enqueue(add.Using(tasks.WithCreator("user:1"), tasks.WithVerboseName("Monthly report")), 3)
		emails1 := enqueue(add.Using(tasks.WithCreator("user:1"), tasks.WithVerboseName("Email"), tasks.WithQueue("mail")), 1)
		emails2 := enqueue(add.Using(tasks.WithCreator("user:2"), tasks.WithVerboseName("Email"), tasks.WithQueue("mail")), 2)
		other, err := dbtOther.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, other.Raw())
		// Rows of another backend in the same table are never listed.
		b2 := dbtOpen(t, dsn)
		if _, err := dbtAdd.Using(tasks.WithBackend(b2.Name()), tasks.WithCreator("user:1")).Enqueue(ctx, dbtArgs{}); err != nil {
			t.Fatal(err)
		}

		cat := func(xs ...[]*tasks.RawResult) []*tasks.RawResult { return slices.Concat(xs...) }
		for _, c := range []struct {
			name string
			f    database.Filter
			want []*tasks.RawResult
		}{
			{"all", database.Filter{}, all},
			{"creator", database.Filter{Creator: "user:1"}, cat(reports, emails1)},
			{"verbose name", database.Filter{VerboseName: "Email"}, cat(emails1, emails2)},
			{"creator and verbose name", database.Filter{Creator: "user:2", VerboseName: "Email"}, emails2},
			{"queue", database.Filter{Queue: "mail"}, cat(emails1, emails2)},
			{"task name", database.Filter{TaskName: dbtOther.Name()}, []*tasks.RawResult{other.Raw()}},
			{"status", database.Filter{Statuses: []tasks.Status{tasks.StatusReady}}, all},
			{"no match", database.Filter{Creator: "user:3"}, nil},
		} {
			got, err := b.List(ctx, c.f)
			if err != nil {
				t.Fatalf("%s: List: %v", c.name, err)
			}
			byID := func(rs []*tasks.RawResult) []*tasks.RawResult {
				rs = slices.Clone(rs)
				slices.SortFunc(rs, func(a, b *tasks.RawResult) int { return strings.Compare(a.ID, b.ID) })
				return rs
			}
			if diff := cmp.Diff(byID(c.want), byID(got)); diff != "" {
				t.Errorf("%s: List(%+v) (-want +got):\n%s", c.name, c.f, diff)
			}
			for i := 1; i < len(got); i++ {
				if got[i].EnqueuedAt.After(got[i-1].EnqueuedAt) {
					t.Errorf("%s: not newest first at %d", c.name, i)
				}
			}
		}

		if err := b.Cancel(ctx, reports[0].ID); err != nil {
			t.Fatal(err)
		}
		got, err := b.List(ctx, database.Filter{Creator: "user:1", Statuses: []tasks.Status{tasks.StatusCancelled}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{reports[0].ID}, dbtIDs(got)); diff != "" {
			t.Errorf("cancelled by user:1 (-want +got):\n%s", diff)
		}
		got, err = b.List(ctx, database.Filter{Limit: 2})
		if err != nil || len(got) != 2 {
			t.Errorf("Limit 2: %d results, %v", len(got), err)
		}
		got, err = b.List(ctx, database.Filter{EnqueuedAfter: other.EnqueuedAt.Add(-time.Microsecond), TaskName: dbtOther.Name()})
		if err != nil || len(got) != 1 {
			t.Errorf("EnqueuedAfter: %d results, %v", len(got), err)
		}
		got, err = b.List(ctx, database.Filter{EnqueuedBefore: reports[0].EnqueuedAt})
		if err != nil || len(got) != 0 {
			t.Errorf("EnqueuedBefore the first: %d results, %v", len(got), err)
		}
	})
}

// dbtLogCapture records the log records of a logger at every level.
type dbtLogCapture struct {
	mu   sync.Mutex
	recs []map[string]string // the message under "msg", the level under "level"
}

func (h *dbtLogCapture) Enabled(context.Context, slog.Level) bool { return true }
func (h *dbtLogCapture) Handle(_ context.Context, r slog.Record) error {
	m := map[string]string{"msg": r.Message, "level": r.Level.String()}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	h.recs = append(h.recs, m)
	h.mu.Unlock()
	return nil
}
func (h *dbtLogCapture) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *dbtLogCapture) WithGroup(string) slog.Handler      { return h }

// take returns the records with message msg and forgets every record.
func (h *dbtLogCapture) take(msg string) []map[string]string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []map[string]string
	for _, r := range h.recs {
		if r["msg"] == msg {
			out = append(out, r)
		}
	}
	h.recs = nil
	return out
}

// Enqueues are logged at DEBUG on the backend's logger: one line per task
// with its id, task, queue and backend; one line with the count for a big
// batch; "deferred to commit" for a deferred enqueue, then the enqueue at
// the commit.
func TestEnqueueLogs(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		logs := &dbtLogCapture{}
		b := dbtOpen(t, dsn, database.WithLogger(slog.New(logs)))
		task := dbtAdd.Using(tasks.WithBackend(b.Name()), tasks.WithQueue("q1"))
		line := func(id, mode string) map[string]string {
			m := map[string]string{"level": "DEBUG", "msg": "gotasks: task enqueued", "id": id,
				"task": dbtAdd.Name(), "queue": "q1", "backend": b.Name()}
			if mode != "" {
				m["mode"] = mode
			}
			if mode == "deferred to commit" {
				m["msg"] = "gotasks: task deferred to commit"
			}
			return m
		}

		r, err := task.Enqueue(ctx, dbtArgs{A: 1})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]map[string]string{line(r.ID, "")}, logs.take("gotasks: task enqueued")); diff != "" {
			t.Errorf("Enqueue's log (-want +got):\n%s", diff)
		}

		rs, err := task.EnqueueMany(ctx, []dbtArgs{{A: 1}, {A: 2}})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]map[string]string{line(rs[0].ID, ""), line(rs[1].ID, "")}, logs.take("gotasks: task enqueued")); diff != "" {
			t.Errorf("small EnqueueMany's log (-want +got):\n%s", diff)
		}

		big, err := task.EnqueueMany(ctx, make([]dbtArgs, 50))
		if err != nil {
			t.Fatal(err)
		}
		want := []map[string]string{{"level": "DEBUG", "msg": "gotasks: tasks enqueued", "count": "50",
			"task": dbtAdd.Name(), "queue": "q1", "backend": b.Name(), "first_id": big[0].ID, "last_id": big[49].ID}}
		if diff := cmp.Diff(want, logs.take("gotasks: tasks enqueued")); diff != "" {
			t.Errorf("big EnqueueMany's log (-want +got):\n%s", diff)
		}

		// In the application's transaction.
		tx, err := b.DB().BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		r, err = task.Enqueue(database.WithTx(ctx, tx), dbtArgs{A: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]map[string]string{line(r.ID, "in transaction")}, logs.take("gotasks: task enqueued")); diff != "" {
			t.Errorf("the log of an enqueue in the application's transaction (-want +got):\n%s", diff)
		}

		// Deferred to the commit of a transaction the backend cannot join.
		err = database.RunInTx(ctx, dbtOpen(t, dbtest.DSN(t, dbtDialect(dsn))).DB(), func(txCtx context.Context, _ bun.Tx) error {
			r, err = task.Enqueue(txCtx, dbtArgs{A: 1})
			if err != nil {
				return err
			}
			if diff := cmp.Diff([]map[string]string{line(r.ID, "deferred to commit")}, logs.take("gotasks: task deferred to commit")); diff != "" {
				t.Errorf("the log of a deferred enqueue (-want +got):\n%s", diff)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]map[string]string{line(r.ID, "")}, logs.take("gotasks: task enqueued")); diff != "" {
			t.Errorf("the log at the commit (-want +got):\n%s", diff)
		}
	})
}

// TestMetadataCheckedByBackend: a request that reaches the backend directly,
// without Task.Enqueue, still cannot store metadata that would not read
// back (invalid UTF-8 is replaced by the JSON encoder) or break the limits.
func TestMetadataCheckedByBackend(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		for name, md := range map[string]map[string]string{
			"invalid UTF-8": {"k": "\xff"},
			"empty key":     {"": "v"},
		} {
			req := &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: dbtAdd.Name(), Args: json.RawMessage(`{}`),
				Queue: tasks.DefaultQueue, Metadata: md}
			if _, err := b.Enqueue(ctx, req); !errors.Is(err, tasks.ErrInvalidTask) {
				t.Errorf("%s: Enqueue = %v, want ErrInvalidTask", name, err)
			}
			if _, err := b.GetResult(ctx, req.ID); !errors.Is(err, tasks.ErrResultNotFound) {
				t.Errorf("%s: GetResult = %v, want ErrResultNotFound", name, err)
			}
		}
	})
}
