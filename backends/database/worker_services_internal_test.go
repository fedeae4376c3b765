package database

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// TestWorkerServiceCycles: one cycle of one service of the worker, alone,
// on a worker that is not started: one heartbeat (heartbeat.beat), one
// rescue (rescuer.rescueExpired, rescueOrphans), one batch of outcomes
// recorded (completer.record), one claim (fetcher.claim, startClaimed).
// The rows are claimed (or written) by hand; nothing else runs.
func TestWorkerServiceCycles(t *testing.T) {
	t.Parallel()

	t.Run("Heartbeat", func(t *testing.T) {
		t.Parallel()

		// Heartbeat/RefreshesHeldRowsOnly: a beat refreshes heartbeat_at of the
		// rows the worker holds, and of no other: not of a row claimed under its
		// id that it does not know of (a claim whose response was lost), nor of
		// a row it lists that another worker holds now.
		t.Run("RefreshesHeldRowsOnly", func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
				cycleEnqueue(t, be, 4)
				w := cycleWorker(t, be, "w1")
				rows := cycleClaim(t, w, 10)
				held, taken := []string{rows[0].ID, rows[1].ID}, rows[3].ID // rows[2]: unknown to the heartbeat
				cycleExec(t, be, `UPDATE gotasks_task SET worker_id = 'w2' WHERE id = $1`, taken)
				old := now().Add(-time.Hour)
				cycleExec(t, be, `UPDATE gotasks_task SET heartbeat_at = $1`, be.dialect.ts(old))
				for _, id := range append(slices.Clone(held), taken) {
					w.t.inflight.Store(id, struct{}{})
				}
				w.t.claimed.Store(3)
				if err := w.heartbeat.beat(ctx); err != nil {
					t.Fatalf("beat: %v", err)
				}
				got := cycleIDs(t, be, `heartbeat_at > $1`, be.dialect.ts(old))
				if diff := cmp.Diff(cycleSorted(held), got); diff != "" {
					t.Errorf("rows with a fresh heartbeat (-want +got):\n%s", diff)
				}
			})
		})
	})

	t.Run("Rescuer", func(t *testing.T) {
		t.Parallel()

		// Rescuer/RescuesExpiredLeases: one rescue puts back to READY the
		// RUNNING rows of other workers whose heartbeat is older than
		// RescueAfter or whose attempt began more than MaxRunTime +
		// RescueAfter ago (FAILED when out of attempts), each with a
		// WorkerLost error and a TaskFinished signal; it leaves alone a live
		// row and the rows of its own worker.
		t.Run("RescuesExpiredLeases", func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
				cycleEnqueue(t, be, 4)
				ghost := cycleClaim(t, cycleWorker(t, be, "ghost"), 10)
				stale, live, overran, spent := ghost[0].ID, ghost[1].ID, ghost[2].ID, ghost[3].ID
				own := cycleEnqueue(t, be, 1)[0]
				w := cycleWorker(t, be, "w1")
				cycleClaim(t, w, 10)
				old := be.dialect.ts(now().Add(-time.Hour))
				cycleExec(t, be, `UPDATE gotasks_task SET heartbeat_at = $1 WHERE id IN ($2, $3, $4)`, old, stale, spent, own)
				cycleExec(t, be, `UPDATE gotasks_task SET last_attempted_at = $1 WHERE id = $2`,
					be.dialect.ts(now().Add(-2*time.Hour)), overran)
				cycleExec(t, be, `UPDATE gotasks_task SET max_attempts = 1 WHERE id = $1`, spent)
				finished := cycleFinished(t, stale, live, overran, spent, own)

				rows, err := w.rescuer.rescueExpired(ctx)
				if err != nil {
					t.Fatalf("rescueExpired: %v", err)
				}
				type view struct {
					Status   tasks.Status
					Worker   string
					Errors   []string // type: message
					Finished bool
				}
				read := func(id string) view {
					t.Helper()
					r := getForRelease(t, be, id)
					v := view{Status: r.Status, Worker: cycleWorkerOf(t, be, id), Finished: r.FinishedAt != nil}
					for _, e := range r.Errors {
						v.Errors = append(v.Errors, e.Type+": "+e.Message)
					}
					return v
				}
				lost := func(msg string) []string { return []string{WorkerLostType + ": " + msg} }
				want := map[string]view{
					stale:   {tasks.StatusReady, "", lost("worker stopped heartbeating while running the task: ghost"), false},
					overran: {tasks.StatusReady, "", lost("task ran longer than the maximum run time on worker ghost"), false},
					spent:   {tasks.StatusFailed, "", lost("worker stopped heartbeating while running the task: ghost"), true},
					live:    {tasks.StatusRunning, "ghost", nil, false},
					own:     {tasks.StatusRunning, "w1", nil, false},
				}
				got := map[string]view{}
				for id := range want {
					got[id] = read(id)
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("rows after the rescue (-want +got):\n%s", diff)
				}
				var rescued []string
				for _, r := range rows {
					rescued = append(rescued, r.ID)
				}
				wantIDs := cycleSorted([]string{stale, overran, spent})
				if diff := cmp.Diff(wantIDs, cycleSorted(rescued)); diff != "" {
					t.Errorf("rows returned (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff(wantIDs, cycleSorted(finished.ids())); diff != "" {
					t.Errorf("TaskFinished signals (-want +got):\n%s", diff)
				}
			})
		})

		// Rescuer/RescuesOrphansOfItsOwnID: at start-up, the rows still
		// RUNNING under the worker's own id (left by an earlier process with
		// that id) are rescued whatever their heartbeat; other workers' rows
		// are not.
		t.Run("RescuesOrphansOfItsOwnID", func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
				mine := cycleEnqueue(t, be, 1)[0]
				w := cycleWorker(t, be, "w1")
				cycleClaim(t, w, 10)
				theirs := cycleEnqueue(t, be, 1)[0]
				cycleClaim(t, cycleWorker(t, be, "w2"), 10)
				rows, err := w.rescuer.rescueOrphans(ctx)
				if err != nil {
					t.Fatalf("rescueOrphans: %v", err)
				}
				if len(rows) != 1 || rows[0].ID != mine {
					t.Errorf("rescued %d rows; want only the worker's own (%s)", len(rows), mine)
				}
				got := []tasks.Status{getForRelease(t, be, mine).Status, getForRelease(t, be, theirs).Status}
				if diff := cmp.Diff([]tasks.Status{tasks.StatusReady, tasks.StatusRunning}, got); diff != "" {
					t.Errorf("statuses of the worker's own row and another worker's (-want +got):\n%s", diff)
				}
			})
		})
	})

	t.Run("Completer", func(t *testing.T) {
		t.Parallel()

		// Completer/RecordsBatchAndSignals: one record writes a batch of
		// outcomes (a success, a retry, a failure) in one statement and sends
		// their TaskFinished signals in batch order; the outcome of a row that
		// another worker holds now (rescued meanwhile) is discarded without a
		// signal. Every outcome leaves the heartbeat and counts as processed.
		t.Run("RecordsBatchAndSignals", func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
				cycleEnqueue(t, be, 4)
				w := cycleWorker(t, be, "w1")
				rows := cycleClaim(t, w, 10)
				ok, retry, fail, taken := rows[0], rows[1], rows[2], rows[3]
				cycleExec(t, be, `UPDATE gotasks_task SET worker_id = 'w2' WHERE id = $1`, taken.ID)
				for _, r := range rows {
					w.t.inflight.Store(r.ID, struct{}{})
				}
				w.t.claimed.Store(4)
				end := now()
				runAfter := end.Add(time.Hour)
				failed := func(msg string) *tasks.TaskError {
					return &tasks.TaskError{Attempt: 1, Type: "*errors.errorString", Message: msg, At: end}
				}
				// As the executor turns an attempt into an outcome.
				out := func(r *row, a tasks.Attempt) *outcome {
					a.Number, a.End = r.Attempts, end
					a.Apply(&r.RawResult)
					return &outcome{rec: &r.RawResult, attempt: a.Number, newErr: a.Record}
				}
				batch := []*outcome{
					out(ok, tasks.Attempt{Status: tasks.StatusSuccessful, Value: json.RawMessage(`"done"`)}),
					out(retry, tasks.Attempt{Status: tasks.StatusReady, Record: failed("try again"), RunAfter: runAfter}),
					out(fail, tasks.Attempt{Status: tasks.StatusFailed, Record: failed("give up")}),
					out(taken, tasks.Attempt{Status: tasks.StatusSuccessful, Value: json.RawMessage(`"late"`)}),
				}
				finished := cycleFinished(t, ok.ID, retry.ID, fail.ID, taken.ID)

				w.completer.record(batch)

				type view struct {
					Status      tasks.Status
					Attempts    int
					Worker      string
					ReturnValue string
					Errors      []string
					RunAfter    *time.Time // when READY
				}
				read := func(r *row) view {
					t.Helper()
					got := getForRelease(t, be, r.ID)
					v := view{Status: got.Status, Attempts: got.Attempts, Worker: cycleWorkerOf(t, be, r.ID), ReturnValue: string(got.ReturnValue)}
					for _, e := range got.Errors {
						v.Errors = append(v.Errors, e.Message)
					}
					if got.Status == tasks.StatusReady {
						v.RunAfter = &got.RunAfter
					}
					return v
				}
				want := []view{
					{tasks.StatusSuccessful, 1, "", `"done"`, nil, nil},
					{tasks.StatusReady, 1, "", "", []string{"try again"}, &runAfter},
					{tasks.StatusFailed, 1, "", "", []string{"give up"}, nil},
					{tasks.StatusRunning, 1, "w2", "", nil, nil},
				}
				var got []view
				for _, r := range rows {
					got = append(got, read(r))
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("rows after the record (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]string{ok.ID, retry.ID, fail.ID}, finished.ids()); diff != "" {
					t.Errorf("TaskFinished signals (-want +got):\n%s", diff)
				}
				type counts struct{ Processed, Records, Held int64 }
				gotCounts := counts{w.t.processed.Load(), w.completer.records.Load(), int64(len(heldIDs(w)))}
				if diff := cmp.Diff(counts{Processed: 4, Records: 1}, gotCounts); diff != "" {
					t.Errorf("counts (-want +got):\n%s", diff)
				}
			})
		})
	})

	t.Run("Fetcher", func(t *testing.T) {
		t.Parallel()

		// Fetcher/ClaimsDueInOrderUpToLimit: one claim takes at most limit
		// due rows, in claim order (priority first), RUNNING under the
		// worker's id; a row not due is not taken.
		t.Run("ClaimsDueInOrderUpToLimit", func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
				low := cycleEnqueue(t, be, 1, func(r *tasks.EnqueueRequest) { r.Priority = 0 })[0]
				high := cycleEnqueue(t, be, 1, func(r *tasks.EnqueueRequest) { r.Priority = 5 })[0]
				mid := cycleEnqueue(t, be, 1, func(r *tasks.EnqueueRequest) { r.Priority = 1 })[0]
				cycleEnqueue(t, be, 1, func(r *tasks.EnqueueRequest) { r.Priority = 9; r.RunAfter = time.Now().Add(time.Hour) })
				w := cycleWorker(t, be, "w1")
				type claimed struct {
					ID       string
					Status   tasks.Status
					Attempts int
					Worker   string
				}
				claim := func(limit int) []claimed {
					t.Helper()
					var out []claimed
					for _, r := range cycleClaim(t, w, limit) {
						out = append(out, claimed{r.ID, r.Status, r.Attempts, cycleWorkerOf(t, be, r.ID)})
					}
					return out
				}
				running := func(id string) claimed { return claimed{id, tasks.StatusRunning, 1, "w1"} }
				if diff := cmp.Diff([]claimed{running(high), running(mid)}, claim(2)); diff != "" {
					t.Errorf("claim of 2 (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([]claimed{running(low)}, claim(10)); diff != "" {
					t.Errorf("claim of 10 (-want +got):\n%s", diff)
				}
				if got := claim(10); len(got) != 0 {
					t.Errorf("claim with nothing due took %v", got)
				}
				if n := w.fetcher.claims.Load(); n != 2 {
					t.Errorf("claim statements that returned rows: %d; want 2", n)
				}
			})
		})

		// Fetcher/StartsClaimedRows: with free slots, startClaimed puts the
		// claimed rows under the heartbeat, counts them, and starts each:
		// its attempt's outcome reaches the completer and its slot frees.
		t.Run("StartsClaimedRows", func(t *testing.T) {
			t.Parallel()
			eachBackend(t, func(t *testing.T, ctx context.Context, be *Backend) {
				ids := cycleEnqueue(t, be, 2, func(r *tasks.EnqueueRequest) { r.TaskName = cycleNoop.Name() })
				w := cycleWorker(t, be, "w1")
				rows := cycleClaim(t, w, 10)
				if !w.fetcher.startClaimed(ctx, rows) {
					t.Fatal("startClaimed returned false without a stop")
				}
				type state struct {
					Held    []string
					Claimed int64
				}
				if diff := cmp.Diff(state{cycleSorted(ids), 2}, state{cycleSorted(heldIDs(w)), w.t.claimed.Load()}); diff != "" {
					t.Errorf("after startClaimed (-want +got):\n%s", diff)
				}
				type attempt struct {
					ID          string
					Attempt     int
					Status      tasks.Status
					ReturnValue string
				}
				var got []attempt
				for range rows {
					select {
					case o := <-w.completer.outcomes:
						got = append(got, attempt{o.rec.ID, o.attempt, o.rec.Status, string(o.rec.ReturnValue)})
					case <-time.After(10 * time.Second):
						t.Fatalf("%d of %d outcomes reached the completer", len(got), len(rows))
					}
				}
				slices.SortFunc(got, func(a, b attempt) int { return strings.Compare(a.ID, b.ID) })
				var want []attempt
				for _, id := range cycleSorted(ids) {
					want = append(want, attempt{id, 1, tasks.StatusSuccessful, "1"})
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("outcomes (-want +got):\n%s", diff)
				}
				if n := w.exec.busy(); n != 0 {
					t.Errorf("%d slots busy after the attempts; want 0", n)
				}
			})
		})
	})
}

