package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Pausing a queue: a row in gotasks_queue with paused_at set. Every claim
// statement leaves paused queues out, so a pause takes effect at the next
// claim of every worker (at once, not at a poll); tasks already claimed
// finish. Enqueueing into a paused queue works as usual: the tasks wait.
// A resume wakes idle workers: on PostgreSQL every worker through
// LISTEN/NOTIFY, on SQLite those of this process (the others within a poll
// interval).

// ErrBadQueue is returned for a queue name that is empty or too long.
var ErrBadQueue = errors.New("gotasks: bad queue name")

// ListQueues returns the queues of this backend that hold tasks, have
// been paused or have a limit (SetQueueLimit, SetQueueRateLimit), by name.
func (b *Backend) ListQueues(ctx context.Context) ([]QueueInfo, error) {
	names, err := b.store.queueNames(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("list queues", err)
	}
	states, err := b.store.queueStates(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("list queues", err)
	}
	byName := map[string]QueueInfo{}
	for _, n := range names {
		byName[n] = QueueInfo{Name: n}
	}
	for _, s := range states {
		if _, ok := byName[s.Name]; ok || s.Paused {
			byName[s.Name] = s
		}
	}
	flows, err := b.store.queueFlows(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("list queues", err)
	}
	for _, f := range flows { // a limited queue is listed even without tasks
		qi, ok := byName[f.name]
		if !ok {
			qi = QueueInfo{Name: f.name}
			for _, s := range states {
				if s.Name == f.name {
					qi = s
				}
			}
		}
		qi.MaxRunning, qi.RateLimit = int(f.maxRunning.Int64), int(f.rateLimit.Int64)
		if qi.RateLimit > 0 {
			qi.RatePeriod = f.ratePeriod
		}
		byName[f.name] = qi
	}
	out := make([]QueueInfo, 0, len(byName))
	for _, q := range byName {
		out = append(out, q)
	}
	slices.SortFunc(out, func(x, y QueueInfo) int { return strings.Compare(x.Name, y.Name) })
	return out, nil
}

// PauseQueue pauses queue: no worker of this backend claims its tasks until
// ResumeQueue. Pausing a paused queue keeps its first pause time and
// is not an error.
func (b *Backend) PauseQueue(ctx context.Context, queue string) error {
	if err := checkQueueName(queue); err != nil {
		return err
	}
	t := now()
	unlock := b.writeLock()
	defer unlock()
	if err := b.store.setPaused(ctx, b.db.DB, queue, &t); err != nil {
		return b.wrapErr("pause queue", err)
	}
	return nil
}

// ResumeQueue resumes a paused queue and wakes idle workers. Resuming a
// queue that is not paused is not an error.
func (b *Backend) ResumeQueue(ctx context.Context, queue string) error {
	if err := checkQueueName(queue); err != nil {
		return err
	}
	unlock := b.writeLock()
	err := b.store.setPaused(ctx, b.db.DB, queue, nil)
	unlock()
	if err != nil {
		return b.wrapErr("resume queue", err)
	}
	b.hub.wake()
	return nil
}

func checkQueueName(q string) error {
	if q == "" || len(q) > 64 {
		return fmt.Errorf("%w: %q (1 to 64 bytes)", ErrBadQueue, q)
	}
	return nil
}
