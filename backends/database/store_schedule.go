package database

import (
	"context"
	"database/sql"
	"time"
)

// The schedule statements of the store seam (schedule.go, scheduler.go).
// The statements both dialects share are methods of adminStatements, here;
// the claim of due schedules is each dialect's own
// (store_postgres_schedule.go, store_sqlite_schedule.go).

// scheduleStore runs the statements of durable schedules
// (gotasks_schedule). Times are UTC, at microsecond precision.
type scheduleStore interface {
	// upsertSchedule creates s, due at s.NextRunAt and paused if s.Paused,
	// or changes it; a change keeps the stored paused flag (only
	// setSchedulePaused changes it), and the stored next run unless the
	// timing (cron, time zone, interval) changed. at stamps the change.
	upsertSchedule(ctx context.Context, q querier, s *Schedule, at time.Time) error
	// getSchedule returns the schedule name (sql.ErrNoRows when there is
	// none).
	getSchedule(ctx context.Context, q querier, name string) (*Schedule, error)
	// listSchedules returns the backend's schedules by name.
	listSchedules(ctx context.Context, q querier) ([]*Schedule, error)
	// setSchedulePaused pauses or resumes schedule name; a non-zero next
	// becomes its next run. It reports whether the schedule exists.
	setSchedulePaused(ctx context.Context, q querier, name string, paused bool, next, at time.Time) (bool, error)
	// deleteSchedule deletes schedule name and reports whether it existed.
	deleteSchedule(ctx context.Context, q querier, name string) (bool, error)
	// nextScheduleAt returns the earliest next run of the backend's
	// schedules that are not paused (nil: none).
	nextScheduleAt(ctx context.Context, q querier) (*time.Time, error)
	// dueSchedules returns up to limit schedules, not paused, due at at,
	// earliest first, locked for the transaction q where the dialect
	// locks rows (skipping those another transaction holds).
	dueSchedules(ctx context.Context, q querier, at time.Time, limit int) ([]*Schedule, error)
	// advanceSchedule moves the next run of schedule name from was to next
	// and records the enqueued tick last and task id, only if its next run
	// still is was and it is not paused (the guard that makes a tick
	// enqueue once). It reports whether it did.
	advanceSchedule(ctx context.Context, q querier, name string, was, next, last time.Time, taskID string,
		at time.Time) (bool, error)
	// putOffSchedule moves the next run of schedule name from was to next
	// without a task (a schedule that cannot tick), only if its next run
	// still is was and it is not paused. It reports whether it did.
	putOffSchedule(ctx context.Context, q querier, name string, was, next, at time.Time) (bool, error)
}

// scheduleColumns are the columns scanSchedule reads, in order.
const scheduleColumns = `name, task_name, args, queue, priority, cron_spec, every_us, timezone, paused,
	next_run_at, last_run_at, last_task_id, created_at, updated_at`

// upsertScheduleSQL creates or changes a schedule. $1 backend, $2 name, $3
// task, $4 args, $5 queue, $6 priority, $7 cron, $8 interval (µs), $9 time
// zone, $10 paused, $11 next run, $12 now.
const upsertScheduleSQL = `INSERT INTO gotasks_schedule (backend, name, task_name, args, queue, priority,
		cron_spec, every_us, timezone, paused, next_run_at, created_at, updated_at)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)
	ON CONFLICT (backend, name) DO UPDATE SET task_name = excluded.task_name, args = excluded.args,
		queue = excluded.queue, priority = excluded.priority, cron_spec = excluded.cron_spec,
		every_us = excluded.every_us, timezone = excluded.timezone,
		next_run_at = CASE WHEN gotasks_schedule.cron_spec = excluded.cron_spec
			AND gotasks_schedule.every_us = excluded.every_us AND gotasks_schedule.timezone = excluded.timezone
			THEN gotasks_schedule.next_run_at ELSE excluded.next_run_at END,
		updated_at = excluded.updated_at`

func (a adminStatements) upsertSchedule(ctx context.Context, q querier, s *Schedule, at time.Time) error {
	_, err := q.ExecContext(ctx, upsertScheduleSQL, a.backendName(), s.Name, s.TaskName, string(s.Args), s.Queue,
		s.Priority, s.Cron, s.Every.Microseconds(), s.TimeZone, s.Paused, a.forms.ts(s.NextRunAt), a.forms.ts(at))
	return err
}

const getScheduleSQL = `SELECT ` + scheduleColumns + ` FROM gotasks_schedule WHERE backend = $1 AND name = $2`

func (a adminStatements) getSchedule(ctx context.Context, q querier, name string) (*Schedule, error) {
	return scanSchedule(q.QueryRowContext(ctx, getScheduleSQL, a.backendName(), name))
}

