package database

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// Worker defaults.
const (
	DefaultConcurrency       = 100
	DefaultPollInterval      = time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultRescueAfter is how long a RUNNING task may go without a
	// heartbeat from its worker before another worker puts it back to READY
	// (or FAILED when it has no attempt left): six missed heartbeats.
	DefaultRescueAfter = 30 * time.Second
	// DefaultMaxRunTime bounds one attempt (django-background-tasks'
	// MAX_RUN_TIME): the attempt's context is cancelled then, and a task
	// RUNNING for longer is rescued even if its worker still heartbeats.
	DefaultMaxRunTime = time.Hour
)

// ErrHardStop is returned by Run and Stop when running tasks had to be
// cancelled and handed back for retry.
var ErrHardStop = errors.New("worker stopped hard: running tasks were cancelled and handed back")

// claimTimeout bounds one claim statement (it is not cancelled by Stop).
const claimTimeout = time.Minute

// claimGather is how long a busy worker waits for half a batch of free
// capacity before it claims fewer tasks.
const claimGather = 5 * time.Millisecond

// completeGather is how long the completer waits for a fuller batch while
// more tasks are about to finish; it delays the recording of an outcome by
// at most this much.
const completeGather = 2 * time.Millisecond

// maxRecordBatch caps the outcomes recorded by one completion statement.
const maxRecordBatch = 500

// recordBacklog is how many finished tasks may wait for their outcome to be
// recorded (beyond the Concurrency running ones) before the worker stops
// claiming: room for one completion statement in flight and a full batch
// gathering behind it, so the claim → run → record pipeline never waits on
// the completer's round trip and commit. The wait is bounded (memory stays
// flat); it only holds outcomes of tasks that already ran.
func (c WorkerConfig) recordBacklog() int { return max(c.Concurrency, 2*maxRecordBatch) }

// Claiming ahead. A claim takes a round trip and a statement's work (a few
// milliseconds); with short tasks, the slots it was sized for are long free
// again when it returns, and a worker that claims only free slots runs each
// batch in lockstep with its claim. So the fetcher also claims for the
// running tasks expected to finish while the claim is in flight: the recent
// rate at which slots are freed times the recent claim latency (Little's
// law), at most the running tasks. For tasks that run longer than a claim
// takes, that is zero: nothing is taken ahead of free slots. A task claimed
// ahead waits in the fetcher for a slot; if none frees within aheadWait
// (the prediction was wrong: the running tasks turned out long), or the
// worker stops, the tasks still waiting are released: READY again, as if
// never claimed.
type aheadEstimator struct {
	last     time.Time
	freed    int64   // slots freed counter at last
	rate     float64 // slots freed per second (moving average)
	latency  float64 // claim latency in seconds (moving average)
	observed bool    // latency holds a sample
}

// minAheadWait and maxAheadWait bound how long a task claimed ahead waits
// for a slot before it is released (ten recent claim latencies in between).
const (
	minAheadWait = 50 * time.Millisecond
	maxAheadWait = time.Second
)

// aheadRateTau is the time constant of the freeing rate's moving average:
// a sample's weight grows with the time it covers, so that one slot freed
// microseconds after the last sample does not read as a burst, and a long
// gap (an idle worker) replaces the estimate.
const aheadRateTau = 20 * time.Millisecond

// sample updates the freeing rate from the slots freed so far (freed, a
// counter) at t.
func (e *aheadEstimator) sample(t time.Time, freed int64) {
	if e.last.IsZero() {
		e.last, e.freed = t, freed
		return
	}
	dt := t.Sub(e.last).Seconds()
	if dt <= 0 {
		return
	}
	inst := float64(freed-e.freed) / dt
	e.last, e.freed = t, freed
	e.rate += (1 - math.Exp(-dt/aheadRateTau.Seconds())) * (inst - e.rate)
}

// claimed records the latency of one claim statement.
func (e *aheadEstimator) claimed(d time.Duration) {
	if !e.observed {
		e.latency, e.observed = d.Seconds(), true
		return
	}
	e.latency += 0.2 * (d.Seconds() - e.latency)
}

// ahead returns how many of the running tasks are expected to finish during
// the next claim.
func (e *aheadEstimator) ahead(running int) int {
	return min(running, int(e.rate*e.latency))
}

// missed is told that tasks claimed ahead found no slot in time: the
// running tasks are longer than the rate said. Claim nothing ahead until
// slots are seen freeing again.
func (e *aheadEstimator) missed() { e.rate = 0 }

// wait is how long a task claimed ahead may wait for a slot.
func (e *aheadEstimator) wait() time.Duration {
	return min(maxAheadWait, max(minAheadWait, time.Duration(10*e.latency*float64(time.Second))))
}