// cycleNoop is the task of the rows that a single cycle runs.
var cycleNoop = tasks.Define("database_internal.cycle_noop", func(ctx context.Context, _ struct{}) (int, error) {
	return 1, nil
})

// cycleWorker returns a worker of be (not started) with id: its services
// are ready for single cycles.
func cycleWorker(t *testing.T, be *Backend, id string) *Worker {
	t.Helper()
	w, err := NewWorker(be, WorkerConfig{WorkerID: id})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// cycleEnqueue enqueues n due tasks (never run: their task is not
// registered), each changed by the mods, and returns their ids.
func cycleEnqueue(t *testing.T, be *Backend, n int, mods ...func(*tasks.EnqueueRequest)) []string {
	t.Helper()
	reqs := make([]*tasks.EnqueueRequest, n)
	ids := make([]string, n)
	for i := range reqs {
		ids[i] = tasks.NewID()
		reqs[i] = &tasks.EnqueueRequest{ID: ids[i], TaskName: "database_internal.never_run",
			Args: json.RawMessage(`{}`), Queue: tasks.DefaultQueue}
		for _, m := range mods {
			m(reqs[i])
		}
	}
	if _, err := be.EnqueueMany(context.Background(), reqs); err != nil {
		t.Fatal(err)
	}
	return ids
}

// cycleClaim runs one claim of w's fetcher.
func cycleClaim(t *testing.T, w *Worker, limit int) []*row {
	t.Helper()
	rows, err := w.fetcher.claim(context.Background(), limit)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return rows
}

func cycleExec(t *testing.T, be *Backend, q string, args ...any) {
	t.Helper()
	if _, err := be.db.DB.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// cycleIDs returns the sorted ids of be's rows that match cond.
func cycleIDs(t *testing.T, be *Backend, cond string, args ...any) []string {
	t.Helper()
	rows, err := be.db.DB.QueryContext(context.Background(), `SELECT id FROM gotasks_task WHERE `+cond+` ORDER BY id`, args...)
	if err != nil {
		t.Fatalf("%s: %v", cond, err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func cycleSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// cycleSignals records TaskFinished signals.
type cycleSignals struct {
	mu    sync.Mutex
	order []string
}

// cycleFinished records the TaskFinished signals of the tasks ids from now
// until the test ends (the internal tests' backends share one name, and
// the other tests of the binary send signals too: the ids tell them apart).
func cycleFinished(t *testing.T, ids ...string) *cycleSignals {
	rec := &cycleSignals{}
	t.Cleanup(signals.TaskFinished.Connect(func(ctx context.Context, from string, r *tasks.RawResult) {
		if !slices.Contains(ids, r.ID) {
			return
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		rec.order = append(rec.order, r.ID)
	}))
	return rec
}

// ids returns the ids signalled, in order.
func (rec *cycleSignals) ids() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return slices.Clone(rec.order)
}

// cycleWorkerOf returns the worker_id of the task id ("" when none holds
// it).
func cycleWorkerOf(t *testing.T, be *Backend, id string) string {
	t.Helper()
	var w string
	if err := be.db.DB.QueryRowContext(context.Background(),
		`SELECT COALESCE(worker_id, '') FROM gotasks_task WHERE id = $1`, id).Scan(&w); err != nil {
		t.Fatal(err)
	}
	return w
}