const listSchedulesSQL = `SELECT ` + scheduleColumns + ` FROM gotasks_schedule WHERE backend = $1 ORDER BY name`

func (a adminStatements) listSchedules(ctx context.Context, q querier) ([]*Schedule, error) {
	return querySchedules(ctx, q, listSchedulesSQL, a.backendName())
}

// setSchedulePausedSQL: $1 backend, $2 name, $3 paused, $4 next run (NULL:
// unchanged), $5 now.
const setSchedulePausedSQL = `UPDATE gotasks_schedule SET paused = $3, next_run_at = COALESCE($4, next_run_at),
	updated_at = $5 WHERE backend = $1 AND name = $2`

func (a adminStatements) setSchedulePaused(ctx context.Context, q querier, name string, paused bool, next, at time.Time) (bool, error) {
	var n any
	if !next.IsZero() {
		n = a.forms.ts(next)
	}
	res, err := q.ExecContext(ctx, setSchedulePausedSQL, a.backendName(), name, paused, n, a.forms.ts(at))
	return affected(res, err)
}

const deleteScheduleSQL = `DELETE FROM gotasks_schedule WHERE backend = $1 AND name = $2`

func (a adminStatements) deleteSchedule(ctx context.Context, q querier, name string) (bool, error) {
	res, err := q.ExecContext(ctx, deleteScheduleSQL, a.backendName(), name)
	return affected(res, err)
}

const nextScheduleSQL = `SELECT min(next_run_at) FROM gotasks_schedule WHERE backend = $1 AND NOT paused`

func (a adminStatements) nextScheduleAt(ctx context.Context, q querier) (*time.Time, error) {
	var t *time.Time
	if err := q.QueryRowContext(ctx, nextScheduleSQL, a.backendName()).Scan(dbTime{&t}); err != nil {
		return nil, err
	}
	return t, nil
}

// dueSchedulesSQL selects the due schedules; lock is appended (the
// dialect's row lock, or ""). $1 backend, $2 now, $3 limit.
func dueSchedulesSQL(lock string) string {
	return `SELECT ` + scheduleColumns + ` FROM gotasks_schedule
	WHERE backend = $1 AND NOT paused AND next_run_at <= $2 ORDER BY next_run_at LIMIT $3` + lock
}

// advanceScheduleSQL: $1 backend, $2 name, $3 the next run read, $4 the new
// next run, $5 the tick enqueued, $6 its task id, $7 now.
const advanceScheduleSQL = `UPDATE gotasks_schedule SET next_run_at = $4, last_run_at = $5, last_task_id = $6,
	updated_at = $7 WHERE backend = $1 AND name = $2 AND next_run_at = $3 AND NOT paused`

func (a adminStatements) advanceSchedule(ctx context.Context, q querier, name string, was, next, last time.Time,
	taskID string, at time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, advanceScheduleSQL, a.backendName(), name, a.forms.ts(was), a.forms.ts(next),
		a.forms.ts(last), taskID, a.forms.ts(at))
	return affected(res, err)
}

func affected(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func querySchedules(ctx context.Context, q querier, query string, args ...any) ([]*Schedule, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []*Schedule
	for rows.Next() {
		s, err := scanSchedule(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// scanSchedule reads one row of scheduleColumns.
func scanSchedule(sc interface{ Scan(dest ...any) error }) (*Schedule, error) {
	var (
		s                        Schedule
		everyUS                  int64
		next, last, created, upd *time.Time
	)
	err := sc.Scan(&s.Name, &s.TaskName, dbJSON{&s.Args}, &s.Queue, &s.Priority, &s.Cron, &everyUS, &s.TimeZone,
		&s.Paused, dbTime{&next}, dbTime{&last}, &s.LastTaskID, dbTime{&created}, dbTime{&upd})
	if err != nil {
		return nil, err
	}
	s.Every = time.Duration(everyUS) * time.Microsecond
	for _, p := range []struct {
		dst *time.Time
		src *time.Time
	}{{&s.NextRunAt, next}, {&s.LastRunAt, last}, {&s.CreatedAt, created}, {&s.UpdatedAt, upd}} {
		if p.src != nil {
			*p.dst = *p.src
		}
	}
	return &s, nil
}

// putOffScheduleSQL: $1 backend, $2 name, $3 the next run read, $4 the new
// next run, $5 now.
const putOffScheduleSQL = `UPDATE gotasks_schedule SET next_run_at = $4, updated_at = $5
	WHERE backend = $1 AND name = $2 AND next_run_at = $3 AND NOT paused`

func (a adminStatements) putOffSchedule(ctx context.Context, q querier, name string, was, next, at time.Time) (bool, error) {
	res, err := q.ExecContext(ctx, putOffScheduleSQL, a.backendName(), name, a.forms.ts(was), a.forms.ts(next), a.forms.ts(at))
	return affected(res, err)
}