// Plan generations. pgx prepares the claim and completion statements once
// per connection, and after five executions PostgreSQL may switch them to a
// generic plan that it keeps until the table's statistics change. A plan made
// while the table was empty or small (a fresh deployment, a test) is a
// sequential scan, and it stays as the table grows: with autovacuum slow or
// off, a worker was seen stuck at a quarter of its speed, each completion
// scanning 50,000 rows. Planning every execution instead costs ~0.5 ms a
// statement (10 µs a task, measured). So the statements carry a generation
// comment that changes each time the worker's processed count doubles from
// replanAfter, and every replanPeriod: a new text is a new prepared statement,
// planned afresh for the table as it is now. That is a few dozen statements
// over a worker's life, bounded by pgx's statement cache.
const (
	replanAfter  = 1000
	replanPeriod = 10 * time.Minute
)

// planGeneration is the generation of the statements' plans after a worker
// processed n tasks in elapsed: one more at 1×, 2×, 4×… replanAfter tasks and
// every replanPeriod.
func planGeneration(n int64, elapsed time.Duration) int {
	return bits.Len64(uint64(max(n, 0)/replanAfter)) + int(elapsed/replanPeriod)
}

// planTagger caches the generation comment of one goroutine's statements.
type planTagger struct {
	gen int
	tag string
}

// planTag returns the comment to append to the claim and completion
// statements now (empty on SQLite, which plans its own way).
func (w *Worker) planTag(p *planTagger) string {
	if w.b.dialect != Postgres {
		return ""
	}
	gen := planGeneration(w.processed.Load(), time.Since(w.startedAt))
	if p.tag == "" || gen != p.gen {
		p.gen, p.tag = gen, fmt.Sprintf("\n/* gotasks plan %d */", gen)
	}
	return p.tag
}

// WorkerConfig configures a Worker. The zero value works: all queues,
// DefaultConcurrency, DefaultPollInterval, and so on.
type WorkerConfig struct {
	// Queues to claim from; empty or ["*"] means all.
	Queues []string
	// ExcludeQueues are never claimed from.
	ExcludeQueues []string
	// Concurrency is how many tasks run at once (goroutines).
	Concurrency int
	// BatchSize caps the tasks claimed per statement (default: Concurrency,
	// at most 1000).
	BatchSize int
	// PollInterval is how often an idle worker looks for due tasks when no
	// notification woke it (the backstop; the only mechanism across
	// processes on SQLite).
	PollInterval time.Duration
	// WorkerID identifies the worker in results and holds its claims
	// (default host:pid:random). It must be unique among running workers;
	// a new process may reuse the id of a dead one (its tasks are rescued at
	// start-up).
	WorkerID string
	// HeartbeatInterval is how often the worker refreshes the lease of the
	// tasks it runs.
	HeartbeatInterval time.Duration
	// RescueAfter: see DefaultRescueAfter. Must exceed HeartbeatInterval.
	RescueAfter time.Duration
	// MaxRunTime: see DefaultMaxRunTime.
	MaxRunTime time.Duration
	// MaxTasks stops the worker after it recorded that many outcomes
	// (0: no limit).
	MaxTasks int
	// Duration stops the worker (gracefully) after it ran that long
	// (0: forever).
	Duration time.Duration
	// ExitWhenEmpty stops the worker when no task is due and none is
	// running (django-tasks' --batch).
	ExitWhenEmpty bool
	// GracePeriod bounds the graceful stop of Run: running tasks get this
	// long to finish after ctx is cancelled before they are cancelled and
	// handed back (default 30 s).
	GracePeriod time.Duration
	// Logger defaults to the backend's logger.
	Logger *slog.Logger
}

