package database

import (
	"context"
	"log/slog"
	"time"

	"github.com/gotasks/gotasks/internal/startstop"
)

// heartbeat refreshes the lease (heartbeat_at) of the tasks this worker
// holds, every HeartbeatInterval. A task whose lease is older than
// RescueAfter is rescued by any worker (see rescuer).
//
// A failed refresh is logged at WARN and retried at the next interval; once
// refreshes have failed for RescueAfter, the leases may have expired, and
// the worker logs at ERROR (once per outage) that its tasks may be rescued
// and run again elsewhere.
type heartbeat struct {
	startstop.Base
	b           *Backend
	log         *slog.Logger
	workerID    string
	self        WorkerInfo // the worker's row (see Backend.touchWorker)
	interval    time.Duration
	rescueAfter time.Duration
	t           *tally

	// Owned by the heartbeat's goroutine: when the current run of failed
	// refreshes began (zero: the last one succeeded), and whether it was
	// reported at ERROR.
	failingSince time.Time
	reported     bool
}

// Start starts the heartbeat's goroutine.
func (h *heartbeat) Start(ctx context.Context) error {
	ctx, ok, stopped := h.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		defer close(stopped)
		t := time.NewTicker(h.interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			h.report(h.beat(ctx), ctx.Err() != nil, time.Now())
		}
	}()
	return nil
}

// beat refreshes the lease of the held tasks once, and the worker's row
// in gotasks_worker (which operators see as the worker's last heartbeat).
// Only the lease counts as the heartbeat: a row that cannot be written is
// logged at DEBUG (the database is away, and the lease's failure says so).
func (h *heartbeat) beat(ctx context.Context) error {
	held := h.t.pending()
	if err := h.b.touchWorker(ctx, h.self, int(held)); err != nil && ctx.Err() == nil {
		h.log.Debug("gotasks: could not refresh the worker's row", "err", err)
	}
	if held == 0 {
		return nil
	}
	return h.b.heartbeat(ctx, h.workerID, h.t.heldIDs())
}

// report logs the outcome of one refresh at time at: WARN for a failure
// while the leases are still valid, ERROR once when failures have lasted
// RescueAfter, INFO when refreshes work again after that. stopping
// suppresses errors caused by the stop.
func (h *heartbeat) report(err error, stopping bool, at time.Time) {
	if err == nil {
		if h.reported {
			h.log.Info("gotasks: heartbeat recovered", "outage", at.Sub(h.failingSince))
		}
		h.failingSince, h.reported = time.Time{}, false
		return
	}
	if stopping {
		return
	}
	if h.failingSince.IsZero() {
		h.failingSince = at
	}
	failing := at.Sub(h.failingSince)
	if h.rescueAfter > 0 && failing >= h.rescueAfter && !h.reported {
		h.reported = true
		h.log.Error("gotasks: heartbeat failing for longer than the rescue delay; other workers may rescue this worker's tasks and run them again",
			"err", err, "failing_for", failing, "rescue_after", h.rescueAfter, "tasks", h.t.pending())
		return
	}
	h.log.Warn("gotasks: heartbeat failed; retrying", "err", err, "failing_for", failing, "retry_in", h.interval)
}
