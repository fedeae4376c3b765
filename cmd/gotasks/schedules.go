package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/backends/database"
)

var schedulesCmd = &command{
	name: "schedules",
	args: "[--json]",
	help: `Lists the durable schedules (cron or interval) of the backend: their task, timing,
whether they are paused, their next and last run.`,
	check: noArgs,
	run:   runSchedules,
}

// jsonSchedule is a schedule in schedules --json.
type jsonSchedule struct {
	Name       string          `json:"name"`
	Task       string          `json:"task"`
	Args       json.RawMessage `json:"args"`
	Queue      string          `json:"queue"`
	Priority   int             `json:"priority"`
	Cron       string          `json:"cron,omitempty"`
	TimeZone   string          `json:"time_zone,omitempty"`
	Every      string          `json:"every,omitempty"` // a Go duration, such as "1m30s"
	Paused     bool            `json:"paused"`
	NextRunAt  time.Time       `json:"next_run_at"`
	LastRunAt  *time.Time      `json:"last_run_at"` // null before the first run
	LastTaskID string          `json:"last_task_id,omitempty"`
}

func runSchedules(ctx context.Context, c *cmdEnv) error {
	ss, err := c.b.ListSchedules(ctx)
	if err != nil {
		return err
	}
	if c.json {
		out := struct {
			Schedules []jsonSchedule `json:"schedules"`
		}{Schedules: []jsonSchedule{}}
		for _, s := range ss {
			j := jsonSchedule{Name: s.Name, Task: s.TaskName, Args: s.Args, Queue: s.Queue, Priority: s.Priority,
				Cron: s.Cron, TimeZone: s.TimeZone, Paused: s.Paused, NextRunAt: s.NextRunAt, LastTaskID: s.LastTaskID}
			if s.Every > 0 {
				j.Every = s.Every.String()
			}
			if !s.LastRunAt.IsZero() {
				t := s.LastRunAt
				j.LastRunAt = &t
			}
			out.Schedules = append(out.Schedules, j)
		}
		return writeJSON(c.stdout, out)
	}
	if len(ss) == 0 {
		fmt.Fprintln(c.stdout, "no schedules")
		return nil
	}
	w := newTable(c.stdout)
	row(w, "NAME", "TASK", "QUEUE", "WHEN", "PAUSED", "NEXT RUN", "LAST RUN")
	for _, s := range ss {
		row(w, s.Name, s.TaskName, s.Queue, scheduleWhen(s), yesNo(s.Paused), fmtTime(s.NextRunAt), fmtTime(s.LastRunAt))
	}
	return w.Flush()
}

// scheduleWhen is the timing of s in the table: the cron expression (and
// its zone), or "every" and the interval.
func scheduleWhen(s *database.Schedule) string {
	switch {
	case s.Every > 0:
		return "every " + s.Every.String()
	case s.TimeZone != "":
		return s.Cron + " (" + s.TimeZone + ")"
	}
	return s.Cron
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// scheduleActions are the actions of the schedule command, by name.
var scheduleActions = map[string]struct {
	do   func(*database.Backend) func(context.Context, string) error
	done string
}{
	"pause":  {func(b *database.Backend) func(context.Context, string) error { return b.PauseSchedule }, "paused"},
	"resume": {func(b *database.Backend) func(context.Context, string) error { return b.ResumeSchedule }, "resumed"},
	"delete": {func(b *database.Backend) func(context.Context, string) error { return b.DeleteSchedule }, "deleted"},
}

var scheduleCmd = &command{
	name: "schedule",
	args: "pause|resume|delete NAME",
	help: `Pauses, resumes or deletes a durable schedule. A paused schedule enqueues nothing;
a resumed one next runs at its first tick from now (the ticks it missed while
paused are not caught up). Deleting a schedule leaves the tasks it enqueued.`,
	noJSON: true,
	check: func(c *cmdEnv) string {
		switch {
		case len(c.args) == 0:
			return "missing action: pause, resume or delete"
		case scheduleActions[c.args[0]].do == nil:
			return fmt.Sprintf("unknown action %q: pause, resume or delete", c.args[0])
		case len(c.args) == 1:
			return "missing schedule name"
		case len(c.args) > 2:
			return fmt.Sprintf("unexpected argument %q (one schedule at a time)", c.args[2])
		}
		return ""
	},
	run: func(ctx context.Context, c *cmdEnv) error {
		a := scheduleActions[c.args[0]]
		if err := a.do(c.b)(ctx, c.args[1]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s schedule %s\n", a.done, c.args[1])
		return nil
	},
}
