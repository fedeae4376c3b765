package reliability_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/reliability/internal/reltasks"
	"github.com/gotasks/gotasks/tasks"
)

// TestKill9 kills worker processes with SIGKILL in the middle of a queue of
// thousands of short tasks and starts replacements. Every task must end
// SUCCESSFUL, having run at least once; only the tasks the killed worker
// held RUNNING may run twice; they must come back within the rescue delay
// (plus one rescue period and some slack); and no task may run in two
// places at once.
func TestKill9(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forDialects(t, func(t *testing.T, dialect string) {
		n, kills := 2000, 1
		if long() {
			n, kills = 9000, 3
		}
		testKill9(t, dialect, n, kills)
	})
}

const (
	rescueAfter = 2 * time.Second // --rescue-after of defaultWorkerFlags
	// rescueSlack allows for the rescue loop's period (RescueAfter/2 plus
	// jitter up to another half) and for a loaded CI machine.
	rescueSlack = rescueAfter + 1500*time.Millisecond
)

// settledRunning returns the ids RUNNING on a killed worker once the set
// stopped changing: a statement the worker sent just before it died (a batch
// of completions) may still commit on the server after the process is gone.
// The set is read well before the rescue delay, so no rescue has happened.
func (e *env) settledRunning(worker string) []string {
	e.t.Helper()
	var prev []string
	first := true
	waitUntil(e.t, rescueAfter/2, "the killed worker's RUNNING set to settle", func(ctx context.Context) (bool, error) {
		cur, err := e.runningOf(ctx, worker)
		if err != nil {
			return false, err
		}
		same := !first && slices.Equal(prev, cur)
		prev, first = cur, false
		if !same {
			time.Sleep(200 * time.Millisecond)
		}
		return same, nil
	})
	return prev
}

type kill struct {
	victim  *proc
	at      time.Time
	running []string // ids RUNNING on the victim right after the kill
}

func testKill9(t *testing.T, dialect string, n, kills int) {
	e := newEnv(t, dialect, true)
	ctx := context.Background()
	ids := e.enqueue(recordArgs("kill", n, func(i int) int { return 5 + i%16 }))
	keyOf := map[string]string{}
	for k, id := range ids {
		keyOf[id] = k
	}
	live := []*proc{e.startWorker("kill-A"), e.startWorker("kill-B")}
	var ks []kill
	for k := 0; k < kills; k++ {
		victim := live[0]
		progress := n * (k + 1) / (kills + 3)
		waitUntil(t, 2*time.Minute, fmt.Sprintf("%d tasks done and %s running tasks", progress, victim.id),
			func(ctx context.Context) (bool, error) {
				c, err := e.counts(ctx)
				if err != nil || c[tasks.StatusSuccessful] < progress {
					return false, err
				}
				r, err := e.runningOf(ctx, victim.id)
				return len(r) >= 5, err
			})
		at := victim.kill9(t)
		running := e.settledRunning(victim.id)
		c, err := e.counts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("kill -9 %s at %s: %d tasks RUNNING on it; %d READY, %d SUCCESSFUL", victim.id, at.Format("15:04:05.000"),
			len(running), c[tasks.StatusReady], c[tasks.StatusSuccessful])
		ks = append(ks, kill{victim: victim, at: at, running: running})
		live = append(live[1:], e.startWorker(fmt.Sprintf("kill-%c", 'C'+k)))
	}
	e.waitSuccessful(n, 3*time.Minute)
	for _, p := range live {
		p.signal(t, syscall.SIGTERM)
	}
	for _, p := range live {
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("worker %s exited %d after SIGTERM, want 0", p.id, code)
		}
	}

	rs := e.results(ctx)
	xs, byKey := e.executions(ctx)
	if len(rs) != n {
		t.Fatalf("%d results, want %d", len(rs), n)
	}
	heldBy := map[string][]kill{} // key → the kills that caught it RUNNING
	for _, k := range ks {
		for _, id := range k.running {
			heldBy[keyOf[id]] = append(heldBy[keyOf[id]], k)
		}
	}
	var dups, notRun, unexpected int
	for key, id := range ids {
		r := rs[id]
		if r.Status != tasks.StatusSuccessful {
			t.Errorf("%s (%s): status %s, want SUCCESSFUL; errors %v", key, id, r.Status, r.Errors)
		}
		runs := len(byKey[key])
		switch {
		case runs == 0:
			notRun++
			t.Errorf("%s (%s) never ran", key, id)
		case runs > 1:
			dups++
			if runs > 1+len(heldBy[key]) {
				unexpected++
				t.Errorf("%s (%s) ran %d times but was not RUNNING on a killed worker (%v)", key, id, runs, byKey[key])
			}
		}
	}
	checkRecordedOnce(t, rs, byKey)

	// The killed workers' executions end at the kill.
	killedAt := map[string]int64{}
	for _, k := range ks {
		killedAt[k.victim.id] = k.at.UnixMicro()
	}
	checkNoOverlap(t, xs, func(x reltasks.Exec) int64 { return killedAt[x.Worker] })

	// Rescue: each task held by a killed worker carries one WorkerLost error
	// naming it, and went back to READY within the rescue delay (+ slack).
	var rescued, reclaimed []time.Duration
	for key, held := range heldBy {
		k := held[0]
		r := rs[ids[key]]
		var lost *tasks.TaskError
		for i := range r.Errors {
			if r.Errors[i].Type == database.WorkerLostType && strings.Contains(r.Errors[i].Message, k.victim.id) {
				lost = &r.Errors[i]
			}
		}
		if lost == nil {
			t.Errorf("%s: held RUNNING by killed %s but no %s error names it: %v", key, k.victim.id, database.WorkerLostType, r.Errors)
			continue
		}
		rescued = append(rescued, lost.At.Sub(k.at))
		if slices.Contains(r.WorkerIDs[len(r.WorkerIDs)-1:], k.victim.id) {
			t.Errorf("%s: last attempt on killed worker %s", key, k.victim.id)
		}
		for _, x := range byKey[key] {
			if x.Worker != k.victim.id && x.Start > k.at.UnixMicro() {
				reclaimed = append(reclaimed, time.Duration(x.Start-k.at.UnixMicro())*time.Microsecond)
				break
			}
		}
	}
	if maxR := percentile(rescued, 100); maxR > rescueAfter+rescueSlack {
		t.Errorf("slowest rescue %v after the kill, want ≤ rescue delay %v + %v", maxR, rescueAfter, rescueSlack)
	}
	// Claimed again at once: rescued tasks keep their place in the queue,
	// and the rescuing worker wakes the idle ones.
	if maxC := percentile(reclaimed, 100); maxC > rescueAfter+rescueSlack+time.Second {
		t.Errorf("slowest re-claim %v after the kill, want ≤ rescue delay %v + %v", maxC, rescueAfter, rescueSlack+time.Second)
	}
	for _, k := range ks {
		if len(k.running) == 0 {
			t.Errorf("kill of %s caught no RUNNING task; the scenario proves nothing", k.victim.id)
		}
	}
	t.Logf("FIGURES kill9/%s: tasks=%d kills=%d held_running=%d duplicates=%d not_run=%d unexpected_dups=%d executions=%d "+
		"rescue_after=%v rescue_delay[min/p50/max]=%v/%v/%v reclaim[p50/max]=%v/%v",
		dialect, n, len(ks), len(heldBy), dups, notRun, unexpected, len(xs), rescueAfter,
		percentile(rescued, 0).Round(time.Millisecond), percentile(rescued, 50).Round(time.Millisecond),
		percentile(rescued, 100).Round(time.Millisecond), percentile(reclaimed, 50).Round(time.Millisecond),
		percentile(reclaimed, 100).Round(time.Millisecond))
}