func (c *WorkerConfig) normalize(b *Backend) error {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BatchSize == 0 {
		c.BatchSize = min(c.Concurrency, 1000)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.RescueAfter == 0 {
		c.RescueAfter = max(DefaultRescueAfter, 3*c.HeartbeatInterval)
	}
	if c.MaxRunTime == 0 {
		c.MaxRunTime = DefaultMaxRunTime
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = 30 * time.Second
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		var rb [3]byte
		_, _ = rand.Read(rb[:])
		c.WorkerID = host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(rb[:])
	}
	if c.Logger == nil {
		c.Logger = b.log
	}
	if len(c.Queues) == 1 && c.Queues[0] == "*" {
		c.Queues = nil
	}
	var probs []string
	if c.Concurrency < 0 || c.BatchSize < 0 || c.MaxTasks < 0 || c.Duration < 0 {
		probs = append(probs, "concurrency, batch size, max tasks and duration must not be negative")
	}
	if c.PollInterval < 0 || c.HeartbeatInterval < 0 || c.MaxRunTime < 0 {
		probs = append(probs, "intervals must be positive")
	}
	if c.RescueAfter <= c.HeartbeatInterval {
		probs = append(probs, fmt.Sprintf("rescue delay %v must exceed the heartbeat interval %v", c.RescueAfter, c.HeartbeatInterval))
	}
	if len(c.WorkerID) > 255 {
		probs = append(probs, "worker id is longer than 255 bytes")
	}
	for _, q := range append(slices.Clone(c.Queues), c.ExcludeQueues...) {
		if q == "" || q == "*" {
			probs = append(probs, fmt.Sprintf("queue name %q is not valid in a list", q))
		}
	}
	if qs := b.Queues(); len(qs) > 0 {
		for _, q := range c.Queues {
			if !slices.Contains(qs, q) {
				probs = append(probs, fmt.Sprintf("queue %q is not allowed on backend %q (allowed: %v)", q, b.Name(), qs))
			}
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: worker: %v", tasks.ErrInvalidBackend, probs)
	}
	return nil
}

// Worker claims due tasks of one database backend and runs them: claims
// in batches in SPEC order, runs up to Concurrency at once, records
// outcomes in batches, retries with backoff, keeps a heartbeat on what it
// runs, rescues tasks of workers that vanished, re-enqueues repeating
// tasks, and wakes on LISTEN/NOTIFY (PostgreSQL) or in-process enqueues.
//
// A Worker runs once: Start (or Run), then Stop or StopAndCancel.
type Worker struct {
	b     *Backend
	cfg   WorkerConfig
	log   *slog.Logger
	query string

	startOnce sync.Once
	started   atomic.Bool
	startedAt time.Time

	completePlan planTagger // the completer's (record runs on its goroutine)

	stopClaim     chan struct{} // closed: claim no more
	stopClaimOnce sync.Once
	taskCtx       context.Context // running tasks' parent; cancelled on hard stop
	cancelTasks   context.CancelFunc
	hardStopped   atomic.Bool
	handedBack    atomic.Bool // a task was handed back by a hard stop

	slots      chan struct{} // capacity = Concurrency
	slotFreed  chan struct{}
	running    sync.WaitGroup
	outcomes   chan *outcome
	flush      chan struct{} // closed: record what is queued, then exit
	abandon    chan struct{} // closed: stop retrying failed writes
	claimCtx   context.Context
	claimStop  context.CancelFunc
	loopsDone  chan struct{} // fetcher exited
	completerD chan struct{}
	bgCancel   context.CancelFunc
	bgDone     sync.WaitGroup
	done       chan struct{} // closed when fully stopped
	stopErr    error

	claimed   atomic.Int64 // tasks claimed and not released (started or waiting for a slot)
	freed     atomic.Int64 // slots freed (tasks that finished running)
	processed atomic.Int64
	claims    atomic.Int64 // claim statements that returned rows
	inflight  sync.Map     // ids claimed and not yet recorded, for heartbeats
	records   atomic.Int64 // completion statements
	reason    atomic.Value // string: why the worker stopped by itself
	selfStop  chan struct{}
	selfOnce  sync.Once

	// unreleased: claims ahead whose release failed, to try again from
	// releaseRetryAt on (both owned by the fetcher goroutine).
	unreleased     []claimRef
	releaseRetryAt time.Time
}

// NewWorker returns a worker for b. Invalid settings are an error wrapping
// tasks.ErrInvalidBackend.
func NewWorker(b *Backend, cfg WorkerConfig) (*Worker, error) {
	if err := cfg.normalize(b); err != nil {
		return nil, err
	}
	w := &Worker{
		b: b, cfg: cfg, log: cfg.Logger.With("worker_id", cfg.WorkerID, "backend", b.Name()),
		query:     b.claimQuery(cfg.Queues, cfg.ExcludeQueues),
		stopClaim: make(chan struct{}),
		slots:     make(chan struct{}, cfg.Concurrency),
		slotFreed: make(chan struct{}, 1),
		// Room for every claimed task's outcome (the backlog bound), so a
		// finished task's goroutine never waits for the completer.
		outcomes:   make(chan *outcome, cfg.Concurrency+cfg.recordBacklog()),
		flush:      make(chan struct{}),
		abandon:    make(chan struct{}),
		loopsDone:  make(chan struct{}),
		completerD: make(chan struct{}),
		done:       make(chan struct{}),
		selfStop:   make(chan struct{}),
	}
	w.taskCtx, w.cancelTasks = context.WithCancel(context.Background())
	w.claimCtx, w.claimStop = context.WithCancel(context.Background())
	return w, nil
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.cfg.WorkerID }

// Processed returns how many outcomes the worker has recorded.
func (w *Worker) Processed() int64 { return w.processed.Load() }

// Done is closed when the worker has stopped completely.
func (w *Worker) Done() <-chan struct{} { return w.done }

// StoppedByItself is closed when the worker decided to stop (MaxTasks,
// Duration, ExitWhenEmpty); Run then stops it gracefully.
func (w *Worker) StoppedByItself() <-chan struct{} { return w.selfStop }

// Run starts the worker and blocks until it stops: by itself (MaxTasks,
// Duration, ExitWhenEmpty), or when ctx is done, after which running tasks
// get GracePeriod to finish before they are cancelled and handed back. It
// returns nil after a graceful stop and an error wrapping ErrHardStop when
// tasks had to be handed back.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-w.selfStop:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.GracePeriod)
	defer cancel()
	return w.Stop(sctx)
}

// Start starts the worker's goroutines and returns. ctx only bounds the
// start-up (the schema check); stop the worker with Stop or StopAndCancel.
func (w *Worker) Start(ctx context.Context) error {
	var err error
	first := false
	w.startOnce.Do(func() { first = true })
	if !first {
		return errors.New("gotasks: worker already started")
	}
	if err = w.b.checkSchema(ctx); err != nil {
		close(w.done)
		return err
	}
	// Tasks still RUNNING under this worker id belong to an earlier process
	// that used the same id: rescue them before claiming anything.
	if orphans, err := w.rescue(ctx, time.Time{}, time.Time{}, w.cfg.WorkerID); err != nil {
		close(w.done)
		return err
	} else if len(orphans) > 0 {
		w.log.Warn("gotasks: rescued tasks left RUNNING by an earlier worker with the same id", "tasks", len(orphans))
	}
	w.startedAt = time.Now()
	w.started.Store(true)
	bg, cancel := context.WithCancel(context.Background())
	w.bgCancel = cancel
	wake, unsub := w.b.hub.subscribeWake()
	go func() {
		defer close(w.loopsDone)
		defer unsub()
		w.fetchLoop(w.claimCtx, wake)
	}()
	go func() {
		defer close(w.completerD)
		w.completeLoop()
	}()
	w.bgDone.Add(2)
	go func() { defer w.bgDone.Done(); w.heartbeatLoop(bg) }()
	go func() { defer w.bgDone.Done(); w.rescueLoop(bg) }()
	if w.cfg.Duration > 0 {
		w.bgDone.Add(1)
		go func() {
			defer w.bgDone.Done()
			t := time.NewTimer(w.cfg.Duration)
			defer t.Stop()
			select {
			case <-t.C:
				w.stopByItself("duration elapsed")
			case <-bg.Done():
			}
		}()
	}
	w.log.Info("gotasks: worker started", "queues", queuesLabel(w.cfg.Queues), "exclude", w.cfg.ExcludeQueues,
		"concurrency", w.cfg.Concurrency, "dialect", w.b.dialect)
	return nil
}

func queuesLabel(q []string) any {
	if len(q) == 0 {
		return "*"
	}
	return q
}

func (w *Worker) stopByItself(reason string) {
	w.selfOnce.Do(func() {
		w.reason.Store(reason)
		w.log.Info("gotasks: worker stopping", "reason", reason)
		close(w.selfStop)
		w.stopClaiming()
	})
}

func (w *Worker) stopClaiming() {
	w.stopClaimOnce.Do(func() {
		close(w.stopClaim)
		w.claimStop()
	})
}

// pending is the number of claimed tasks whose outcome is not recorded.
func (w *Worker) pending() int64 { return w.claimed.Load() - w.processed.Load() }

// Stop stops claiming and waits for running tasks to finish and their
// outcomes to be recorded. If ctx is done first, the remaining tasks are
// cancelled and handed back for retry (StopAndCancel) and the error wraps
// ErrHardStop.
func (w *Worker) Stop(ctx context.Context) error {
	if !w.started.Load() {
		return nil
	}
	w.stopClaiming()
	<-w.loopsDone
	drained := make(chan struct{})
	go func() { w.running.Wait(); close(drained) }()
	select {
	case <-drained:
		return w.finish(ctx, nil)
	case <-ctx.Done():
		return w.StopAndCancel(context.WithoutCancel(ctx))
	}
}

// StopAndCancel stops claiming, cancels the contexts of running tasks and
// hands them back: they return to READY without using up an attempt. It
// waits for the tasks to return (a task that ignores its context is left
// RUNNING after 10 s, to be rescued) and returns an error wrapping
// ErrHardStop if any was running.
func (w *Worker) StopAndCancel(ctx context.Context) error {
	if !w.started.Load() {
		return nil
	}
	w.stopClaiming()
	<-w.loopsDone
	w.hardStopped.Store(true)
	w.cancelTasks()
	drained := make(chan struct{})
	go func() { w.running.Wait(); close(drained) }()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var err error
	select {
	case <-drained:
	case <-wctx.Done():
		err = errors.New("some tasks ignored their cancelled context; they stay RUNNING until rescued")
	}
	if err == nil && !w.handedBack.Load() {
		return w.finish(ctx, nil) // nothing was running: not a hard stop
	}
	return w.finish(ctx, errors.Join(ErrHardStop, err))
}

func (w *Worker) finish(ctx context.Context, stopErr error) error {
	select {
	case <-w.done:
		return w.stopErr
	default:
	}
	if !w.hardStopped.Load() {
		stopErr = nil
	}
	// The completer records what is queued, then exits; if the database
	// stays away past ctx, it gives up and the tasks are rescued later.
	close(w.flush)
	select {
	case <-w.completerD:
	case <-ctx.Done():
		close(w.abandon)
		<-w.completerD
	}
	w.bgCancel()
	w.bgDone.Wait()
	w.cancelTasks()
	w.claimStop()
	w.stopErr = stopErr
	w.log.Info("gotasks: worker stopped", "processed", w.processed.Load(), "hard", w.hardStopped.Load(),
		"claim_statements", w.claims.Load(), "complete_statements", w.records.Load())
	close(w.done)
	return stopErr
}

// fetchLoop claims tasks while there are free slots and due tasks.
func (w *Worker) fetchLoop(ctx context.Context, wake <-chan struct{}) {
	poll := time.NewTimer(w.cfg.PollInterval)
	defer poll.Stop()
	errDelay := 100 * time.Millisecond
	var gatherUntil time.Time
	var claimPlan planTagger
	var est aheadEstimator
	defer w.retryRelease(ctx, true)
	for {
		select {
		case <-w.stopClaim:
			return
		default:
		}
		w.retryRelease(ctx, false)
		// Bounded backlog: at most Concurrency tasks run, and at most
		// recordBacklog more have finished but wait for their outcome to be
		// recorded (so claiming and running overlap recording). Free
		// capacity counts the running tasks expected to finish during the
		// claim (see aheadEstimator).
		est.sample(time.Now(), w.freed.Load())
		running := len(w.slots)
		free := min(w.cfg.Concurrency-running+est.ahead(running),
			int(int64(w.cfg.Concurrency+w.cfg.recordBacklog())-w.pending()))
		if free <= 0 {
			select {
			case <-w.stopClaim:
				return
			case <-w.slotFreed:
			case <-w.releaseDue():
			}
			continue
		}
		// Gather: while tasks are in flight, wait briefly for half a batch of
		// free capacity rather than claiming a few rows at a time (each claim
		// is a statement and a commit; tiny ones waste the database).
		if threshold := max(1, min(w.cfg.BatchSize, w.cfg.Concurrency)/2); free < threshold && w.pending() > 0 {
			if gatherUntil.IsZero() {
				gatherUntil = time.Now().Add(claimGather)
			}
			if wait := time.Until(gatherUntil); wait > 0 {
				gt := time.NewTimer(wait)
				select {
				case <-w.stopClaim:
					gt.Stop()
					return
				case <-w.slotFreed:
				case <-gt.C:
				}
				gt.Stop()
				continue
			}
		}
		gatherUntil = time.Time{}
		limit := min(free, w.cfg.BatchSize)
		if w.cfg.MaxTasks > 0 {
			left := int64(w.cfg.MaxTasks) - w.claimed.Load()
			if left <= 0 {
				select { // wait for the completer to reach MaxTasks
				case <-w.stopClaim:
					return
				case <-w.slotFreed:
				case <-w.releaseDue():
				}
				continue
			}
			limit = min(limit, int(left))
		}
		// Idle before the claim: no outcome can be recorded during it, so an
		// empty claim means nothing is due (with tasks running, a retry
		// recorded meanwhile may be due and missed by this claim).
		idle := w.pending() == 0
		// Stop does not cancel a claim in flight: cancelled after the
		// database ran it, its tasks would stay RUNNING, unknown to this
		// worker, until rescued. Stop waits for it instead (bounded).
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimTimeout)
		claimStart := time.Now()
		rows, err := w.b.claim(cctx, w.query+w.planTag(&claimPlan), limit, w.cfg.WorkerID, w.cfg.Queues, w.cfg.ExcludeQueues)
		cancel()
		if err != nil {
			select {
			case <-w.stopClaim:
				return
			default:
			}
			w.log.Error("gotasks: claim failed; retrying", "err", err, "retry_in", errDelay)
			if !w.sleep(errDelay) {
				return
			}
			errDelay = min(errDelay*2, 5*time.Second)
			continue
		}
		errDelay = 100 * time.Millisecond
		if len(rows) > 0 {
			w.claims.Add(1)
			est.claimed(time.Since(claimStart))
		}
		if !w.startClaimed(ctx, rows, &est) {
			return
		}
		if len(rows) == limit {
			continue // maybe more due
		}
		if w.cfg.ExitWhenEmpty && len(rows) == 0 && idle {
			w.stopByItself("queue empty")
			return
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(w.cfg.PollInterval)
		var freed <-chan struct{}
		if w.cfg.ExitWhenEmpty {
			freed = w.slotFreed // re-check emptiness as tasks finish
		}
		select {
		case <-w.stopClaim:
			return
		case <-wake:
		case <-poll.C:
		case <-freed:
		case <-w.releaseDue():
		}
	}
}

// startClaimed starts the claimed rows in claim order, each as a slot
// frees. Rows still waiting for a slot when the worker stops claiming, or
// after est.wait(), are released; in the second case est was wrong and
// starts over. It returns false when it released rows because the worker
// stops claiming.
func (w *Worker) startClaimed(ctx context.Context, rows []*row, est *aheadEstimator) bool {
	if len(w.unreleased) > 0 && len(rows) > 0 {
		w.dropReclaimed(rows)
	}
	for _, r := range rows {
		w.inflight.Store(r.ID, struct{}{}) // under the heartbeat from now
	}
	w.claimed.Add(int64(len(rows)))
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
		case w.slots <- struct{}{}:
		default:
			if deadline == nil {
				deadline = time.NewTimer(est.wait())
			}
			select {
			case <-w.stopClaim:
				w.release(ctx, rows[i:], "the worker is stopping")
				return false
			case <-deadline.C:
				w.release(ctx, rows[i:], "no slot freed in time")
				est.missed()
				return true
			case w.slots <- struct{}{}:
			}
		}
		w.running.Add(1)
		go w.runTask(r)
	}
	return true
}

