package database

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// TestFetcherInternals: the fetcher's claim-ahead estimate (ahead.go) and
// the release of tasks claimed ahead (release.go), on its internals.
func TestFetcherInternals(t *testing.T) {
	t.Parallel()

	// Claiming ahead: the fetcher claims for the running tasks expected to
	// finish during the claim, and nothing ahead of free slots for tasks that
	// run longer than a claim takes.
	t.Run("AheadEstimator", func(t *testing.T) {
		t.Parallel()
		t0 := time.Unix(1_800_000_000, 0)
		type step struct {
			at    time.Duration // since t0
			freed int64         // slots freed so far
		}
		// every returns samples every d until end, freeing n slots each.
		every := func(d, end time.Duration, n int64) []step {
			var s []step
			for at, freed := time.Duration(0), int64(0); at <= end; at, freed = at+d, freed+n {
				s = append(s, step{at, freed})
			}
			return s
		}
		cases := []struct {
			name     string
			steps    []step
			latency  time.Duration
			running  int
			min, max int
		}{
			// 20,000 slots freed a second, claims of 4 ms: 80 finish during a
			// claim, but only 60 are running.
			{"short tasks", every(5*time.Millisecond, 200*time.Millisecond, 100), 4 * time.Millisecond, 60, 60, 60},
			{"short tasks, more running", every(5*time.Millisecond, 200*time.Millisecond, 100), 4 * time.Millisecond, 100, 78, 80},
			// 100 tasks of one second each: 100 freed a second, 0.4 during a claim.
			{"long tasks", every(time.Second, 3*time.Second, 100), 4 * time.Millisecond, 100, 0, 0},
			// An idle second after a burst replaces the burst's rate.
			{"idle after a burst", append(every(5*time.Millisecond, 200*time.Millisecond, 100),
				step{1200 * time.Millisecond, 4000}), 4 * time.Millisecond, 100, 0, 0},
			// One slot freed 10 µs after a sample is not a rate of 100,000/s.
			{"one slot right after a sample", []step{{0, 0}, {10 * time.Microsecond, 1}}, 4 * time.Millisecond, 100, 0, 0},
			{"no sample yet", []step{{0, 0}}, 4 * time.Millisecond, 100, 0, 0},
		}
		for _, c := range cases {
			var e aheadEstimator
			for _, s := range c.steps {
				e.sample(t0.Add(s.at), s.freed)
			}
			e.claimed(c.latency)
			if got := e.ahead(c.running); got < c.min || got > c.max {
				t.Errorf("%s: ahead(%d) = %d; want %d to %d", c.name, c.running, got, c.min, c.max)
			}
		}
		var e aheadEstimator
		if got := e.wait(); got != minAheadWait {
			t.Errorf("wait() before any claim = %v; want %v", got, minAheadWait)
		}
		e.claimed(time.Minute)
		if got := e.wait(); got != maxAheadWait {
			t.Errorf("wait() after a minute-long claim = %v; want %v", got, maxAheadWait)
		}
	})

	// Tasks claimed ahead that get no slot in time, or that are still waiting
	// when the worker stops, go back to READY as if never claimed: not run,
	// the attempt not counted, the worker not in worker_ids, started_at as
	// before. A task on its second attempt keeps its history.
	t.Run("ReleasesTasksClaimedAhead", func(t *testing.T) {
		t.Parallel()
		eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
			fresh := enqueueForRelease(t, be, 2)
			// One task on its second attempt: started before, by w0.
			retried := enqueueForRelease(t, be, 1)[0]
			started := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC)
			if _, err := be.db.DB.ExecContext(ctx, `UPDATE gotasks_task SET attempts = 1, started_at = $1,
				last_attempted_at = $2, worker_ids = '["w0"]' WHERE id = $3`,
				be.dialect.ts(started), be.dialect.ts(started), retried); err != nil {
				t.Fatal(err)
			}
			before := map[string]*tasks.RawResult{}
			for _, id := range append(fresh, retried) {
				before[id] = getForRelease(t, be, id)
			}

			w, rows := claimWithBusySlot(t, be)
			if len(rows) != 3 {
				t.Fatalf("claimed %d rows; want 3", len(rows))
			}
			// Claimed ahead for tasks expected to finish (20,000 a second,
			// claims of 5 ms): no slot frees within the wait.
			f := w.fetcher
			f.est = aheadEstimator{rate: 20000, latency: 0.005, observed: true}
			if !f.startClaimed(ctx, rows[:2]) {
				t.Fatal("startClaimed returned false without a stop")
			}
			if n := f.est.ahead(100); n != 0 {
				t.Errorf("after a miss, ahead(100) = %d; want 0", n)
			}
			// The worker stops while the slot is still busy; the estimate
			// would have the rows wait a second.
			stopped, stop := context.WithCancel(ctx)
			stop()
			f.est = aheadEstimator{rate: 20000, latency: 60, observed: true}
			if f.startClaimed(stopped, rows[2:]) {
				t.Fatal("startClaimed returned true after the stop")
			}
			if n := len(w.exec.slots) - 1; n != 0 {
				t.Errorf("%d task(s) started; want none", n)
			}
			if n := w.t.claimed.Load(); n != 0 {
				t.Errorf("claimed counter = %d after the releases; want 0", n)
			}
			for _, id := range heldIDs(w) {
				t.Errorf("%v still under the heartbeat after its release", id)
			}
			for id, want := range before {
				if diff := cmp.Diff(want, getForRelease(t, be, id)); diff != "" {
					t.Errorf("task %s after its release (-want +got):\n%s", id, diff)
				}
			}
		})
	})

	// A release that fails (the database is away) loses nothing: the tasks stay
	// claimed and under the heartbeat, to be released on a later try; only the
	// last try, as the fetcher exits, gives them up to rescue.
	t.Run("ReleaseFailureKeepsTasks", func(t *testing.T) {
		t.Parallel()
		eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
			ids := enqueueForRelease(t, be, 2)
			w, rows := claimWithBusySlot(t, be)
			if err := be.db.DB.Close(); err != nil { // the database goes away
				t.Fatal(err)
			}
			f := w.fetcher
			f.est = aheadEstimator{rate: 20000, latency: 0.005, observed: true}
			f.startClaimed(ctx, rows)
			type state struct {
				Unreleased, Held []string
				Claimed          int64
			}
			sorted := func(s []string) []string { slices.Sort(s); return s }
			want := state{Unreleased: sorted(slices.Clone(ids)), Held: sorted(slices.Clone(ids)), Claimed: 2}
			got := state{Unreleased: sorted(refIDs(f.unreleased)), Held: sorted(heldIDs(w)), Claimed: w.t.claimed.Load()}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("after a failed release (-want +got):\n%s", diff)
			}
			f.releaseRetryAt = time.Time{} // due now
			f.retryRelease(ctx, false)     // fails again: still kept
			if n := len(f.unreleased); n != 2 {
				t.Errorf("after a failed retry, %d unreleased; want 2", n)
			}
			f.retryRelease(ctx, true) // the fetcher exits: given up to rescue
			if diff := cmp.Diff(state{}, state{Unreleased: refIDs(f.unreleased), Held: heldIDs(w), Claimed: w.t.claimed.Load()}); diff != "" {
				t.Errorf("after the final try (-want +got):\n%s", diff)
			}
		})
	})

	// A release is guarded by the claim's attempt: retried late, after the task
	// was rescued from this worker and claimed by it again, it leaves the live
	// claim alone; the live claim's own release still works.
	t.Run("ReleaseGuardsAttempt", func(t *testing.T) {
		t.Parallel()
		eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
			id := enqueueForRelease(t, be, 1)[0]
			w, err := NewWorker(be, WorkerConfig{WorkerID: "w1"})
			if err != nil {
				t.Fatal(err)
			}
			claim := func() *row {
				t.Helper()
				rows, err := be.claim(ctx, w.fetcher.query, 10, "w1", nil, nil, false)
				if err != nil || len(rows) != 1 {
					t.Fatalf("claim: %d rows, %v; want 1", len(rows), err)
				}
				return rows[0]
			}
			first := claim()
			if _, err := be.rescue(ctx, "other", time.Time{}, time.Time{}, "w1"); err != nil {
				t.Fatal(err)
			}
			second := claim()
			type view struct {
				Released int
				Status   tasks.Status
				Attempts int
				Workers  []string
			}
			releaseAs := func(r *row) view {
				t.Helper()
				n, err := be.release(ctx, "w1", []claimRef{{id: id, attempts: r.Attempts}})
				if err != nil {
					t.Fatal(err)
				}
				got := getForRelease(t, be, id)
				return view{n, got.Status, got.Attempts, got.WorkerIDs}
			}
			want := view{0, tasks.StatusRunning, 2, []string{"w1", "w1"}}
			if diff := cmp.Diff(want, releaseAs(first)); diff != "" {
				t.Errorf("release of the rescued claim (-want +got):\n%s", diff)
			}
			want = view{1, tasks.StatusReady, 1, []string{"w1"}}
			if diff := cmp.Diff(want, releaseAs(second)); diff != "" {
				t.Errorf("release of the live claim (-want +got):\n%s", diff)
			}
		})
	})

	// A claim whose release failed and that is claimed again (rescued
	// meanwhile) is forgotten: the new claim replaces it in the count.
	t.Run("DropReclaimed", func(t *testing.T) {
		t.Parallel()
		w := &fetcher{t: newTally(), unreleased: []claimRef{{"a", 1}, {"b", 1}, {"c", 2}}}
		w.t.claimed.Store(5)
		w.dropReclaimed([]*row{{RawResult: tasks.RawResult{ID: "b", Attempts: 2}}, {RawResult: tasks.RawResult{ID: "x"}}})
		type state struct {
			Unreleased []string
			Claimed    int64
		}
		if diff := cmp.Diff(state{[]string{"a", "c"}, 4}, state{refIDs(w.unreleased), w.t.claimed.Load()}); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})
}