// TestKill9RescueKeepsPlace: the tasks of a killed worker go back to READY
// in their old place in the queue, not behind the backlog that was
// enqueued after them (nor, for a repeating task, at a shifted schedule):
// with a backlog of several seconds, they are claimed again right after the
// rescue.
func TestKill9RescueKeepsPlace(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forDialects(t, func(t *testing.T, dialect string) {
		e := newEnv(t, dialect, true)
		ctx := context.Background()
		const held, backlog = 5, 300
		first := e.enqueue(recordArgs("held", held, func(int) int { return 2000 }))
		e.enqueue(recordArgs("backlog", backlog, func(int) int { return 100 })) // 6 s at concurrency 5
		a := e.startWorker("place-A", "--concurrency", fmt.Sprint(held))
		waitUntil(t, time.Minute, "the first tasks running on place-A", func(ctx context.Context) (bool, error) {
			r, err := e.runningOf(ctx, a.id)
			return len(r) == held, err
		})
		killAt := a.kill9(t)
		b := e.startWorker("place-B", "--concurrency", fmt.Sprint(held))
		e.waitSuccessful(held+backlog, 2*time.Minute)
		b.signal(t, syscall.SIGTERM)
		if code := b.wait(t, 30*time.Second); code != 0 {
			t.Errorf("place-B exited %d, want 0", code)
		}
		rs := e.results(ctx)
		_, byKey := e.executions(ctx)
		checkRecordedOnce(t, rs, byKey)
		var lags []time.Duration
		for key, id := range first {
			r := rs[id]
			var lost *tasks.TaskError
			for i := range r.Errors {
				if r.Errors[i].Type == database.WorkerLostType {
					lost = &r.Errors[i]
				}
			}
			if lost == nil {
				t.Errorf("%s: no %s error: %v", key, database.WorkerLostType, r.Errors)
				continue
			}
			var again int64
			for _, x := range byKey[key] {
				if x.Worker == b.id {
					again = x.Start
				}
			}
			if again == 0 {
				t.Errorf("%s: not run again on %s: %v", key, b.id, byKey[key])
				continue
			}
			lag := time.UnixMicro(again).Sub(lost.At)
			lags = append(lags, lag)
			if lag > time.Second {
				t.Errorf("%s: rescued %v after the kill but claimed again only %v later: it lost its place in the queue",
					key, lost.At.Sub(killAt).Round(time.Millisecond), lag.Round(time.Millisecond))
			}
		}
		t.Logf("FIGURES rescue-place/%s: held=%d backlog=%d reclaim_after_rescue[max]=%v", dialect, held, backlog,
			percentile(lags, 100).Round(time.Millisecond))
	})
}
