package reliability_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/reliability/internal/reltasks"
	"github.com/gotasks/gotasks/tasks"
)

// errList collects the errors of background goroutines.
type errList struct {
	mu   sync.Mutex
	errs []error
	n    int
}

func (l *errList) add(err error) {
	if err == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	if len(l.errs) < 20 {
		l.errs = append(l.errs, err)
	}
}

func (l *errList) check(t *testing.T, what string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, err := range l.errs {
		t.Errorf("%s: %v", what, err)
	}
	if l.n > len(l.errs) {
		t.Errorf("%s: … %d errors in all", what, l.n)
	}
}

// TestManyWorkers runs 4 worker processes while 2 goroutines enqueue in
// batches and another reads results: every task runs exactly once, never
// in two places at once, and the totals match. On SQLite no process ever
// sees "database is locked".
func TestManyWorkers(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forDialects(t, func(t *testing.T, dialect string) {
		total := 2000
		if long() {
			total = 9000 // the checks read results with one List (≤ 10,000)
		}
		e := newEnv(t, dialect, true)
		ctx := context.Background()
		const workers = 4
		var procs []*proc
		for i := range workers {
			procs = append(procs, e.startWorker(fmt.Sprintf("many-%d", i), "--concurrency", "10",
				"--heartbeat", "500ms", "--rescue-after", "5s"))
		}

		var (
			mu       sync.Mutex
			ids      = map[string]string{}
			idList   []string
			enqErrs  errList
			readErrs errList
			wg       sync.WaitGroup
		)
		start := time.Now()
		for g := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				rng := rand.New(rand.NewPCG(uint64(g), 7))
				for i := 0; i < total/2; {
					n := min(1+rng.IntN(50), total/2-i)
					batch := make([]reltasks.RecordArgs, n)
					for j := range batch {
						batch[j] = reltasks.RecordArgs{Key: fmt.Sprintf("many-%d-%05d", g, i+j), SleepMS: 1 + (i+j)%10}
					}
					rs, err := e.task.EnqueueMany(ctx, batch)
					if err != nil {
						enqErrs.add(err)
						time.Sleep(10 * time.Millisecond)
						continue
					}
					mu.Lock()
					for j, r := range rs {
						ids[batch[j].Key] = r.ID
						idList = append(idList, r.ID)
					}
					mu.Unlock()
					i += n
					time.Sleep(time.Duration(rng.IntN(5)) * time.Millisecond)
				}
			}()
		}
		readDone := make(chan struct{})
		stopReads := make(chan struct{})
		go func() {
			defer close(readDone)
			rng := rand.New(rand.NewPCG(9, 9))
			for {
				select {
				case <-stopReads:
					return
				default:
				}
				mu.Lock()
				var id string
				if len(idList) > 0 {
					id = idList[rng.IntN(len(idList))]
				}
				mu.Unlock()
				if id != "" {
					if _, err := e.task.GetResult(ctx, id); err != nil {
						readErrs.add(err)
					}
				}
				if _, err := e.b.List(ctx, database.Filter{Statuses: []tasks.Status{tasks.StatusRunning}, Limit: 50}); err != nil {
					readErrs.add(err)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		wg.Wait()
		enqueued := time.Since(start)
		e.waitSuccessful(total, 3*time.Minute)
		elapsed := time.Since(start)
		close(stopReads)
		<-readDone
		for _, p := range procs {
			p.signal(t, syscall.SIGTERM)
		}
		for _, p := range procs {
			if code := p.wait(t, 30*time.Second); code != 0 {
				t.Errorf("worker %s exited %d after SIGTERM, want 0", p.id, code)
			}
		}

		enqErrs.check(t, "enqueue")
		readErrs.check(t, "read")
		checkNoLocked(t, procs...)
		rs := e.results(ctx)
		xs, byKey := e.executions(ctx)
		checkNoOverlap(t, xs, nil)
		checkRecordedOnce(t, rs, byKey)
		var dups, missing int
		for key, id := range ids {
			if rs[id] == nil || rs[id].Status != tasks.StatusSuccessful {
				t.Errorf("%s (%s): %v, want SUCCESSFUL", key, id, rs[id])
			}
			switch n := len(byKey[key]); {
			case n == 0:
				missing++
				t.Errorf("%s never ran", key)
			case n > 1:
				dups++
				t.Errorf("%s ran %d times without any failure injected: %v", key, n, byKey[key])
			}
		}
		if len(ids) != total || len(rs) != total || len(xs) != total {
			t.Errorf("totals: %d enqueued, %d results, %d executions; want %d each", len(ids), len(rs), len(xs), total)
		}
		perWorker := map[string]int{}
		for _, x := range xs {
			perWorker[x.Worker]++
		}
		t.Logf("FIGURES many-workers/%s: tasks=%d workers=%d enqueuers=2 enqueue_time=%v total_time=%v duplicates=%d missing=%d overlaps=0 per_worker=%v",
			dialect, total, workers, enqueued.Round(time.Millisecond), elapsed.Round(time.Millisecond), dups, missing, sortedCounts(perWorker))
	})
}

func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s:%d", k, m[k])
	}
	return b.String()
}

