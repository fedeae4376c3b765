package database_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// flowArgs: hold for MS milliseconds under the overlap detector of Key.
type flowArgs struct {
	Key string `json:"key"`
	MS  int    `json:"ms"`
}

// flowOverlap detects overlapping executions: how many run now, and the
// most that ever ran at once.
type flowOverlap struct {
	cur, max atomic.Int64
}

var flowDetectors sync.Map // key → *flowOverlap

func flowDetector(key string) *flowOverlap {
	d, _ := flowDetectors.LoadOrStore(key, new(flowOverlap))
	return d.(*flowOverlap)
}

var flowHold = tasks.Define("database_test.flow_hold", func(ctx context.Context, a flowArgs) (int, error) {
	d := flowDetector(a.Key)
	n := d.cur.Add(1)
	defer d.cur.Add(-1)
	for m := d.max.Load(); n > m && !d.max.CompareAndSwap(m, n); m = d.max.Load() {
	}
	select {
	case <-time.After(time.Duration(a.MS) * time.Millisecond):
		return a.MS, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// flowEnqueue enqueues n flowHold tasks into queue, detected under key.
func flowEnqueue(t *testing.T, b *database.Backend, queue, key string, n, ms int) []*tasks.Result[int] {
	t.Helper()
	args := make([]flowArgs, n)
	for i := range args {
		args[i] = flowArgs{Key: key, MS: ms}
	}
	rs, err := wkOn(flowHold, b, tasks.WithQueue(queue)).EnqueueMany(context.Background(), args)
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return rs
}

func TestFlow(t *testing.T) {
	t.Parallel()

	wkBehaviour(t, "GlobalLimitAcrossWorkers", func(t *testing.T, bundle *testBundle) {
		ctx := context.Background()
		b := bundle.b
		if err := b.SetQueueLimit(ctx, "limited", 2); err != nil {
			t.Fatal(err)
		}
		limited, other := wkName(t)+"/limited", wkName(t)+"/other"
		rs := append(flowEnqueue(t, b, "limited", limited, 20, 50), flowEnqueue(t, b, "other", other, 20, 50)...)
		cfg := database.WorkerConfig{Concurrency: 10, PollInterval: 50 * time.Millisecond}
		wkStart(t, b, cfg)
		for range 2 { // two more workers, as other processes would open the backend
			wkStart(t, wkOpenNamed(t, bundle.dsn, b.Name()), cfg)
		}
		for _, r := range rs {
			wkWait(t, r)
		}
		if got := flowDetector(limited).max.Load(); got > 2 || got < 1 {
			t.Errorf("limited queue: at most %d ran at once, want 1 or 2", got)
		}
		if got := flowDetector(other).max.Load(); got < 3 {
			t.Errorf("other queue: at most %d ran at once, want it not held to the limit", got)
		}
		qs, err := b.ListQueues(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []database.QueueInfo{{Name: "limited", MaxRunning: 2}, {Name: "other"}}
		if diff := cmp.Diff(want, qs); diff != "" {
			t.Errorf("ListQueues (-want +got):\n%s", diff)
		}
		if err := b.SetQueueLimit(ctx, "limited", 0); err != nil {
			t.Fatal(err)
		}
		qs, _ = b.ListQueues(ctx)
		if diff := cmp.Diff([]database.QueueInfo{{Name: "limited"}, {Name: "other"}}, qs); diff != "" {
			t.Errorf("ListQueues after removing the limit (-want +got):\n%s", diff)
		}
	})

	wkBehaviour(t, "WorkerQueueConcurrency", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		emails, def := wkName(t)+"/emails", wkName(t)+"/default"
		rs := append(flowEnqueue(t, b, "emails", emails, 6, 40), flowEnqueue(t, b, "default", def, 10, 40)...)
		wkStart(t, b, database.WorkerConfig{Concurrency: 10, PollInterval: 50 * time.Millisecond,
			QueueConcurrency: map[string]int{"emails": 1}})
		for _, r := range rs {
			wkWait(t, r)
		}
		if got := flowDetector(emails).max.Load(); got != 1 {
			t.Errorf("emails: at most %d ran at once, want 1", got)
		}
		if got := flowDetector(def).max.Load(); got < 2 {
			t.Errorf("default: at most %d ran at once, want them in parallel", got)
		}
	})

	wkBehaviour(t, "RateLimit", func(t *testing.T, bundle *testBundle) {
		ctx := context.Background()
		b := bundle.b
		const n, per = 5, time.Second
		if err := b.SetQueueRateLimit(ctx, "rated", n, per); err != nil {
			t.Fatal(err)
		}
		rs := flowEnqueue(t, b, "rated", wkName(t), 3*n, 1)
		cfg := database.WorkerConfig{Concurrency: 10, PollInterval: 20 * time.Millisecond}
		wkStart(t, b, cfg)
		wkStart(t, wkOpenNamed(t, bundle.dsn, b.Name()), cfg)
		var claims []time.Time // each attempt's claim time: what the window counts
		for _, r := range rs {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := r.Wait(ctx)
			cancel()
			if err != nil {
				t.Fatalf("wait: %v", err)
			}
			claims = append(claims, *wkGet(t, b, r.ID).LastAttemptedAt)
		}
		slices.SortFunc(claims, func(x, y time.Time) int { return x.Compare(y) })
		// Fixed windows, as the claim opens them: at most n each.
		var sizes []int
		for i := 0; i < len(claims); {
			j := i
			for j < len(claims) && claims[j].Before(claims[i].Add(per)) {
				j++
			}
			sizes = append(sizes, j-i)
			i = j
		}
		if diff := cmp.Diff([]int{n, n, n}, sizes); diff != "" {
			t.Errorf("claims per window (-want +got):\n%s\nclaims: %v", diff, claims)
		}
		// Any interval of one period: at most 2n (the documented tolerance).
		for i := range claims {
			k := 0
			for _, c := range claims[i:] {
				if c.Before(claims[i].Add(per)) {
					k++
				}
			}
			if k > 2*n {
				t.Errorf("%d claims within %v of %v, want at most %d", k, per, claims[i], 2*n)
			}
		}
	})

	// A statement of the claim round that fails rolls back the round: the
	// rows the statements before it claimed are not left RUNNING with no
	// worker running them (a MaxAttempts 1 task would end FAILED unrun).
	wkBehaviour(t, "FailedStatementRollsBackTheRound", func(t *testing.T, bundle *testBundle) {
		ctx := context.Background()
		b := bundle.b
		// The claim of queue "zboom" fails: the capped queue "a" is claimed
		// first (its own statement), then the other queues, "zboom" among
		// them.
		boom := map[database.Dialect][]string{
			database.Postgres: {
				`CREATE FUNCTION flow_boom() RETURNS trigger LANGUAGE plpgsql AS $$
				BEGIN RAISE EXCEPTION 'flow test: boom'; END $$`,
				`CREATE TRIGGER flow_boom BEFORE UPDATE ON gotasks_task FOR EACH ROW
				WHEN (NEW.queue = 'zboom' AND NEW.status = 'RUNNING') EXECUTE FUNCTION flow_boom()`,
			},
			database.SQLite: {
				`CREATE TRIGGER flow_boom BEFORE UPDATE ON gotasks_task FOR EACH ROW
				WHEN NEW.queue = 'zboom' AND NEW.status = 'RUNNING'
				BEGIN SELECT RAISE(ABORT, 'flow test: boom'); END`,
			},
		}[b.Dialect()]
		for _, q := range boom {
			if _, err := b.DB().DB.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		capped := wkEnqueue(t, wkOn(flowHold, b, tasks.WithQueue("a"), tasks.WithMaxAttempts(1)), flowArgs{Key: wkName(t)})
		other := flowEnqueue(t, b, "zboom", wkName(t), 1, 1)[0]
		logs := &dbtLogCapture{}
		w := wkStart(t, b, database.WorkerConfig{Concurrency: 2, PollInterval: 20 * time.Millisecond,
			QueueConcurrency: map[string]int{"a": 1}, Logger: slog.New(logs)})
		failed := 0
		dbtest.WaitUntil(t, 10*time.Second, "two failed claim rounds", func() bool {
			for _, r := range logs.take("gotasks: claim failed; retrying") {
				if !strings.Contains(r["err"], "flow test: boom") {
					t.Errorf("claim failed with %s, want the trigger's error", r["err"])
				}
				failed++
			}
			return failed >= 2
		})
		if err := w.Stop(ctx); err != nil {
			t.Fatal(err)
		}
		for _, r := range []*tasks.RawResult{wkGet(t, b, capped.ID), wkGet(t, b, other.ID)} {
			if r.Status != tasks.StatusReady || r.Attempts != 0 {
				t.Errorf("%s (queue %s): %s after %d attempts, want READY and never attempted",
					r.ID, r.Queue, r.Status, r.Attempts)
			}
		}
	})

	// PostgreSQL: the claim locks the limited queues the worker claims
	// from, paused ones too (a resume cannot slip in between the lock and
	// the claim of the other queues), and not the others; it waits for a
	// lock at most the lock timeout, then fails and is retried.
	t.Run("LocksTheWorkersLimitedQueuesPausedOrNot", func(t *testing.T) {
		t.Parallel()
		ctx := context.Background()
		b := setup(t, dbtest.PostgresDSN(t)).b
		for _, q := range []string{"mine", "theirs"} {
			if err := b.SetQueueLimit(ctx, q, 5); err != nil {
				t.Fatal(err)
			}
		}
		lock := func(queue string) (unlock func()) {
			t.Helper()
			tx, err := b.DB().DB.BeginTx(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			var name string
			if err := tx.QueryRowContext(ctx, `SELECT name FROM gotasks_queue WHERE backend = $1 AND name = $2 FOR UPDATE`,
				b.Name(), queue).Scan(&name); err != nil {
				_ = tx.Rollback()
				t.Fatal(err)
			}
			return func() { _ = tx.Rollback() }
		}
		unlockTheirs := lock("theirs")
		defer unlockTheirs()
		logs := &dbtLogCapture{}
		wkStart(t, b, database.WorkerConfig{Concurrency: 2, PollInterval: 20 * time.Millisecond,
			ExcludeQueues: []string{"theirs"}, Logger: slog.New(logs)})
		wait := func(r *tasks.Result[int], within time.Duration, what string) {
			t.Helper()
			wctx, cancel := context.WithTimeout(ctx, within)
			defer cancel()
			if err := r.Wait(wctx); err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		wait(flowEnqueue(t, b, "mine", wkName(t), 1, 1)[0], 3*time.Second, // under the lock timeout
			"a task of the worker's limited queue while another limited queue is locked")

		if err := b.PauseQueue(ctx, "mine"); err != nil {
			t.Fatal(err)
		}
		unlockMine := lock("mine")
		r := flowEnqueue(t, b, "mine", wkName(t), 1, 1)[0]
		dbtest.WaitUntil(t, 20*time.Second, "a claim failing on the lock timeout", func() bool {
			for _, rec := range logs.take("gotasks: claim failed; retrying") {
				if strings.Contains(rec["err"], "lock timeout") {
					return true
				}
			}
			return false
		})
		unlockMine()
		if got := wkGet(t, b, r.ID); got.Status != tasks.StatusReady {
			t.Errorf("task of the paused queue: %s, want READY", got.Status)
		}
		if err := b.ResumeQueue(ctx, "mine"); err != nil {
			t.Fatal(err)
		}
		wait(r, 10*time.Second, "the task of the resumed queue")
	})

	t.Run("Validation", func(t *testing.T) {
		b := wkOpen(t, dbtest.DSN(t, "sqlite"))
		for _, err := range []error{
			b.SetQueueLimit(context.Background(), "q", -1),
			b.SetQueueRateLimit(context.Background(), "q", 1, 0),
		} {
			if !errors.Is(err, database.ErrBadFlowLimit) {
				t.Errorf("got %v, want ErrBadFlowLimit", err)
			}
		}
		_, err := database.NewWorker(b, database.WorkerConfig{QueueConcurrency: map[string]int{"q": 0}})
		if !errors.Is(err, tasks.ErrInvalidBackend) {
			t.Errorf("QueueConcurrency q=0: got %v, want ErrInvalidBackend", err)
		}
	})
}
