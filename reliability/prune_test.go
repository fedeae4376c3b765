package reliability_test

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// TestPruneUnderLoad prunes every finished result, in small batches, over
// and over, while two workers run tasks and more are enqueued: no READY or
// RUNNING task is lost (each runs exactly once and its outcome is
// recorded), deferred tasks stay, and what prune reports deleting adds up.
func TestPruneUnderLoad(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forDialects(t, func(t *testing.T, dialect string) {
		first, later := 1000, 500
		if long() {
			first, later = 5000, 5000
		}
		e := newEnv(t, dialect, true)
		ctx := context.Background()
		ids := e.enqueue(recordArgs("first", first, func(i int) int { return 1 + i%5 }))
		for k, id := range e.enqueue(recordArgs("long", 5, func(int) int { return 3000 })) {
			ids[k] = id // RUNNING through many prunes
		}
		deferred, err := e.task.Using(tasks.WithDelay(time.Hour)).EnqueueMany(ctx,
			recordArgs("deferred", 20, func(int) int { return 0 }))
		if err != nil {
			t.Fatal(err)
		}
		var procs []*proc
		for i := range 2 {
			procs = append(procs, e.startWorker(fmt.Sprintf("prune-w%d", i), "--concurrency", "10"))
		}

		var (
			mu      sync.Mutex
			total   database.PruneReport
			prunes  int
			pErrs   errList
			stop    = make(chan struct{})
			pruned  = make(chan struct{})
			enqDone = make(chan map[string]string)
		)
		go func() {
			defer close(pruned)
			for {
				select {
				case <-stop:
					return
				default:
				}
				rep, err := e.b.Prune(ctx, database.PruneOptions{MinAge: time.Microsecond, BatchSize: 50})
				pErrs.add(err)
				mu.Lock()
				total.Successful += rep.Successful
				total.Failed += rep.Failed
				total.Cancelled += rep.Cancelled
				total.Batches += rep.Batches
				prunes++
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
		}()
		go func() { // more tasks while pruning
			more := map[string]string{}
			for i := 0; i < later; i += 50 {
				args := recordArgs(fmt.Sprintf("later%03d", i/50), 50, func(j int) int { return 1 + j%5 })
				rs, err := e.task.EnqueueMany(ctx, args)
				if err != nil {
					pErrs.add(err)
					continue
				}
				for j, r := range rs {
					more[args[j].Key] = r.ID
				}
				time.Sleep(20 * time.Millisecond)
			}
			enqDone <- more
		}()
		for k, id := range <-enqDone {
			ids[k] = id
		}
		want := len(ids)
		waitUntil(t, 3*time.Minute, fmt.Sprintf("%d tasks executed", want), func(ctx context.Context) (bool, error) {
			var n int
			err := e.db.QueryRowContext(ctx, `SELECT count(DISTINCT task_key) FROM rel_exec WHERE outcome = 'ok'`).Scan(&n)
			return n == want, err
		})
		// Every outcome recorded: nothing READY or RUNNING but the deferred.
		waitUntil(t, time.Minute, "no task READY or RUNNING but the deferred ones", func(ctx context.Context) (bool, error) {
			c, err := e.counts(ctx)
			return c[tasks.StatusRunning] == 0 && c[tasks.StatusReady] == len(deferred), err
		})
		close(stop)
		<-pruned
		rep, err := e.b.Prune(ctx, database.PruneOptions{MinAge: time.Microsecond})
		if err != nil {
			t.Fatal(err)
		}
		total.Successful += rep.Successful
		total.Failed += rep.Failed
		total.Cancelled += rep.Cancelled
		for _, p := range procs {
			p.signal(t, syscall.SIGTERM)
		}
		for _, p := range procs {
			if code := p.wait(t, 30*time.Second); code != 0 {
				t.Errorf("worker %s exited %d, want 0", p.id, code)
			}
			for _, l := range p.logLines("outcome discarded") {
				t.Errorf("worker %s lost the claim of a running task: %s", p.id, l)
			}
			for _, l := range p.logLines("level=ERROR") {
				t.Errorf("worker %s: %s", p.id, l)
			}
		}
		pErrs.check(t, "prune or enqueue")

		_, byKey := e.executions(ctx)
		for key := range ids {
			if n := len(byKey[key]); n != 1 {
				t.Errorf("%s ran %d times, want 1", key, n)
			}
		}
		rs := e.results(ctx)
		if len(rs) != len(deferred) {
			t.Errorf("%d results left after the last prune, want the %d deferred ones", len(rs), len(deferred))
		}
		for _, d := range deferred {
			r, ok := rs[d.ID]
			if !ok || r.Status != tasks.StatusReady || r.Attempts != 0 {
				t.Errorf("deferred task %s: %+v, want READY, never attempted", d.ID, r)
			}
		}
		if total.Successful != int64(want) || total.Failed != 0 || total.Cancelled != 0 {
			t.Errorf("pruned %d SUCCESSFUL, %d FAILED, %d CANCELLED; want %d SUCCESSFUL only",
				total.Successful, total.Failed, total.Cancelled, want)
		}
		for key := range byKey {
			if _, ok := ids[key]; !ok {
				t.Errorf("unexpected execution of %s", key)
			}
		}
		t.Logf("FIGURES prune-under-load/%s: tasks=%d deferred=%d prunes=%d batches=%d pruned=%d lost=0",
			dialect, want, len(deferred), prunes, total.Batches, total.Successful)
	})
}
