package database

import (
	"context"
	"crypto/rand"
	"log/slog"
	"time"

	"github.com/gotasks/gotasks/internal/startstop"
	"github.com/gotasks/gotasks/signals"
)

// rescueTimeout bounds one rescue statement.
const rescueTimeout = 30 * time.Second

// rescuer finds the tasks of workers that vanished (crash, kill -9, a lost
// machine) and puts them back to READY, or FAILED when they have no attempt
// left (Backend.rescue has the rule). A RUNNING task is rescued when its
// lease (heartbeat) is older than RescueAfter, or it has been running for
// longer than MaxRunTime + RescueAfter. The worker rescues once before its
// first claim (rescueNow), then every RescueAfter/2 with jitter.
type rescuer struct {
	startstop.Base
	b           *Backend
	log         *slog.Logger
	workerID    string
	rescueAfter time.Duration
	maxRunTime  time.Duration
}

// Start starts the rescuer's periodic goroutine; its first round is one
// period after the start (the worker rescued before its first claim).
func (r *rescuer) Start(ctx context.Context) error {
	ctx, ok, stopped := r.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		defer close(stopped)
		for {
			var jb [1]byte
			_, _ = rand.Read(jb[:])
			t := time.NewTimer(r.rescueAfter/2 + time.Duration(jb[0])*r.rescueAfter/2/512)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			if _, err := r.rescueExpired(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("gotasks: rescue failed", "err", err)
			}
			if err := r.forgetVanished(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("gotasks: pruning the rows of vanished workers failed", "err", err)
			}
		}
	}()
	return nil
}

// rescueExpired rescues once the tasks whose lease or run time expired.
func (r *rescuer) rescueExpired(ctx context.Context) ([]*row, error) {
	hb := now().Add(-r.rescueAfter)
	run := now().Add(-r.maxRunTime - r.rescueAfter)
	rows, err := r.rescue(ctx, hb, run, "")
	for _, x := range rows {
		r.log.Warn("gotasks: rescued task of a vanished worker", "task", x.TaskName, "id", x.ID,
			"status", x.Status, "attempts", x.Attempts)
	}
	return rows, err
}

// forgetVanished deletes the gotasks_worker rows of workers whose heartbeat
// is older than the rescue delay: the workers whose tasks rescueExpired
// puts back.
func (r *rescuer) forgetVanished(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, rescueTimeout)
	defer cancel()
	n, err := r.b.pruneWorkers(rctx, now().Add(-r.rescueAfter))
	if n > 0 {
		r.log.Info("gotasks: forgot vanished workers", "workers", n)
	}
	return err
}

// rescueOrphans rescues the tasks still RUNNING under this worker's own id:
// they belong to an earlier process that used the same id.
func (r *rescuer) rescueOrphans(ctx context.Context) ([]*row, error) {
	rows, err := r.rescue(ctx, time.Time{}, time.Time{}, r.workerID)
	if len(rows) > 0 {
		r.log.Warn("gotasks: rescued tasks left RUNNING by an earlier worker with the same id", "tasks", len(rows))
	}
	return rows, err
}

// rescue runs one rescue statement (see Backend.rescue), sends TaskFinished
// for each rescued task, and wakes the workers and result waiters.
func (r *rescuer) rescue(ctx context.Context, hb, run time.Time, orphansOf string) ([]*row, error) {
	release := r.b.order.holdRescue()
	defer release()
	rctx, cancel := context.WithTimeout(ctx, rescueTimeout)
	rows, err := r.b.rescue(rctx, r.workerID, hb, run, orphansOf)
	cancel()
	if err != nil {
		return nil, err
	}
	var finished []string
	for _, x := range rows {
		signals.TaskFinished.Send(ctx, r.b.Name(), &x.RawResult)
		if x.Status.Finished() {
			finished = append(finished, x.ID)
		}
	}
	if len(rows) > 0 {
		r.b.hub.finished(finished...)
		r.b.hub.wake()
	}
	return rows, nil
}