// release hands claimed tasks that never started back to the queue (see
// Backend.release). If that fails (the database is away), the tasks stay
// RUNNING under this worker, still under its heartbeat, and the fetcher
// tries again before its next claim (retryRelease) and when it exits; if
// the last try fails too, they are rescued after RescueAfter (by another
// worker, or by the next one started with this worker id).
func (w *Worker) release(ctx context.Context, rows []*row, why string) {
	refs := make([]claimRef, len(rows))
	for i, r := range rows {
		refs[i] = claimRef{id: r.ID, attempts: r.Attempts}
	}
	w.releaseRefs(ctx, refs, why)
}

func (w *Worker) releaseRefs(ctx context.Context, refs []claimRef, why string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n, err := w.b.release(rctx, w.cfg.WorkerID, refs)
	if err != nil {
		w.unreleased = append(w.unreleased, refs...)
		w.releaseRetryAt = time.Now().Add(time.Second)
		w.log.Error("gotasks: releasing tasks claimed ahead failed; will try again",
			"tasks", len(refs), "why", why, "err", err)
		return
	}
	// Rows not released were rescued meanwhile (a retried release): they
	// are no longer this claim's either.
	w.forget(refs)
	w.log.Debug("gotasks: released tasks claimed ahead", "tasks", n, "why", why)
	select {
	case w.slotFreed <- struct{}{}: // the backlog shrank
	default:
	}
}

