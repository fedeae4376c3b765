package database

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/internal/startstop"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// completeGather is how long the completer waits for a fuller batch while
// more tasks are about to finish; it delays the recording of an outcome by
// at most this much.
const completeGather = 2 * time.Millisecond

// maxRecordBatch caps the outcomes recorded by one completion statement.
const maxRecordBatch = 500

// completer records the outcomes of attempts in batches: one statement for
// up to maxRecordBatch outcomes, gathered for at most completeGather while
// more tasks are about to finish. A failed write is retried with backoff
// (the database may be away for a while); outcomes are never dropped while
// the worker runs, only when a stop gives up on an unreachable database
// (abandon), and then the tasks are rescued later.
//
// Stop (through startstop) makes it record what is queued and exit.
type completer struct {
	startstop.Base
	b        *Backend
	log      *slog.Logger
	workerID string
	batch    int // target batch size: half the claim batch
	maxTasks int
	t        *tally
	outcomes <-chan *outcome
	// onMaxTasks is called (from the completer's goroutine) when MaxTasks
	// outcomes are recorded.
	onMaxTasks func()
	// startedAt is the worker's start, for plan generations.
	startedAt time.Time

	plan planTagger // owned by the completer's goroutine

	abandon     chan struct{} // closed by giveUp: stop retrying failed writes
	abandonOnce atomic.Bool
	records     atomic.Int64 // completion statements
	lost        atomic.Int64 // outcomes given up at a stop
}

func newCompleter(b *Backend, cfg WorkerConfig, log *slog.Logger, t *tally, outcomes <-chan *outcome, onMaxTasks func()) *completer {
	return &completer{
		b: b, log: log, workerID: cfg.WorkerID, t: t, outcomes: outcomes, onMaxTasks: onMaxTasks,
		batch:    min(maxRecordBatch, max(1, min(cfg.BatchSize, cfg.Concurrency)/2)),
		maxTasks: cfg.MaxTasks,
		abandon:  make(chan struct{}),
	}
}

// Start starts the completer's goroutine.
func (c *completer) Start(ctx context.Context) error {
	ctx, ok, stopped := c.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		defer close(stopped)
		c.loop(ctx)
	}()
	return nil
}

// flush stops the completer after it recorded every queued outcome; if ctx
// ends first, it gives up the writes that fail (giveUp) and waits for the
// goroutine to exit.
func (c *completer) flush(ctx context.Context) {
	if err := c.StopContext(ctx); err != nil {
		c.giveUp()
		c.Stop()
	}
}

// giveUp makes failing writes give up instead of retrying.
func (c *completer) giveUp() {
	if c.abandonOnce.CompareAndSwap(false, true) {
		close(c.abandon)
	}
}

// loop records outcomes until ctx is done and the outcomes queued by then
// are recorded.
func (c *completer) loop(ctx context.Context) {
	batch := make([]*outcome, 0, maxRecordBatch)
	for {
		var o *outcome
		select {
		case o = <-c.outcomes:
		case <-ctx.Done():
			select {
			case o = <-c.outcomes:
			default:
				return // flushed everything
			}
		}
		batch = c.gather(ctx, append(batch[:0], o))
		c.record(batch)
	}
}

// gather adds what is ready to batch and, while more tasks are about to
// finish, waits a little (completeGather) for a fuller batch: each
// statement is a commit, and tiny ones crowd out the claims (one writer on
// SQLite).
func (c *completer) gather(ctx context.Context, batch []*outcome) []*outcome {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(batch) < maxRecordBatch {
		select {
		case o := <-c.outcomes:
			batch = append(batch, o)
			continue
		default:
		}
		if len(batch) >= c.batch || c.t.pending() <= int64(len(batch)) {
			return batch
		}
		if timer == nil {
			timer = time.NewTimer(completeGather)
		}
		select {
		case o := <-c.outcomes:
			batch = append(batch, o)
		case <-timer.C:
			return batch
		case <-ctx.Done():
			return batch
		}
	}
	return batch
}

// record writes one batch of outcomes, retrying until it succeeds or the
// completer gives up.
func (c *completer) record(batch []*outcome) {
	if release := c.holdStarts(batch); release != nil {
		defer release()
	}
	delay := 100 * time.Millisecond
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		done, err := c.b.complete(ctx, c.workerID, c.plan.comment(c.b, c.t.processed.Load(), c.startedAt), batch)
		cancel()
		if err == nil {
			c.records.Add(1)
			c.afterRecord(batch, done)
			return
		}
		// WARN while retrying; ERROR below only when the completer gives up.
		c.log.Warn("gotasks: recording task outcomes failed; retrying", "err", err, "tasks", len(batch),
			"attempt", attempt, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-c.abandon:
			t.Stop()
			c.log.Error("gotasks: gave up recording task outcomes at shutdown; the tasks stay RUNNING until rescued",
				"tasks", len(batch))
			for _, o := range batch {
				c.t.inflight.Delete(o.rec.ID)
			}
			c.lost.Add(int64(len(batch)))
			c.t.processed.Add(int64(len(batch)))
			return
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// holdStarts holds the starts of the rows that recording batch makes
// claimable (see startOrder); release is nil when there are none.
func (c *completer) holdStarts(batch []*outcome) (release func()) {
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
	return c.b.order.hold(ids)
}

// afterRecord sends the signals of the recorded outcomes (done: those the
// guard let through), wakes waiters and workers, and counts.
func (c *completer) afterRecord(batch, done []*outcome) {
	for _, o := range batch {
		c.t.inflight.Delete(o.rec.ID)
	}
	if len(done) < len(batch) {
		ok := map[*outcome]bool{}
		for _, o := range done {
			ok[o] = true
		}
		for _, o := range batch {
			if !ok[o] {
				c.log.Warn("gotasks: outcome discarded: the task was rescued from this worker meanwhile",
					"task", o.rec.TaskName, "id", o.rec.ID, "attempt", o.attempt, "status", o.rec.Status)
			}
		}
	}
	ids := make([]string, 0, len(done))
	wakeNext := false
	for _, o := range done {
		ids = append(ids, o.rec.ID)
		signals.TaskFinished.Send(context.Background(), c.b.Name(), o.rec)
		if o.next != nil {
			signals.TaskEnqueued.Send(context.Background(), c.b.Name(), o.next)
		}
		if o.rec.Status == tasks.StatusReady && !o.rec.RunAfter.After(now()) {
			wakeNext = true
		}
	}
	c.b.hub.finished(ids...)
	if wakeNext {
		c.b.hub.wake()
	}
	n := c.t.processed.Add(int64(len(batch)))
	if c.maxTasks > 0 && n >= int64(c.maxTasks) {
		c.onMaxTasks()
	}
	c.t.signal()
}
