package database

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Stats windows: the default, and the longest Stats accepts.
const (
	DefaultStatsWindow = time.Hour
	MaxStatsWindow     = 24 * time.Hour
)

// Stats returns the overview of this backend: per queue, the number of
// tasks by status, the age of the oldest due READY task and whether it is
// paused; and the tasks finished per minute by status over the last window
// (DefaultStatsWindow when zero, at most MaxStatsWindow).
//
// The counts are exact: an index-only scan of gotasks_task_queue_idx (see
// docs/performance.md for its cost over a million rows).
func (b *Backend) Stats(ctx context.Context, window time.Duration) (*Stats, error) {
	if window <= 0 {
		window = DefaultStatsWindow
	}
	window = min(window, MaxStatsWindow)
	at := now()
	counts, err := b.store.queueCounts(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("stats: counts", err)
	}
	due, err := b.store.oldestDue(ctx, b.db.DB, at)
	if err != nil {
		return nil, b.wrapErr("stats: oldest due", err)
	}
	states, err := b.store.queueStates(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("stats: queues", err)
	}
	first := at.Add(-window).Truncate(time.Minute)
	minutes, err := b.store.finishedPerMinute(ctx, b.db.DB, first)
	if err != nil {
		return nil, b.wrapErr("stats: finished per minute", err)
	}

	st := &Stats{At: at}
	byName := map[string]*QueueStats{}
	queue := func(name string) *QueueStats {
		q := byName[name]
		if q == nil {
			q = &QueueStats{Queue: name, Counts: map[tasks.Status]int64{}}
			byName[name] = q
		}
		return q
	}
	for name, c := range counts {
		q := queue(name)
		for s, n := range c {
			q.Counts[s] = n
		}
	}
	for name, t := range due {
		q := queue(name)
		q.OldestDue, q.Age = t, max(at.Sub(t), 0)
	}
	for _, s := range states {
		if s.Paused {
			queue(s.Name).Paused = true
		}
	}
	for _, q := range byName {
		st.Queues = append(st.Queues, *q)
	}
	slices.SortFunc(st.Queues, func(x, y QueueStats) int { return strings.Compare(x.Queue, y.Queue) })
	st.Throughput = minuteSeries(first, at, minutes)
	return st, nil
}

// minuteSeries returns one MinuteCount per minute from first to the minute
// of last, filled from rows.
func minuteSeries(first, last time.Time, rows []minuteStatus) []MinuteCount {
	n := int(last.Truncate(time.Minute).Sub(first)/time.Minute) + 1
	out := make([]MinuteCount, n)
	for i := range out {
		out[i].Minute = first.Add(time.Duration(i) * time.Minute).UTC()
	}
	for _, r := range rows {
		i := int(r.minute.Sub(first) / time.Minute)
		if i < 0 || i >= n {
			continue
		}
		switch r.status {
		case tasks.StatusSuccessful:
			out[i].Successful += r.n
		case tasks.StatusFailed:
			out[i].Failed += r.n
		case tasks.StatusCancelled:
			out[i].Cancelled += r.n
		}
	}
	return out
}