// forget takes claims that will not start off the heartbeat and the
// claimed count.
func (w *Worker) forget(refs []claimRef) {
	for _, c := range refs {
		w.inflight.Delete(c.id)
	}
	w.claimed.Add(-int64(len(refs)))
}

// retryRelease tries again, at most once a second, to release the tasks
// whose release failed. When final (the fetcher exits), it tries once more
// unless the last failure is under a second old, and tasks it cannot
// release are given up to rescue.
func (w *Worker) retryRelease(ctx context.Context, final bool) {
	if len(w.unreleased) == 0 {
		return
	}
	if due := !time.Now().Before(w.releaseRetryAt); due {
		refs := w.unreleased
		w.unreleased = nil
		w.releaseRefs(ctx, refs, "retry")
	} else if !final {
		return
	}
	if final && len(w.unreleased) > 0 {
		w.log.Error("gotasks: gave up releasing tasks claimed ahead at shutdown; they stay RUNNING until rescued",
			"tasks", len(w.unreleased))
		w.forget(w.unreleased)
		w.unreleased = nil
	}
}

// releaseDue fires when failed releases are due for another try; nil when
// there are none. The fetcher's waits select on it so that a retry is not
// held up until a slot frees or the next poll.
func (w *Worker) releaseDue() <-chan time.Time {
	if len(w.unreleased) == 0 {
		return nil
	}
	return time.After(max(0, time.Until(w.releaseRetryAt)))
}

