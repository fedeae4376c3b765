package dashboard

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// allStatuses are the statuses in life-cycle order.
var allStatuses = []tasks.Status{
	tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled,
}

// listQuery is the task list's query string: the filter form's fields as
// typed, and what they mean (Params).
type listQuery struct {
	Statuses       []string
	Queue          string // comma-separated
	Task           string // comma-separated
	Creator        string
	Verbose        string
	ID             string
	EnqueuedAfter  string
	EnqueuedBefore string
	FinishedAfter  string
	FinishedBefore string
	Order          string
	Limit          int
	Cursor         string

	Params database.ListParams
}

// The query parameters of the task list.
const (
	qStatus         = "status"
	qQueue          = "queue"
	qTask           = "task"
	qCreator        = "creator"
	qVerbose        = "verbose"
	qID             = "id"
	qEnqueuedAfter  = "enqueued_after"
	qEnqueuedBefore = "enqueued_before"
	qFinishedAfter  = "finished_after"
	qFinishedBefore = "finished_before"
	qOrder          = "order"
	qLimit          = "limit"
	qCursor         = "cursor"
)

// parseListQuery reads a task list's query string. Several values of
// status, queue and task (repeated or comma-separated) match any of them.
// Times are RFC 3339, or "2006-01-02T15:04[:05]" and "2006-01-02" in UTC.
func parseListQuery(v url.Values, defaultLimit int) (listQuery, error) {
	var q listQuery
	var errs []string
	p := &q.Params
	for _, s := range splitAll(v[qStatus]) {
		st := tasks.Status(strings.ToUpper(s))
		if !slices.Contains(allStatuses, st) {
			errs = append(errs, fmt.Sprintf("unknown status %q", s))
			continue
		}
		if !slices.Contains(p.Statuses, st) {
			p.Statuses = append(p.Statuses, st)
			q.Statuses = append(q.Statuses, string(st))
		}
	}
	p.Queues = splitAll(v[qQueue])
	q.Queue = strings.Join(p.Queues, ", ")
	p.TaskNames = splitAll(v[qTask])
	q.Task = strings.Join(p.TaskNames, ", ")
	q.Creator = strings.TrimSpace(v.Get(qCreator))
	p.Creator = q.Creator
	q.Verbose = strings.TrimSpace(v.Get(qVerbose))
	p.VerboseName = q.Verbose
	q.ID = strings.TrimSpace(v.Get(qID))
	p.IDPrefix = q.ID
	for _, tf := range []struct {
		name string
		raw  *string
		t    *time.Time
	}{
		{qEnqueuedAfter, &q.EnqueuedAfter, &p.EnqueuedAfter},
		{qEnqueuedBefore, &q.EnqueuedBefore, &p.EnqueuedBefore},
		{qFinishedAfter, &q.FinishedAfter, &p.FinishedAfter},
		{qFinishedBefore, &q.FinishedBefore, &p.FinishedBefore},
	} {
		s := strings.TrimSpace(v.Get(tf.name))
		if s == "" {
			continue
		}
		t, err := parseTime(s)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", strings.ReplaceAll(tf.name, "_", " "), err))
			continue
		}
		*tf.t = t
		*tf.raw = formatInputTime(t)
	}
	o, err := database.ParseOrder(v.Get(qOrder))
	if err != nil {
		errs = append(errs, err.Error())
	}
	p.Order = o
	q.Order = o.String()
	q.Limit = defaultLimit
	if s := v.Get(qLimit); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			errs = append(errs, fmt.Sprintf("limit %q: want a positive number", s))
		} else {
			q.Limit = min(n, database.MaxPageSize)
		}
	}
	p.Limit = q.Limit
	q.Cursor = v.Get(qCursor)
	p.Cursor = q.Cursor
	if len(errs) > 0 {
		return q, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return q, nil
}

// values encodes the query back (without the cursor unless withCursor,
// without the limit when it is the default).
func (q listQuery) values(defaultLimit int, withCursor bool) url.Values {
	v := url.Values{}
	for _, s := range q.Statuses {
		v.Add(qStatus, s)
	}
	set := func(k, s string) {
		if s != "" {
			v.Set(k, s)
		}
	}
	set(qQueue, strings.Join(q.Params.Queues, ","))
	set(qTask, strings.Join(q.Params.TaskNames, ","))
	set(qCreator, q.Creator)
	set(qVerbose, q.Verbose)
	set(qID, q.ID)
	set(qEnqueuedAfter, q.EnqueuedAfter)
	set(qEnqueuedBefore, q.EnqueuedBefore)
	set(qFinishedAfter, q.FinishedAfter)
	set(qFinishedBefore, q.FinishedBefore)
	if q.Order != database.NewestFirst.String() {
		set(qOrder, q.Order)
	}
	if q.Limit != defaultLimit {
		v.Set(qLimit, strconv.Itoa(q.Limit))
	}
	if withCursor {
		set(qCursor, q.Cursor)
	}
	return v
}

// filtered reports whether the query narrows the list.
func (q listQuery) filtered() bool {
	f := q.Params.TaskFilter
	return len(f.Statuses)+len(f.Queues)+len(f.TaskNames) > 0 || f.Creator != "" || f.VerboseName != "" ||
		f.IDPrefix != "" || !f.EnqueuedAfter.IsZero() || !f.EnqueuedBefore.IsZero() ||
		!f.FinishedAfter.IsZero() || !f.FinishedBefore.IsZero()
}

// HasStatus is for the filter form's checkboxes.
func (q listQuery) HasStatus(s tasks.Status) bool { return slices.Contains(q.Statuses, string(s)) }

func splitAll(vs []string) []string {
	var out []string
	for _, v := range vs {
		for _, s := range strings.Split(v, ",") {
			if s = strings.TrimSpace(s); s != "" && !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out
}

var timeLayouts = []string{"2006-01-02T15:04:05", "2006-01-02T15:04", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"}

func parseTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	for _, l := range timeLayouts {
		if t, err := time.ParseInLocation(l, s, time.UTC); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want a time like 2006-01-02T15:04 (UTC) or RFC 3339", s)
}

// formatInputTime formats t for an <input type="datetime-local">, in UTC.
func formatInputTime(t time.Time) string {
	t = t.UTC()
	switch {
	case t.Nanosecond() != 0:
		return t.Format("2006-01-02T15:04:05.999999999")
	case t.Second() != 0:
		return t.Format("2006-01-02T15:04:05")
	}
	return t.Format("2006-01-02T15:04")
}
