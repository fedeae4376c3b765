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
type heartbeat struct {
	startstop.Base
	b        *Backend
	log      *slog.Logger
	workerID string
	interval time.Duration
	t        *tally
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
			if err := h.beat(ctx); err != nil && ctx.Err() == nil {
				h.log.Warn("gotasks: heartbeat failed", "err", err)
			}
		}
	}()
	return nil
}

// beat refreshes the lease of the held tasks once.
func (h *heartbeat) beat(ctx context.Context) error {
	if h.t.pending() == 0 {
		return nil
	}
	return h.b.heartbeat(ctx, h.workerID, h.t.heldIDs())
}