// dropReclaimed forgets the unreleased claims of rows claimed again: their
// release failed, they were rescued meanwhile, and rows holds the live
// claim (same id, so the heartbeat entry stays).
func (w *Worker) dropReclaimed(rows []*row) {
	ids := make(map[string]bool, len(rows))
	for _, r := range rows {
		ids[r.ID] = true
	}
	kept := w.unreleased[:0]
	for _, c := range w.unreleased {
		if ids[c.id] {
			w.claimed.Add(-1)
			continue
		}
		kept = append(kept, c)
	}
	clear(w.unreleased[len(kept):])
	w.unreleased = kept
}

func (w *Worker) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.stopClaim:
		return false
	case <-t.C:
		return true
	}
}

func (w *Worker) releaseSlot() {
	<-w.slots
	w.freed.Add(1)
	select {
	case w.slotFreed <- struct{}{}:
	default:
	}
}

// runTask runs one claimed task and hands its outcome to the completer.
func (w *Worker) runTask(r *row) {
	defer w.running.Done()
	rec := &r.RawResult // this goroutine owns the claimed row
	attempt := rec.Attempts
	// The signals of the previous attempt (or of the rescue) go first.
	w.b.order.await(w.taskCtx, r)
	signals.TaskStarted.Send(w.taskCtx, w.b.Name(), rec) // receivers get copies

	run := *rec // Execute only reads it
	def, known := tasks.Lookup(rec.TaskName)
	timeout := rec.Timeout
	if timeout <= 0 && known {
		timeout = def.Defaults().Timeout
	}
	if timeout <= 0 || timeout > w.cfg.MaxRunTime {
		timeout = w.cfg.MaxRunTime
	}
	run.Timeout = timeout
	out, err := tasks.Execute(w.taskCtx, &run)
	end := now()
	o := &outcome{rec: rec, attempt: attempt}
	switch {
	case err == nil:
		rec.Status, rec.ReturnValue, rec.FinishedAt = tasks.StatusSuccessful, out, &end
		o.next = w.nextRun(rec, end)
	case w.hardStopped.Load() && w.taskCtx.Err() != nil:
		// Stopped under the task: hand it back without using up the attempt,
		// keeping its run_after (its place in the queue and, for a repeating
		// task, its schedule).
		o.handBack = true
		w.handedBack.Store(true)
		rec.Status, rec.Attempts = tasks.StatusReady, rec.Attempts-1
	default:
		te := tasks.NewTaskError(attempt, end, err)
		o.newErr = &te
		rec.Errors = append(rec.Errors, te)
		permanent := errors.Is(err, tasks.ErrUnknownTask) || isArgsError(err)
		if !permanent && attempt < rec.MaxAttempts {
			backoff := w.b.DefaultBackoff()
			if known && def.Defaults().Backoff != nil {
				backoff = def.Defaults().Backoff
			}
			rec.Status, rec.RunAfter = tasks.StatusReady, end.Add(backoff(attempt)).Truncate(time.Microsecond)
		} else {
			rec.Status, rec.FinishedAt = tasks.StatusFailed, &end
		}
		w.log.Warn("gotasks: task attempt failed", "task", rec.TaskName, "id", rec.ID, "attempt", attempt,
			"max_attempts", rec.MaxAttempts, "status", rec.Status, "err", err)
	}
	w.releaseSlot()
	w.outcomes <- o
}

