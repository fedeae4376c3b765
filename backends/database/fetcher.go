package database

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/internal/startstop"
)

// claimTimeout bounds one claim statement (it is not cancelled by Stop).
const claimTimeout = time.Minute

// claimGather is how long a busy worker waits for half a batch of free
// capacity before it claims fewer tasks.
const claimGather = 5 * time.Millisecond

// fetcher claims due tasks while the worker has room for them and hands
// them to the executor in claim order (priority DESC, run_after, enqueued_at:
// the statement is Backend.claimQuery). It sizes each claim by the free
// slots, the tasks expected to finish during the claim (aheadEstimator) and
// the bounded backlog of unrecorded outcomes; gathers briefly for fuller
// batches; and waits for a wake-up (an enqueue in this process, LISTEN/NOTIFY
// on PostgreSQL), a freed slot or the poll interval. Tasks claimed ahead
// that find no slot in time are released (release.go).
//
// Stop (through startstop) makes it claim no more; a claim in flight is
// waited for, never cancelled.
type fetcher struct {
	startstop.Base
	b     *Backend
	log   *slog.Logger
	cfg   WorkerConfig
	query string // the claim statement for cfg's queues
	t     *tally
	exec  *executor
	// onEmpty is called from the fetcher's goroutine when ExitWhenEmpty
	// finds nothing to do.
	onEmpty func()
	// startedAt is the worker's start, for plan generations.
	startedAt time.Time

	claims atomic.Int64 // claim statements that returned rows
	// claimErr is the error of the latest claim round, nil when it claimed
	// (rows or none) or found every slot busy: what Worker.Ready reports.
	// Written by the fetcher's goroutine (only when it changes: a load
	// per round, a store per transition), read by any.
	claimErr atomic.Pointer[error]

	// Owned by the fetcher's goroutine:
	plan           planTagger
	est            aheadEstimator
	unreleased     []claimRef // claims ahead whose release failed (release.go)
	releaseRetryAt time.Time
	// held: the ids of the tasks of each queue of cfg.QueueConcurrency
	// that this worker claimed and has not recorded yet (flow_worker.go).
	held map[string]map[string]struct{}
	// flowOn: the latest claim round had limits (claimFlow); the fetcher
	// then also claims again as its tasks finish, since room in a limited
	// queue frees only then.
	flowOn bool
	// backlog: the latest claim took as many rows as it asked for (more
	// may be due); the next claim takes its turn (Backend.claim).
	backlog bool
}

func newFetcher(b *Backend, cfg WorkerConfig, log *slog.Logger, t *tally, exec *executor, onEmpty func()) *fetcher {
	return &fetcher{b: b, log: log, cfg: cfg, query: b.claimQuery(cfg.Queues, cfg.ExcludeQueues), t: t, exec: exec, onEmpty: onEmpty}
}

// Start starts the fetcher's goroutine.
func (f *fetcher) Start(ctx context.Context) error {
	ctx, ok, stopped := f.StartInit(ctx)
	if !ok {
		return nil
	}
	wake, unsub := f.b.hub.subscribeWake()
	go func() {
		defer close(stopped)
		defer unsub()
		f.loop(ctx, wake)
	}()
	return nil
}

// loop claims tasks while there are free slots and due tasks, until ctx is
// done.
func (f *fetcher) loop(ctx context.Context, wake <-chan struct{}) {
	poll := time.NewTimer(f.cfg.PollInterval)
	defer poll.Stop()
	errDelay := 100 * time.Millisecond
	var gatherUntil time.Time
	defer f.retryRelease(ctx, true)
	for ctx.Err() == nil {
		f.retryRelease(ctx, false)
		free := f.free()
		if free <= 0 {
			f.setClaimErr(nil) // no claim needed: every slot is busy
			if !f.waitCapacity(ctx, nil) {
				return
			}
			continue
		}
		// Gather: while tasks are in flight, wait briefly for half a batch of
		// free capacity rather than claiming a few rows at a time (each claim
		// is a statement and a commit; tiny ones waste the database).
		if threshold := max(1, min(f.cfg.BatchSize, f.cfg.Concurrency)/2); free < threshold && f.t.pending() > 0 {
			if gatherUntil.IsZero() {
				gatherUntil = time.Now().Add(claimGather)
			}
			if wait := time.Until(gatherUntil); wait > 0 {
				gt := time.NewTimer(wait)
				ok := f.waitCapacity(ctx, gt.C)
				gt.Stop()
				if !ok {
					return
				}
				continue
			}
		}
		gatherUntil = time.Time{}
		limit := min(free, f.cfg.BatchSize)
		if f.cfg.MaxTasks > 0 {
			left := int64(f.cfg.MaxTasks) - f.t.claimed.Load()
			if left <= 0 { // wait for the completer to reach MaxTasks
				if !f.waitCapacity(ctx, nil) {
					return
				}
				continue
			}
			limit = min(limit, int(left))
		}
		// Idle before the claim: no outcome can be recorded during it, so an
		// empty claim means nothing is due (with tasks running, a retry
		// recorded meanwhile may be due and missed by this claim).
		idle := f.t.pending() == 0
		rows, err := f.claim(ctx, limit)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// A database blip: WARN while the loop retries (it never gives
			// up; the running tasks are not affected).
			f.setClaimErr(err)
			f.log.Warn("gotasks: claim failed; retrying", "err", err, "retry_in", errDelay)
			if !sleepCtx(ctx, errDelay) {
				return
			}
			errDelay = min(errDelay*2, 5*time.Second)
			continue
		}
		errDelay = 100 * time.Millisecond
		f.setClaimErr(nil)
		if !f.startClaimed(ctx, rows) {
			return
		}
		f.backlog = len(rows) == limit
		if f.backlog {
			continue // maybe more due
		}
		if f.cfg.ExitWhenEmpty && len(rows) == 0 && idle {
			f.onEmpty()
			return
		}
		poll.Reset(f.cfg.PollInterval)
		var freed <-chan struct{}
		if f.cfg.ExitWhenEmpty || f.flowOn {
			freed = f.t.capacity // re-check emptiness (or limited room) as tasks finish
		}
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-poll.C:
		case <-freed:
		case <-f.releaseDue():
		}
	}
}