// claimWithBusySlot returns a worker (not started) of concurrency 1 whose
// slot is busy, and the due tasks it claimed: each must wait for the slot,
// as tasks claimed ahead do.
func claimWithBusySlot(t *testing.T, be *Backend) (*Worker, []*row) {
	t.Helper()
	w, err := NewWorker(be, WorkerConfig{Concurrency: 1, WorkerID: "w1"})
	if err != nil {
		t.Fatal(err)
	}
	w.exec.slots <- struct{}{}
	rows, err := be.claim(context.Background(), w.fetcher.query, 10, "w1", nil, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	return w, rows
}

// heldIDs returns the ids under w's heartbeat.
func heldIDs(w *Worker) []string {
	return w.t.heldIDs()
}

func enqueueForRelease(t *testing.T, be *Backend, n int) []string {
	t.Helper()
	reqs := make([]*tasks.EnqueueRequest, n)
	ids := make([]string, n)
	for i := range reqs {
		ids[i] = tasks.NewID()
		reqs[i] = &tasks.EnqueueRequest{ID: ids[i], TaskName: "database_internal.never_run",
			Args: json.RawMessage(`{}`), Queue: tasks.DefaultQueue}
	}
	if _, err := be.EnqueueMany(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	return ids
}

// getForRelease returns the stored task without last_attempted_at, which a
// release leaves at the claim's time.
func getForRelease(t *testing.T, be *Backend, id string) *tasks.RawResult {
	t.Helper()
	r, err := be.GetResult(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	r.LastAttemptedAt = nil
	return r
}

func refIDs(refs []claimRef) []string {
	var ids []string
	for _, c := range refs {
		ids = append(ids, c.id)
	}
	return ids
}