func isArgsError(err error) bool {
	var ae *tasks.ArgsError
	return errors.As(err, &ae)
}

// nextRun returns the next run of a repeating task that just succeeded:
// scheduled time + interval, stepped forward past now, unless past the end.
func (w *Worker) nextRun(rec *tasks.RawResult, t time.Time) *tasks.RawResult {
	if rec.Repeat <= 0 {
		return nil
	}
	next := rec.RunAfter.Add(rec.Repeat)
	if !next.After(t) {
		steps := t.Sub(next)/rec.Repeat + 1
		next = next.Add(steps * rec.Repeat)
	}
	if rec.RepeatUntil != nil && next.After(*rec.RepeatUntil) {
		return nil
	}
	n := &tasks.RawResult{
		ID: tasks.NewID(), TaskName: rec.TaskName, Status: tasks.StatusReady, Args: rec.Args,
		Priority: rec.Priority, Queue: rec.Queue, Backend: rec.Backend, RunAfter: next.Truncate(time.Microsecond),
		EnqueuedAt: t, MaxAttempts: rec.MaxAttempts, Timeout: rec.Timeout, VerboseName: rec.VerboseName,
		Creator: rec.Creator, Repeat: rec.Repeat, RepeatUntil: rec.RepeatUntil,
	}
	return n
}

// completeLoop records outcomes in batches until flush is closed and the
// outcomes queued by then are recorded. A failed write is retried (the
// database may be away for a while); outcomes are never dropped while the
// worker runs, only when a stop gives up on an unreachable database
// (abandon), and then the tasks are rescued later.
func (w *Worker) completeLoop() {
	const maxBatch = maxRecordBatch
	batch := make([]*outcome, 0, maxBatch)
	for {
		var o *outcome
		select {
		case o = <-w.outcomes:
		case <-w.flush:
			select {
			case o = <-w.outcomes:
			default:
				return // flushed everything
			}
		}
		batch = append(batch[:0], o)
		// Take what is ready; while more tasks are about to finish, wait a
		// little (completeGather) for a fuller batch: each statement is a
		// commit, and tiny ones crowd out the claims (one writer on SQLite).
		target := min(maxBatch, max(1, min(w.cfg.BatchSize, w.cfg.Concurrency)/2))
		var gather *time.Timer
	more:
		for len(batch) < maxBatch {
			select {
			case o := <-w.outcomes:
				batch = append(batch, o)
				continue
			default:
			}
			if len(batch) >= target || w.pending() <= int64(len(batch)) {
				break
			}
			if gather == nil {
				gather = time.NewTimer(completeGather)
			}
			select {
			case o := <-w.outcomes:
				batch = append(batch, o)
			case <-gather.C:
				break more
			case <-w.flush:
				break more
			}
		}
		if gather != nil {
			gather.Stop()
		}
		w.record(batch)
	}
}

