package database

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/gotasks/gotasks/tasks"
)

// ErrScheduleNotFound is returned (wrapped) by the schedule methods of
// Backend for a name that has no schedule.
var ErrScheduleNotFound = errors.New("schedule not found")

// Schedule is a durable, named schedule of a database backend: the task
// TaskName, with the fixed arguments Args, is enqueued at every tick of
// Cron (in TimeZone) or every Every. It is stored in the database
// (gotasks_schedule); the scheduler of every running worker enqueues
// exactly one task per due tick, however many workers run. A tick missed
// while no worker ran is caught up once (not once per missed tick): see
// docs/scheduling.md, "Cron schedules".
type Schedule struct {
	// Name identifies the schedule within its backend.
	Name string
	// TaskName is the registered name of the task to enqueue.
	TaskName string
	// Args is the JSON encoding of the task's arguments ("null" when
	// empty). ScheduleTask encodes them from the task's argument type.
	Args json.RawMessage
	// Queue is the queue of the enqueued tasks (default "default").
	Queue string
	// Priority is the priority of the enqueued tasks.
	Priority int
	// Cron is a cron expression: five fields (minute hour day-of-month
	// month day-of-week), an optional leading seconds field, or a
	// descriptor such as "@hourly" or "@every 90s". Exactly one of Cron
	// and Every is set.
	Cron string
	// TimeZone is the IANA time zone Cron is read in ("" for UTC), such as
	// "Europe/Paris". It is not used with Every.
	TimeZone string
	// Every is a fixed interval (at least a second when set), counted from
	// the schedule's first tick. Exactly one of Cron and Every is set.
	Every time.Duration
	// Paused schedules enqueue nothing until resumed. SetSchedule reads it
	// only when it creates the schedule: the paused state of an existing
	// schedule changes through PauseSchedule and ResumeSchedule alone.
	Paused bool
	// NextRunAt is the next tick (read only: set by the backend).
	NextRunAt time.Time
	// LastRunAt is the tick of the last enqueued task; zero before the
	// first (read only).
	LastRunAt time.Time
	// LastTaskID is the id of the last enqueued task (read only).
	LastTaskID string
	// CreatedAt and UpdatedAt are when the schedule was created and last
	// changed (read only).
	CreatedAt, UpdatedAt time.Time
}

// ScheduleSpec is when a schedule ticks, for ScheduleTask: a Cron
// expression (in TimeZone) or an interval Every; exactly one of them.
type ScheduleSpec struct {
	// Cron: see Schedule.Cron.
	Cron string
	// TimeZone: see Schedule.TimeZone.
	TimeZone string
	// Every: see Schedule.Every.
	Every time.Duration
}

// Cron returns the ScheduleSpec of a cron expression, read in UTC; set
// TimeZone on the result for another zone.
func Cron(spec string) ScheduleSpec { return ScheduleSpec{Cron: spec} }

// Every returns the ScheduleSpec of a fixed interval.
func Every(d time.Duration) ScheduleSpec { return ScheduleSpec{Every: d} }

// cronParser reads cron expressions: robfig/cron's standard five fields
// with an optional leading seconds field, and its descriptors.
var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month |
	cron.Dow | cron.Descriptor)

// ticker computes the ticks of a schedule.
type ticker struct {
	sched cron.Schedule  // nil for an interval
	loc   *time.Location // the zone cron is read in
	every time.Duration
}

// newTicker validates the timing fields of s. Errors wrap
// tasks.ErrInvalidTask.
func newTicker(s *Schedule) (*ticker, error) {
	switch {
	case s.Cron != "" && s.Every != 0:
		return nil, fmt.Errorf("%w: schedule %q: set Cron or Every, not both", tasks.ErrInvalidTask, s.Name)
	case s.Cron == "" && s.Every == 0:
		return nil, fmt.Errorf("%w: schedule %q: set Cron or Every", tasks.ErrInvalidTask, s.Name)
	case s.Every != 0:
		if s.Every < time.Second || s.Every%time.Microsecond != 0 {
			return nil, fmt.Errorf("%w: schedule %q: Every %v must be at least 1s, in whole microseconds",
				tasks.ErrInvalidTask, s.Name, s.Every)
		}
		if s.TimeZone != "" {
			return nil, fmt.Errorf("%w: schedule %q: TimeZone applies to Cron only", tasks.ErrInvalidTask, s.Name)
		}
		return &ticker{every: s.Every}, nil
	}
	if strings.HasPrefix(s.Cron, "TZ=") || strings.HasPrefix(s.Cron, "CRON_TZ=") {
		return nil, fmt.Errorf("%w: schedule %q: set the time zone in TimeZone, not in the cron expression",
			tasks.ErrInvalidTask, s.Name)
	}
	loc := time.UTC
	if s.TimeZone != "" {
		l, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			return nil, fmt.Errorf("%w: schedule %q: time zone %q: %w", tasks.ErrInvalidTask, s.Name, s.TimeZone, err)
		}
		loc = l
	}
	sched, err := cronParser.Parse(s.Cron)
	if err != nil {
		return nil, fmt.Errorf("%w: schedule %q: cron expression %q: %w", tasks.ErrInvalidTask, s.Name, s.Cron, err)
	}
	if sched.Next(time.Date(2000, 1, 1, 0, 0, 0, 0, loc)).IsZero() {
		return nil, fmt.Errorf("%w: schedule %q: cron expression %q never fires", tasks.ErrInvalidTask, s.Name, s.Cron)
	}
	return &ticker{sched: sched, loc: loc}, nil
}

// after returns the first tick strictly after t (in UTC, microseconds).
// For an interval, ticks are anchor + k·every: after keeps the phase of
// anchor (a past tick); a zero anchor starts from t.
func (k *ticker) after(t, anchor time.Time) time.Time {
	if k.sched == nil {
		if anchor.IsZero() || anchor.After(t) {
			return t.Add(k.every).UTC().Truncate(time.Microsecond)
		}
		n := t.Sub(anchor)/k.every + 1
		return anchor.Add(n * k.every).UTC().Truncate(time.Microsecond)
	}
	return k.sched.Next(t.In(k.loc)).UTC().Truncate(time.Microsecond)
}

// sameTiming reports whether a and b tick alike.
func sameTiming(a, b *Schedule) bool {
	return a.Cron == b.Cron && a.TimeZone == b.TimeZone && a.Every == b.Every
}
