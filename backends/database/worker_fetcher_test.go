package database_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// TestWorkerFetcher: what a worker claims, in what order, when, and that
// no task is claimed twice (fetcher.go, with ahead.go and release.go).
func TestWorkerFetcher(t *testing.T) {
	t.Parallel()

	// ClaimOrder: priority DESC, run_after ASC, enqueued_at ASC; tasks not due
	// are not claimed.
	wkBehaviour(t, "ClaimOrder", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		rec := bundle.signals(t)
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

	// Queues: Queues selects, "*" and empty mean all, ExcludeQueues wins.
	wkBehaviour(t, "Queues", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
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

	// RunAfter: a deferred task is not claimed before it is due and is claimed
	// once it is.
	wkBehaviour(t, "RunAfter", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
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

	// NoDoubleClaim: several workers on separate backends (as in separate
	// processes) claim thousands of tasks; each runs exactly once.
	wkBehaviour(t, "NoDoubleClaim", func(t *testing.T, bundle *testBundle) {
		const (
			workers     = 4
			concurrency = 20
		)
		n := 3000
		if wkRaceEnabled() && strings.HasPrefix(bundle.dsn, "sqlite") {
			// The race detector slows the transpiled SQLite about twentyfold,
			// and four backends contend for its one write lock: 3000 tasks
			// take 40 s there (2 s without -race).
			n = 1000
		}
		b0 := bundle.b
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
				b = wkOpenNamed(t, bundle.dsn, b0.Name())
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

	// WakeUp: an idle worker polling once a minute starts a new task at once:
	// woken in-process on SQLite and by NOTIFY on PostgreSQL (the task is
	// enqueued through another backend there, so nothing else can wake it).
	wkBehaviour(t, "WakeUp", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		enq := b
		w := wkStart(t, b, database.WorkerConfig{PollInterval: time.Minute})
		if b.Dialect() == database.Postgres {
			enq = wkOpenNamed(t, bundle.dsn, b.Name())
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

	// ClaimAheadShortThenLong: a worker busy with short tasks claims ahead of
	// its free slots; when the next tasks turn out long, what it took ahead
	// goes back to the queue for another worker. Either way every task runs
	// once, on its first attempt, and its history names only the worker that
	// ran it.
	wkBehaviour(t, "ClaimAheadShortThenLong", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
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
