package database

import (
	"context"
	"slices"
	"strings"
	"sync"
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
// The counts are exact: on PostgreSQL an index-only scan of
// gotasks_task_queue_idx (see docs/performance.md for its cost over a
// million rows), on SQLite counters kept in the same transactions as the
// rows (see RecountFinished).
func (b *Backend) Stats(ctx context.Context, window time.Duration) (*Stats, error) {
	if window <= 0 {
		window = DefaultStatsWindow
	}
	window = min(window, MaxStatsWindow)
	at := now()
	first := at.Add(-window).Truncate(time.Minute)
	// The four reads are independent: run them at once, on connections of
	// their own.
	var (
		wg                                         sync.WaitGroup
		counts                                     map[string]map[tasks.Status]int64
		depths                                     []tasks.QueueDepth
		states                                     []QueueInfo
		minutes                                    []minuteStatus
		errCounts, errDepths, errStates, errMinute error
	)
	wg.Go(func() { counts, errCounts = b.countFinished(ctx) })
	wg.Go(func() { depths, errDepths = b.store.queueDepths(ctx, b.db.DB, at) })
	wg.Go(func() { states, errStates = b.store.queueStates(ctx, b.db.DB) })
	wg.Go(func() { minutes, errMinute = b.store.finishedPerMinute(ctx, b.db.DB, first) })
	wg.Wait()
	for _, e := range []struct {
		what string
		err  error
	}{{"counts", errCounts}, {"queue depths", errDepths}, {"queues", errStates}, {"finished per minute", errMinute}} {
		if e.err != nil {
			return nil, b.wrapErr("stats: "+e.what, e.err)
		}
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
	for _, d := range depths {
		q := queue(d.Queue)
		if n := d.Ready + d.Scheduled; n > 0 {
			q.Counts[tasks.StatusReady] = n
		}
		if d.Running > 0 {
			q.Counts[tasks.StatusRunning] = d.Running
		}
		if !d.OldestDue.IsZero() {
			q.OldestDue, q.Age = d.OldestDue, max(at.Sub(d.OldestDue), 0)
		}
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

// countFinished counts the finished tasks by queue and status (the READY
// and RUNNING ones are counted by the queue depths): on PostgreSQL an
// index-only scan of gotasks_task_queue_idx, on SQLite its counters
// (gotasks_count, store_sqlite_counts.go).
func (b *Backend) countFinished(ctx context.Context) (map[string]map[tasks.Status]int64, error) {
	return b.store.finishedCounts(ctx, b.db.DB, "")
}

var _ tasks.DepthReader = (*Backend)(nil)

// QueueDepths implements tasks.DepthReader: for each queue of this backend
// with READY or RUNNING tasks, sorted by name, how many READY tasks are due
// and how many deferred (scheduled), how many are RUNNING, and when the
// longest-waiting due one became due. Paused queues are counted like the
// others.
//
// It is one statement that reads the READY rows through the claim index and
// the RUNNING rows through the running index, never a finished row: its
// cost grows with the backlog, not with the table, and it is meant to be
// read at every metrics scrape (see docs/database.md for figures).
func (b *Backend) QueueDepths(ctx context.Context) ([]tasks.QueueDepth, error) {
	ds, err := b.store.queueDepths(ctx, b.db.DB, now())
	if err != nil {
		return nil, b.wrapErr("queue depths", err)
	}
	return ds, nil
}

// RecountFinished counts the backend's finished tasks afresh, for Stats.
//
// On SQLite, Stats reads counters of finished tasks by queue and status
// that every statement of gotasks keeps in the transaction that changes
// the rows. A hand edit of the gotasks_task table (an UPDATE of status, a
// DELETE) bypasses them; RecountFinished puts them right, counting every
// finished row once (about a quarter of a second a million rows, during
// which other writers wait). On PostgreSQL Stats counts the rows
// themselves and RecountFinished does nothing.
func (b *Backend) RecountFinished(ctx context.Context) error {
	unlock := b.writeLock()
	defer unlock()
	return b.wrapErr("recount", b.store.recountFinished(ctx, b.db.DB))
}
