package database

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// The admin API: what an operator needs to see and fix the tasks of a
// database backend (the dashboard and the gotasks command are built on it).
// Listing (admin_list.go), stats (admin_stats.go), retry / cancel / delete,
// one and in bulk (admin_actions.go), live workers (admin_workers.go) and
// queue pause / resume (admin_queues.go). Every method works on both
// dialects, on this backend's rows only, and never touches a RUNNING task.

// Order is the order of a task list.
type Order int

const (
	// NewestFirst lists the most recently enqueued tasks first (the
	// default).
	NewestFirst Order = iota
	// OldestFirst lists the oldest enqueued tasks first.
	OldestFirst
)

// String returns "newest" or "oldest".
func (o Order) String() string {
	if o == OldestFirst {
		return "oldest"
	}
	return "newest"
}

// ParseOrder reads "newest" (or "") and "oldest".
func ParseOrder(s string) (Order, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "newest", "desc":
		return NewestFirst, nil
	case "oldest", "asc":
		return OldestFirst, nil
	}
	return NewestFirst, fmt.Errorf("order %q: want newest or oldest", s)
}

// TaskFilter selects tasks for ListTasks and the bulk actions. Zero fields
// match everything; a field with several values matches any of them.
type TaskFilter struct {
	// Statuses, queues and task names to include.
	Statuses  []tasks.Status
	Queues    []string
	TaskNames []string
	// Creator and VerboseName match exactly.
	Creator     string
	VerboseName string
	// IDPrefix matches the tasks whose id starts with it (ids are
	// UUIDv7: a prefix narrows by enqueue time).
	IDPrefix string
	// EnqueuedAfter ≤ enqueued_at < EnqueuedBefore, each bound when set.
	EnqueuedAfter, EnqueuedBefore time.Time
	// FinishedAfter ≤ finished_at < FinishedBefore, each bound when set
	// (a bound leaves out unfinished tasks).
	FinishedAfter, FinishedBefore time.Time
}

// ListParams asks ListTasks for one page.
type ListParams struct {
	TaskFilter
	// Order of the list: NewestFirst (default) or OldestFirst.
	Order Order
	// Limit is the page size (default 50, at most 1,000).
	Limit int
	// Cursor is the NextCursor of the previous page ("" for the first).
	// A cursor belongs to its order: using it with the other order is an
	// error.
	Cursor string
}

// Default and maximum page sizes of ListTasks.
const (
	DefaultPageSize = 50
	MaxPageSize     = 1000
)

// TaskInfo is a stored task as an operator sees it: the result plus the
// columns the tasks API does not expose.
type TaskInfo struct {
	tasks.RawResult
	// WorkerID is the worker running the task (RUNNING only).
	WorkerID string
}

// TaskPage is one page of ListTasks.
type TaskPage struct {
	Tasks []*TaskInfo
	// NextCursor continues the list after the last task of this page; ""
	// when this page is the last.
	NextCursor string
}

// ErrBadCursor is returned for a cursor ListTasks did not make (or made
// for the other order).
var ErrBadCursor = errors.New("gotasks: bad list cursor")

// ErrNotRetryable is returned by RetryTask for a task that is not FAILED or
// CANCELLED.
var ErrNotRetryable = errors.New("gotasks: only FAILED or CANCELLED tasks can be retried")

// ErrNotDeletable is returned by DeleteTask for a task that has not
// finished.
var ErrNotDeletable = errors.New("gotasks: only finished tasks can be deleted")

// cursor is a position in a list: the id of the last task shown. Ids are
// UUIDv7 (time-ordered) and unique, so the id alone is the list's key.
type cursor struct {
	order Order
	id    string
}

func (c cursor) encode() string {
	return base64.RawURLEncoding.EncodeToString([]byte(c.order.String()[:1] + c.id))
}

func decodeCursor(s string, o Order) (*cursor, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) < 2 {
		return nil, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	if string(b[:1]) != o.String()[:1] {
		return nil, fmt.Errorf("%w: made for the %s-first order", ErrBadCursor, map[byte]string{'n': "newest", 'o': "oldest"}[b[0]])
	}
	return &cursor{order: o, id: string(b[1:])}, nil
}

// Stats is what the overview shows.
type Stats struct {
	// At is when the stats were read.
	At time.Time
	// Queues are the queues with tasks or a pause, by name.
	Queues []QueueStats
	// Throughput counts the tasks finished per minute by status over the
	// window asked for, oldest minute first; minutes with none are
	// included (zero), so the series is continuous.
	Throughput []MinuteCount
}

// QueueStats is one queue's line of the overview.
type QueueStats struct {
	Queue string
	// Counts by status (statuses with none are absent).
	Counts map[tasks.Status]int64
	// OldestDue is the run-after time of the oldest due READY task (zero
	// when none is due); Age is how long it has waited.
	OldestDue time.Time
	Age       time.Duration
	// Paused reports whether the queue is paused (see PauseQueue).
	Paused bool
}

// Total is the number of tasks in the queue.
func (q QueueStats) Total() int64 {
	var n int64
	for _, c := range q.Counts {
		n += c
	}
	return n
}

// MinuteCount is the number of tasks that finished in one minute, by
// status.
type MinuteCount struct {
	Minute     time.Time // the start of the minute, UTC
	Successful int64
	Failed     int64
	Cancelled  int64
}

// WorkerInfo is a live worker, as it registers itself in gotasks_worker
// and keeps current with every heartbeat.
type WorkerInfo struct {
	ID          string
	Host        string
	PID         int
	Queues      []string // nil: every queue
	Concurrency int
	StartedAt   time.Time
	HeartbeatAt time.Time
	// Running is the number of tasks the worker held at its last
	// heartbeat.
	Running int
}

// QueueInfo is a queue known to the backend: one that holds tasks, has
// been paused or has a limit.
type QueueInfo struct {
	Name     string
	Paused   bool
	PausedAt time.Time // zero when not paused
	// MaxRunning is the queue's global limit on RUNNING tasks across all
	// workers (Backend.SetQueueLimit); 0 when none.
	MaxRunning int
	// RateLimit and RatePeriod: at most RateLimit starts per RatePeriod
	// across all workers (Backend.SetQueueRateLimit); 0 when none.
	RateLimit  int
	RatePeriod time.Duration
}

// BulkResult reports a bulk action.
type BulkResult struct {
	// Affected is the number of tasks the action changed.
	Affected int64
	// IDs of the changed tasks, when asked for by id (not by filter).
	IDs []string
}