// TestSQLiteNoLocked: a worker process holds the SQLite file and writes
// (claims, completions, heartbeats, the tasks' own log) while this process
// writes too — single and batch enqueues, enqueues inside transactions that
// hold the write lock for a while, cancels, prunes — and reads. No one ever
// gets "database is locked".
func TestSQLiteNoLocked(t *testing.T) {
	skipShort(t)
	t.Parallel()
	e := newEnv(t, "sqlite", false)
	ctx := context.Background()
	w := e.startWorker("lock-w", "--concurrency", "20")
	per := 60 // operations per writer (a -race test binary runs SQLite ~20 times slower)
	if long() {
		per = 600
	}
	var (
		errs errList
		wg   sync.WaitGroup
		mu   sync.Mutex
		ids  []string
	)
	keep := func(rs []*tasks.Result[reltasks.RecordResult]) {
		mu.Lock()
		defer mu.Unlock()
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
	}
	run := func(f func(i int) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				errs.add(f(i))
			}
		}()
	}
	run(func(i int) error { // single enqueues
		r, err := e.task.Enqueue(ctx, reltasks.RecordArgs{Key: fmt.Sprintf("single-%d", i), SleepMS: 2})
		if err == nil {
			keep([]*tasks.Result[reltasks.RecordResult]{r})
		}
		return err
	})
	run(func(i int) error { // batches
		rs, err := e.task.EnqueueMany(ctx, recordArgs(fmt.Sprintf("batch-%d", i), 10, func(int) int { return 2 }))
		keep(rs)
		return err
	})
	run(func(i int) error { // transactions that hold the write lock for 20 ms
		if i%5 != 0 {
			return nil
		}
		return e.b.RunInTx(ctx, func(ctx context.Context, tx bun.Tx) error {
			r, err := e.task.Enqueue(ctx, reltasks.RecordArgs{Key: fmt.Sprintf("tx-%d", i), SleepMS: 2})
			if err != nil {
				return err
			}
			time.Sleep(20 * time.Millisecond)
			keep([]*tasks.Result[reltasks.RecordResult]{r})
			return nil
		})
	})
	run(func(i int) error { // deferred tasks, cancelled
		r, err := e.task.Using(tasks.WithDelay(time.Hour)).Enqueue(ctx, reltasks.RecordArgs{Key: fmt.Sprintf("cancel-%d", i)})
		if err != nil {
			return err
		}
		return r.Cancel(ctx)
	})
	run(func(i int) error { // reads and prunes
		if i%3 == 0 {
			if _, err := e.b.List(ctx, database.Filter{Statuses: []tasks.Status{tasks.StatusReady}, Limit: 20}); err != nil {
				return err
			}
		}
		if i%10 == 0 {
			if _, err := e.b.Prune(ctx, database.PruneOptions{MinAge: time.Hour, BatchSize: 100}); err != nil {
				return err
			}
		}
		mu.Lock()
		var id string
		if len(ids) > 0 {
			id = ids[i%len(ids)]
		}
		mu.Unlock()
		if id == "" {
			return nil
		}
		_, err := e.b.GetResult(ctx, id)
		return err
	})
	wg.Wait()
	want := per + 10*per + per/5
	e.waitSuccessful(want, 2*time.Minute)
	w.signal(t, syscall.SIGTERM)
	if code := w.wait(t, 30*time.Second); code != 0 {
		t.Errorf("worker exited %d, want 0", code)
	}
	errs.check(t, "writer/reader")
	for _, err := range errs.errs {
		if reltasks.IsLocked(err.Error()) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("locking error surfaced: %v", err)
		}
	}
	checkNoLocked(t, w)
	c, err := e.counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if c[tasks.StatusSuccessful] != want || c[tasks.StatusCancelled] != per || c[tasks.StatusReady]+c[tasks.StatusRunning]+c[tasks.StatusFailed] != 0 {
		t.Errorf("statuses %v, want %d SUCCESSFUL and %d CANCELLED", c, want, per)
	}
	_, byKey := e.executions(ctx)
	if len(byKey) != want {
		t.Errorf("%d keys executed, want %d", len(byKey), want)
	}
	ran := slices.Collect(func(yield func(string) bool) {
		for k := range byKey {
			if strings.HasPrefix(k, "cancel-") && !yield(k) {
				return
			}
		}
	})
	if len(ran) > 0 {
		t.Errorf("cancelled tasks ran: %v", ran)
	}
	t.Logf("FIGURES sqlite-no-locked: tasks=%d cancelled=%d writer_errors=%d locked_in_worker_log=%d",
		want, per, errs.n, len(w.logLines("locked")))
}
