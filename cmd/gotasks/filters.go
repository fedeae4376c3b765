package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/cliflags"
	"github.com/gotasks/gotasks/tasks"
)

// filterFlags are the flags that select tasks: list, and retry / cancel /
// delete --all.
type filterFlags struct {
	statuses                       statusList
	queues                         listValue
	names                          listValue
	creator, verboseName, idPrefix string
	enqueuedAfter, enqueuedBefore  when
	finishedAfter, finishedBefore  when
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	fs.Var(&f.statuses, "status", "only tasks with this `status` (ready, running, successful, failed, cancelled;\nrepeatable or comma-separated)")
	f.queues.split = true
	fs.Var(&f.queues, "queue", "only tasks of this `queue` (repeatable or comma-separated)")
	fs.Var(&f.names, "task", "only tasks of this task `name` (repeatable)")
	fs.StringVar(&f.creator, "creator", "", "only tasks enqueued with this `creator` (exact)")
	fs.StringVar(&f.verboseName, "verbose-name", "", "only tasks with this verbose `name` (exact)")
	fs.StringVar(&f.idPrefix, "id-prefix", "", "only tasks whose id starts with this `prefix`")
	const whenHelp = "\n(an RFC 3339 time, or an age meaning that long ago: 30m, 2h, 1d, 1d12h, 2w)"
	fs.Var(&f.enqueuedAfter, "enqueued-after", "only tasks enqueued at or after `WHEN`"+whenHelp)
	fs.Var(&f.enqueuedBefore, "enqueued-before", "only tasks enqueued before `WHEN`")
	fs.Var(&f.finishedAfter, "finished-after", "only tasks finished at or after `WHEN`")
	fs.Var(&f.finishedBefore, "finished-before", "only tasks finished before `WHEN`")
}

// empty reports whether no filter flag was given.
func (f *filterFlags) empty() bool {
	return len(f.statuses) == 0 && len(f.queues.v) == 0 && len(f.names.v) == 0 && f.creator == "" &&
		f.verboseName == "" && f.idPrefix == "" && !f.enqueuedAfter.set && !f.enqueuedBefore.set &&
		!f.finishedAfter.set && !f.finishedBefore.set
}

// filter returns the database filter, ages counted back from now.
func (f *filterFlags) filter(now time.Time) database.TaskFilter {
	return database.TaskFilter{
		Statuses:       []tasks.Status(f.statuses),
		Queues:         f.queues.v,
		TaskNames:      f.names.v,
		Creator:        f.creator,
		VerboseName:    f.verboseName,
		IDPrefix:       f.idPrefix,
		EnqueuedAfter:  f.enqueuedAfter.at(now),
		EnqueuedBefore: f.enqueuedBefore.at(now),
		FinishedAfter:  f.finishedAfter.at(now),
		FinishedBefore: f.finishedBefore.at(now),
	}
}

// statusList is --status: statuses, case-insensitive, repeatable and
// comma-separated.
type statusList []tasks.Status

// String implements flag.Value.
func (s *statusList) String() string {
	if s == nil {
		return ""
	}
	parts := make([]string, len(*s))
	for i, st := range *s {
		parts[i] = strings.ToLower(string(st))
	}
	return strings.Join(parts, ",")
}

// Set implements flag.Value.
func (s *statusList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		st, err := parseStatus(p)
		if err != nil {
			return err
		}
		*s = append(*s, st)
	}
	return nil
}

// parseStatus reads a status in any case ("failed", "FAILED"; "canceled"
// is accepted for "cancelled").
func parseStatus(s string) (tasks.Status, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	if u == "CANCELED" {
		u = "CANCELLED"
	}
	st := tasks.Status(u)
	if !st.Valid() {
		return "", fmt.Errorf("status %q: want ready, running, successful, failed or cancelled", s)
	}
	return st, nil
}

// listValue is a repeatable string flag; with split, values are also
// comma-separated.
type listValue struct {
	v     []string
	split bool
}

// String implements flag.Value.
func (l *listValue) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.v, ",")
}

// Set implements flag.Value.
func (l *listValue) Set(s string) error {
	parts := []string{s}
	if l.split {
		parts = strings.Split(s, ",")
	}
	for _, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			return fmt.Errorf("%q: empty value", s)
		}
		l.v = append(l.v, p)
	}
	return nil
}

// when is a time flag: an RFC 3339 time, or an age counted back from the
// time the command runs.
type when struct {
	raw string
	abs time.Time
	ago time.Duration
	set bool
}

// String implements flag.Value.
func (w *when) String() string {
	if w == nil {
		return ""
	}
	return w.raw
}

// Set implements flag.Value.
func (w *when) Set(s string) error {
	s = strings.TrimSpace(s)
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		*w = when{raw: s, abs: t, set: true}
		return nil
	}
	d, err := parseAge(s)
	if err != nil {
		return fmt.Errorf("%q: want an RFC 3339 time (2026-12-01T15:04:05Z) or an age (30m, 2h, 1d, 1d12h, 2w)", s)
	}
	*w = when{raw: s, ago: d, set: true}
	return nil
}

// at returns the time: zero when unset.
func (w *when) at(now time.Time) time.Time {
	switch {
	case !w.set:
		return time.Time{}
	case !w.abs.IsZero():
		return w.abs
	}
	return now.Add(-w.ago)
}

// parseAge reads an age as the time filters take it (see
// cliflags.ParseAge). Unlike cmd/prune, a bare number is not accepted (days
// or seconds would be a guess).
func parseAge(s string) (time.Duration, error) { return cliflags.ParseAge(s, false) }