func (w *Worker) record(batch []*outcome) {
	if release := w.holdStarts(batch); release != nil {
		defer release()
	}
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		done, err := w.b.complete(ctx, w.cfg.WorkerID, w.planTag(&w.completePlan), batch)
		cancel()
		if err == nil {
			w.records.Add(1)
			w.afterRecord(batch, done)
			return
		}
		w.log.Error("gotasks: recording task outcomes failed; retrying", "err", err, "tasks", len(batch),
			"attempt", attempt, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-w.abandon:
			t.Stop()
			w.log.Error("gotasks: gave up recording task outcomes at shutdown; the tasks stay RUNNING until rescued",
				"tasks", len(batch))
			for _, o := range batch {
				w.inflight.Delete(o.rec.ID)
			}
			w.processed.Add(int64(len(batch)))
			return
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// holdStarts holds the starts of the rows that recording batch makes
// claimable (see startOrder); release is nil when there are none.
func (w *Worker) holdStarts(batch []*outcome) (release func()) {
	var ids []string
	for _, o := range batch {
		if o.rec.Status == tasks.StatusReady {
			ids = append(ids, o.rec.ID) // a retry, or handed back at stop
		}
		if o.next != nil {
			ids = append(ids, o.next.ID)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return w.b.order.hold(ids)
}

func (w *Worker) afterRecord(batch, done []*outcome) {
	for _, o := range batch {
		w.inflight.Delete(o.rec.ID)
	}
	if len(done) < len(batch) {
		ok := map[*outcome]bool{}
		for _, o := range done {
			ok[o] = true
		}
		for _, o := range batch {
			if !ok[o] {
				w.log.Warn("gotasks: outcome discarded: the task was rescued from this worker meanwhile",
					"task", o.rec.TaskName, "id", o.rec.ID, "attempt", o.attempt, "status", o.rec.Status)
			}
		}
	}
	ids := make([]string, 0, len(done))
	wakeNext := false
	for _, o := range done {
		ids = append(ids, o.rec.ID)
		signals.TaskFinished.Send(context.Background(), w.b.Name(), o.rec)
		if o.next != nil {
			signals.TaskEnqueued.Send(context.Background(), w.b.Name(), o.next)
		}
		if o.rec.Status == tasks.StatusReady && !o.rec.RunAfter.After(now()) {
			wakeNext = true
		}
	}
	w.b.hub.finished(ids...)
	if wakeNext {
		w.b.hub.wake()
	}
	n := w.processed.Add(int64(len(batch)))
	if w.cfg.MaxTasks > 0 && n >= int64(w.cfg.MaxTasks) {
		w.stopByItself("max tasks reached")
	}
	select {
	case w.slotFreed <- struct{}{}:
	default:
	}
}

// heartbeatLoop refreshes the lease of running tasks until ctx is done.
func (w *Worker) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(w.cfg.HeartbeatInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if w.pending() == 0 {
			continue
		}
		var ids []string
		w.inflight.Range(func(k, _ any) bool {
			ids = append(ids, k.(string))
			return true
		})
		if err := w.b.heartbeat(ctx, w.cfg.WorkerID, ids); err != nil && ctx.Err() == nil {
			w.log.Warn("gotasks: heartbeat failed", "err", err)
		}
	}
}

// rescue rescues the tasks of vanished workers (see Backend.rescue), sends
// TaskFinished for each, and wakes the workers and result waiters.
func (w *Worker) rescue(ctx context.Context, hb, run time.Time, orphansOf string) ([]*row, error) {
	release := w.b.order.holdRescue()
	defer release()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	rows, err := w.b.rescue(rctx, w.cfg.WorkerID, hb, run, orphansOf)
	cancel()
	if err != nil {
		return nil, err
	}
	var finished []string
	for _, r := range rows {
		signals.TaskFinished.Send(ctx, w.b.Name(), &r.RawResult)
		if r.Status.Finished() {
			finished = append(finished, r.ID)
		}
	}
	if len(rows) > 0 {
		w.b.hub.finished(finished...)
		w.b.hub.wake()
	}
	return rows, nil
}

// rescueLoop rescues tasks of vanished workers, at start-up and then every
// RescueAfter/2 (with jitter so that many workers spread out).
func (w *Worker) rescueLoop(ctx context.Context) {
	for {
		hb := now().Add(-w.cfg.RescueAfter)
		run := now().Add(-w.cfg.MaxRunTime - w.cfg.RescueAfter)
		rows, err := w.rescue(ctx, hb, run, "")
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.log.Warn("gotasks: rescue failed", "err", err)
		}
		for _, r := range rows {
			w.log.Warn("gotasks: rescued task of a vanished worker", "task", r.TaskName, "id", r.ID,
				"status", r.Status, "attempts", r.Attempts)
		}
		var jb [1]byte
		_, _ = rand.Read(jb[:])
		d := w.cfg.RescueAfter/2 + time.Duration(jb[0])*w.cfg.RescueAfter/2/512
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
