package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// SetSchedule creates the schedule s.Name, or changes it: its task,
// arguments, queue, priority and timing become s's (the read-only fields
// of s are ignored). A new schedule first ticks at the first tick after
// now; it starts paused if s.Paused is set. A change keeps the schedule's
// paused state, whatever s.Paused (an operator's pause survives the
// application's start-up: pausing and resuming are PauseSchedule's and
// ResumeSchedule's), and its next run, unless its timing (Cron, TimeZone,
// Every) changed: then the next run is the first tick after now. Invalid
// fields are an error wrapping tasks.ErrInvalidTask.
func (b *Backend) SetSchedule(ctx context.Context, s Schedule) error {
	if err := b.checkSchedule(&s); err != nil {
		return err
	}
	k, err := newTicker(&s)
	if err != nil {
		return err
	}
	at := now()
	s.NextRunAt = k.after(at, at)
	unlock := b.writeLock()
	defer unlock()
	return b.wrapErr("set schedule", b.store.upsertSchedule(ctx, b.db.DB, &s, at))
}

// checkSchedule validates and normalises the fields of s other than its
// timing.
func (b *Backend) checkSchedule(s *Schedule) error {
	if s.Queue == "" {
		s.Queue = tasks.DefaultQueue
	}
	if len(s.Args) == 0 {
		s.Args = json.RawMessage("null")
	}
	for _, f := range []string{s.Name, s.TaskName, s.Queue, s.Cron, s.TimeZone} {
		if strings.IndexByte(f, 0) >= 0 {
			return fmt.Errorf("%w: schedule %q: NUL bytes cannot be stored", tasks.ErrInvalidTask, s.Name)
		}
	}
	switch {
	case s.Name == "" || len(s.Name) > 255:
		return fmt.Errorf("%w: schedule name %q must be 1-255 bytes", tasks.ErrInvalidTask, s.Name)
	case s.TaskName == "" || len(s.TaskName) > 255:
		return fmt.Errorf("%w: schedule %q: task name %q must be 1-255 bytes", tasks.ErrInvalidTask, s.Name, s.TaskName)
	case len(s.Queue) > 64:
		return fmt.Errorf("%w: schedule %q: queue %q is longer than 64 bytes", tasks.ErrInvalidTask, s.Name, s.Queue)
	case s.Priority < tasks.MinPriority || s.Priority > tasks.MaxPriority:
		return fmt.Errorf("%w: schedule %q: priority %d out of %d..%d", tasks.ErrInvalidTask, s.Name, s.Priority,
			tasks.MinPriority, tasks.MaxPriority)
	case !json.Valid(s.Args):
		return fmt.Errorf("%w: schedule %q: Args is not JSON", tasks.ErrInvalidTask, s.Name)
	}
	if qs := b.Queues(); len(qs) > 0 && !slices.Contains(qs, s.Queue) {
		return fmt.Errorf("%w: schedule %q: queue %q is not one of the backend's queues %v", tasks.ErrInvalidTask,
			s.Name, s.Queue, qs)
	}
	return nil
}

// ScheduleTask creates or changes the schedule name of task with the fixed
// arguments args (see Backend.SetSchedule): at every tick of spec, a task
// is enqueued with task's queue and priority. A new schedule starts
// unpaused; an existing one keeps its paused state, so that calling
// ScheduleTask at every start-up does not resume a schedule an operator
// paused.
//
//	err := database.ScheduleTask(ctx, b, "nightly-report", Report, ReportArgs{Kind: "daily"},
//		database.ScheduleSpec{Cron: "30 2 * * *", TimeZone: "Europe/Paris"})
func ScheduleTask[A, R any](ctx context.Context, b *Backend, name string, task *tasks.Task[A, R], args A,
	spec ScheduleSpec) error {
	raw, err := json.Marshal(args)
	if err != nil {
		return fmt.Errorf("%w: schedule %q: arguments of %q do not encode to JSON: %w", tasks.ErrInvalidTask, name,
			task.Name(), err)
	}
	if _, err := task.DecodeArgs(raw); err != nil {
		return fmt.Errorf("%w: schedule %q: arguments of %q do not survive a JSON round trip: %w",
			tasks.ErrInvalidTask, name, task.Name(), err)
	}
	return b.SetSchedule(ctx, Schedule{
		Name: name, TaskName: task.Name(), Args: raw, Queue: task.Queue(), Priority: task.Priority(),
		Cron: spec.Cron, TimeZone: spec.TimeZone, Every: spec.Every,
	})
}

// GetSchedule returns the schedule name, or an error wrapping
// ErrScheduleNotFound.
func (b *Backend) GetSchedule(ctx context.Context, name string) (*Schedule, error) {
	s, err := b.store.getSchedule(ctx, b.db.DB, name)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("gotasks: schedule %q: %w", name, ErrScheduleNotFound)
	}
	if err != nil {
		return nil, b.wrapErr("get schedule", err)
	}
	return s, nil
}

// ListSchedules returns the backend's schedules, by name.
func (b *Backend) ListSchedules(ctx context.Context) ([]*Schedule, error) {
	ss, err := b.store.listSchedules(ctx, b.db.DB)
	if err != nil {
		return nil, b.wrapErr("list schedules", err)
	}
	return ss, nil
}

// PauseSchedule pauses the schedule name: it enqueues nothing until
// resumed. Pausing a paused schedule does nothing. An unknown name is an
// error wrapping ErrScheduleNotFound.
func (b *Backend) PauseSchedule(ctx context.Context, name string) error {
	unlock := b.writeLock()
	defer unlock()
	ok, err := b.store.setSchedulePaused(ctx, b.db.DB, name, true, time.Time{}, now())
	if err != nil {
		return b.wrapErr("pause schedule", err)
	}
	if !ok {
		return fmt.Errorf("gotasks: schedule %q: %w", name, ErrScheduleNotFound)
	}
	return nil
}

// ResumeSchedule resumes the schedule name. Its next run is its first tick
// after now: the ticks it missed while paused are not caught up. Resuming
// a schedule that is not paused does nothing. An unknown name is an error
// wrapping ErrScheduleNotFound.
func (b *Backend) ResumeSchedule(ctx context.Context, name string) error {
	s, err := b.GetSchedule(ctx, name)
	if err != nil {
		return err
	}
	if !s.Paused {
		return nil
	}
	k, err := newTicker(s)
	if err != nil {
		return err
	}
	at := now()
	unlock := b.writeLock()
	defer unlock()
	ok, err := b.store.setSchedulePaused(ctx, b.db.DB, name, false, k.after(at, s.NextRunAt), at)
	if err != nil {
		return b.wrapErr("resume schedule", err)
	}
	if !ok {
		return fmt.Errorf("gotasks: schedule %q: %w", name, ErrScheduleNotFound)
	}
	return nil
}

// DeleteSchedule deletes the schedule name; the tasks it enqueued stay.
// An unknown name is an error wrapping ErrScheduleNotFound.
func (b *Backend) DeleteSchedule(ctx context.Context, name string) error {
	unlock := b.writeLock()
	defer unlock()
	ok, err := b.store.deleteSchedule(ctx, b.db.DB, name)
	if err != nil {
		return b.wrapErr("delete schedule", err)
	}
	if !ok {
		return fmt.Errorf("gotasks: schedule %q: %w", name, ErrScheduleNotFound)
	}
	return nil
}