// setClaimErr records the outcome of a claim round for Worker.Ready: err,
// or nil after a claim or a round that needed none. Called by the
// fetcher's goroutine; it stores only when the state changes, so a healthy
// loop pays one atomic load per round.
func (f *fetcher) setClaimErr(err error) {
	if err == nil {
		if f.claimErr.Load() != nil {
			f.claimErr.Store(nil)
		}
		return
	}
	f.claimErr.Store(&err)
}

// lastClaimErr returns the error of the latest claim round, or nil (see
// claimErr). Safe from any goroutine.
func (f *fetcher) lastClaimErr() error {
	if p := f.claimErr.Load(); p != nil {
		return *p
	}
	return nil
}

// free returns how many tasks the next claim may take: the free slots plus
// the running tasks expected to finish during the claim, within the bounded
// backlog of outcomes waiting to be recorded (at most Concurrency tasks run
// and at most recordBacklog more have finished but wait for their outcome
// to be recorded, so claiming and running overlap recording).
func (f *fetcher) free() int {
	f.est.sample(time.Now(), f.t.freed.Load())
	running := f.exec.busy()
	return min(f.cfg.Concurrency-running+f.est.ahead(running),
		int(int64(f.cfg.Concurrency+f.cfg.recordBacklog())-f.t.pending()))
}

// waitCapacity waits until capacity may have grown, a release retry is
// due, or timeout fires (nil: no timeout); false when ctx is done.
func (f *fetcher) waitCapacity(ctx context.Context, timeout <-chan time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-f.t.capacity:
	case <-f.releaseDue():
	case <-timeout:
	}
	return true
}

// claim runs one claim statement for up to limit tasks. Stop does not
// cancel a claim in flight: cancelled after the database ran it, its tasks
// would stay RUNNING, unknown to this worker, until rescued. Stop waits for
// it instead (bounded by claimTimeout).
func (f *fetcher) claim(ctx context.Context, limit int) ([]*row, error) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
	defer cancel()
	start := time.Now()
	rows, err := f.claimRound(cctx, f.plan.comment(f.b, f.t.processed.Load(), f.startedAt), limit)
	if err == nil && len(rows) > 0 {
		f.claims.Add(1)
		f.est.claimed(time.Since(start))
	}
	return rows, err
}

// startClaimed starts the claimed rows in claim order, each as a slot
// frees. Rows still waiting for a slot when the worker stops claiming, or
// after est.wait(), are released; in the second case est was wrong and
// starts over. It returns false when it released rows because the worker
// stops claiming.
func (f *fetcher) startClaimed(ctx context.Context, rows []*row) bool {
	if len(f.unreleased) > 0 && len(rows) > 0 {
		f.dropReclaimed(rows)
	}
	for _, r := range rows {
		f.t.inflight.Store(r.ID, struct{}{}) // under the heartbeat from now
	}
	f.t.claimed.Add(int64(len(rows)))
	var deadline *time.Timer
	defer func() {
		if deadline != nil {
			deadline.Stop()
		}
	}()
	for i, r := range rows {
		// A row with a free slot starts even if the worker is stopping
		// meanwhile: it was claimed for that slot. Only rows claimed ahead
		// wait, and those are released at a stop.
		select {
		case f.exec.slots <- struct{}{}:
		default:
			if deadline == nil {
				deadline = time.NewTimer(f.est.wait())
			}
			select {
			case <-ctx.Done():
				f.release(ctx, rows[i:], "the worker is stopping")
				return false
			case <-deadline.C:
				f.release(ctx, rows[i:], "no slot freed in time")
				f.est.missed()
				return true
			case f.exec.slots <- struct{}{}:
			}
		}
		f.exec.run(r)
	}
	return true
}

// sleepCtx sleeps for d; false if ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
