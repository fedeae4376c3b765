package database

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/gotasks/gotasks/internal/startstop"
	"github.com/gotasks/gotasks/tasks"
)

// Scheduler timing.
const (
	// schedulerInterval is the longest a worker's scheduler waits between
	// rounds; it wakes sooner when a schedule is due sooner.
	schedulerInterval = time.Second
	// schedulerRetry is the wait after a round that left a schedule due
	// (held by another worker's round, or unreadable).
	schedulerRetry = 100 * time.Millisecond
	// schedulerBatch caps the schedules one round enqueues.
	schedulerBatch = 100
)

// scheduler enqueues the tasks of durable schedules (schedule.go). Every
// worker runs one (WorkerConfig.NoScheduler turns it off); their rounds
// claim each due tick once (Backend.enqueueDue), so the number of workers
// does not change the number of tasks.
type scheduler struct {
	startstop.Base
	b        *Backend
	log      *slog.Logger
	disabled bool
}

// Start starts the scheduler's goroutine (nothing when disabled).
func (s *scheduler) Start(ctx context.Context) error {
	if s.disabled {
		return nil
	}
	ctx, ok, stopped := s.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		defer close(stopped)
		t := time.NewTimer(0)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			t.Reset(s.round(ctx))
		}
	}()
	return nil
}

// round enqueues the due ticks, if any, and returns how long to wait for
// the next round.
func (s *scheduler) round(ctx context.Context) time.Duration {
	next, err := s.b.nextScheduleAt(ctx)
	if err == nil && next != nil && !next.After(now()) {
		var n int
		n, err = s.b.enqueueDue(ctx, schedulerBatch)
		if err == nil {
			if n > 0 {
				s.log.Debug("gotasks: scheduler enqueued", "tasks", n)
			}
			next, err = s.b.nextScheduleAt(ctx)
		}
	}
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("gotasks: scheduler round failed; retrying", "err", err, "retry_in", schedulerInterval)
		}
		return schedulerInterval
	}
	return untilNext(next, time.Now())
}

// untilNext is the wait before the round for a next run at next (nil:
// none), at most schedulerInterval.
func untilNext(next *time.Time, at time.Time) time.Duration {
	if next == nil {
		return schedulerInterval
	}
	d := next.Sub(at)
	switch {
	case d <= 0:
		return schedulerRetry
	case d > schedulerInterval:
		return schedulerInterval
	}
	return d
}

// nextScheduleAt returns the earliest next run of the backend's schedules
// that are not paused (nil: none).
func (b *Backend) nextScheduleAt(ctx context.Context) (*time.Time, error) {
	t, err := b.store.nextScheduleAt(ctx, b.db.DB)
	return t, b.wrapErr("scheduler", err)
}

// enqueueDue enqueues one task for each of up to limit due schedules, in
// one transaction, and returns how many it enqueued. Each due schedule's
// next run moves to its first tick strictly after now, whatever the ticks
// missed (the catch-up policy: a schedule due for many ticks, while no
// worker ran, enqueues one task, due at the first tick it missed). The
// advance is guarded by the next run read (and the rows are locked on
// PostgreSQL), and the task is inserted in the same transaction: a tick
// enqueues once however many workers run rounds at once.
func (b *Backend) enqueueDue(ctx context.Context, limit int) (int, error) {
	unlock := b.writeLock()
	defer unlock()
	at := now()
	tx, err := b.db.DB.BeginTx(ctx, nil)
	if err != nil {
		return 0, b.wrapErr("scheduler", err)
	}
	defer func() { _ = tx.Rollback() }()
	due, err := b.store.dueSchedules(ctx, tx, at, limit)
	if err != nil {
		return 0, b.wrapErr("scheduler", err)
	}
	var rs []*tasks.RawResult
	deferred := false // a broken schedule was put off
	// putOff moves a schedule that cannot tick or enqueue brokenRetry
	// ahead, so that it is logged once per brokenRetry instead of at
	// every round until someone fixes it.
	putOff := func(s *Schedule, msg string, err error) error {
		b.log.Error(msg, "schedule", s.Name, "err", err, "retry_in", brokenRetry.String())
		ok, err := b.store.putOffSchedule(ctx, tx, s.Name, s.NextRunAt, at.Add(brokenRetry), at)
		deferred = deferred || ok
		return err
	}
	for _, s := range due {
		k, err := newTicker(s)
		if err != nil {
			if err := putOff(s, "gotasks: schedule cannot tick; pause, change or delete it", err); err != nil {
				return 0, b.wrapErr("scheduler", err)
			}
			continue
		}
		r, err := b.scheduledTask(s, at)
		if err != nil {
			if err := putOff(s, "gotasks: schedule cannot enqueue; change or delete it", err); err != nil {
				return 0, b.wrapErr("scheduler", err)
			}
			continue
		}
		ok, err := b.store.advanceSchedule(ctx, tx, s.Name, s.NextRunAt, k.after(at, s.NextRunAt), s.NextRunAt, r.ID, at)
		if err != nil {
			return 0, b.wrapErr("scheduler", err)
		}
		if ok {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 && !deferred {
		return 0, nil
	}
	if len(rs) > 0 {
		if err := b.insert(ctx, tx, rs, at); err != nil {
			return 0, err
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, b.wrapErr("scheduler: commit", err)
	}
	b.afterEnqueue(ctx, rs, at)
	return len(rs), nil
}

// brokenRetry is how long a schedule that cannot tick or enqueue (an
// unknown time zone on this host, a spec or row that no longer parses) is
// put off before the next try.
const brokenRetry = time.Minute

// scheduledTask returns the READY row of the task of s for its due tick,
// enqueued at at.
func (b *Backend) scheduledTask(s *Schedule, at time.Time) (*tasks.RawResult, error) {
	req := &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: s.TaskName, Args: s.Args, Priority: s.Priority,
		Queue: s.Queue, RunAfter: s.NextRunAt}
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	r := req.NewRawResult(b.Name(), at)
	r.MaxAttempts = b.DefaultMaxAttempts()
	r.RunAfter = r.RunAfter.Truncate(time.Microsecond)
	if r.RunAfter.IsZero() {
		return nil, errors.New("no next run")
	}
	return r, nil
}
