package database

import (
	"context"
	"runtime"
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
// The counts are exact: an index-only scan of gotasks_task_queue_idx (see
// docs/performance.md for its cost over a million rows).
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
		wg                                      sync.WaitGroup
		counts                                  map[string]map[tasks.Status]int64
		due                                     map[string]time.Time
		states                                  []QueueInfo
		minutes                                 []minuteStatus
		errCounts, errDue, errStates, errMinute error
	)
	wg.Go(func() { counts, errCounts = b.countByQueue(ctx) })
	wg.Go(func() { due, errDue = b.store.oldestDue(ctx, b.db.DB, at) })
	wg.Go(func() { states, errStates = b.store.queueStates(ctx, b.db.DB) })
	wg.Go(func() { minutes, errMinute = b.store.finishedPerMinute(ctx, b.db.DB, first) })
	wg.Wait()
	for _, e := range []struct {
		what string
		err  error
	}{{"counts", errCounts}, {"oldest due", errDue}, {"queues", errStates}, {"finished per minute", errMinute}} {
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

// countByQueue counts the tasks by queue and status. Where a statement
// runs on one core (featSerialScans: SQLite), the count is split by queue
// over up to four connections at once; a table whose tasks are nearly all
// in one queue gains nothing from the split.
func (b *Backend) countByQueue(ctx context.Context) (map[string]map[tasks.Status]int64, error) {
	if !b.has(featSerialScans) {
		return b.store.queueCounts(ctx, b.db.DB, "")
	}
	names, err := b.store.queueNames(ctx, b.db.DB)
	if err != nil || len(names) < 2 {
		if err != nil {
			return nil, err
		}
		return b.store.queueCounts(ctx, b.db.DB, "")
	}
	var (
		mu    sync.Mutex
		out   = map[string]map[tasks.Status]int64{}
		first error
		next  = make(chan string)
		wg    sync.WaitGroup
	)
	for range min(len(names), 4, max(2, runtime.GOMAXPROCS(0))) {
		wg.Go(func() {
			for q := range next {
				c, err := b.store.queueCounts(ctx, b.db.DB, q)
				mu.Lock()
				if err != nil && first == nil {
					first = err
				}
				for k, v := range c {
					out[k] = v
				}
				mu.Unlock()
			}
		})
	}
	for _, q := range names {
		next <- q
	}
	close(next)
	wg.Wait()
	return out, first
}
