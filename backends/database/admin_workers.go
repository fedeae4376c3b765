package database

import (
	"context"
	"os"
	"strconv"
	"strings"
	"time"
)

// Live workers: each Worker registers itself in gotasks_worker when it
// starts (registry.register), refreshes its row with every heartbeat
// (heartbeat time and the number of tasks it holds), and deletes it when
// it stops. A worker that vanished (killed, its machine lost) leaves a row
// whose heartbeat stops; the rescuer of any worker deletes rows older than
// its rescue delay, the same lease after which it puts that worker's tasks
// back. Workers therefore lists the workers whose heartbeat is recent.

// Workers returns the registered workers of this backend, oldest first.
func (b *Backend) Workers(ctx context.Context) ([]WorkerInfo, error) {
	ws, err := b.store.workers(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("list workers", err)
	}
	return ws, nil
}

// workerRow is the row a worker registers for cfg, started at at.
func workerRow(cfg WorkerConfig, at time.Time) WorkerInfo {
	host, _ := os.Hostname()
	pid := os.Getpid()
	// The default worker id is host:pid:random; a custom id keeps this
	// process's host and pid.
	if parts := strings.Split(cfg.WorkerID, ":"); len(parts) == 3 {
		if p, err := strconv.Atoi(parts[1]); err == nil && parts[0] == host {
			pid = p
		}
	}
	return WorkerInfo{ID: cfg.WorkerID, Host: host, PID: pid, Queues: cfg.Queues, Concurrency: cfg.Concurrency,
		StartedAt: at, HeartbeatAt: at}
}

// registerWorker inserts the worker's row. A failure is the caller's to
// log: the row is for operators, and tasks run without it.
func (b *Backend) registerWorker(ctx context.Context, w WorkerInfo) error {
	unlock := b.writeLock()
	defer unlock()
	return b.wrapErr("register worker", b.store.registerWorker(ctx, b.db.DB, w))
}

// touchWorker refreshes the worker's row, and registers the worker again
// when its row is gone (another worker's rescuer forgot it after an outage
// longer than the rescue delay).
func (b *Backend) touchWorker(ctx context.Context, w WorkerInfo, running int) error {
	unlock := b.writeLock()
	found, err := b.store.touchWorker(ctx, b.db.DB, w.ID, now(), running)
	unlock()
	if err != nil || found {
		return b.wrapErr("refresh worker row", err)
	}
	return b.registerWorker(ctx, w)
}

// unregisterWorker deletes the worker's row.
func (b *Backend) unregisterWorker(ctx context.Context, id string) error {
	unlock := b.writeLock()
	defer unlock()
	return b.wrapErr("unregister worker", b.store.unregisterWorker(ctx, b.db.DB, id))
}

// pruneWorkers deletes the rows of workers whose heartbeat is older than
// cutoff.
func (b *Backend) pruneWorkers(ctx context.Context, cutoff time.Time) (int64, error) {
	unlock := b.writeLock()
	defer unlock()
	n, err := b.store.pruneWorkers(ctx, b.db.DB, cutoff)
	return n, b.wrapErr("prune workers", err)
}
