package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// statsOptions are the flags of stats.
type statsOptions struct {
	window  windowFlag
	recount bool
}

// windowFlag is --window: an age (1h, 30m, 1d).
type windowFlag struct{ d time.Duration }

// String implements flag.Value.
func (w *windowFlag) String() string {
	if w == nil {
		return ""
	}
	return fmtDuration(w.d)
}

// Set implements flag.Value.
func (w *windowFlag) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	w.d = d
	return nil
}

var statsCmd = &command{
	name: "stats",
	args: "[--window 1h] [--recount] [--json]",
	help: `Shows, per queue, the number of tasks by status, how long the oldest due READY
task has waited, and whether the queue is paused; then how many tasks finished
in the window, by status. --recount counts the finished tasks afresh first
(SQLite keeps counters of them, which a hand edit of the table bypasses).`,
	flags: func(fs *flag.FlagSet, c *cmdEnv) {
		o := &statsOptions{window: windowFlag{time.Hour}}
		fs.Var(&o.window, "window", "count the tasks finished in the last `AGE` (30m, 1h, 1d)")
		fs.BoolVar(&o.recount, "recount", false, "count the finished tasks afresh first (after a hand edit on SQLite)")
		c.opts = o
	},
	check: noArgs,
	run:   runStats,
}

// noArgs is the check of the sub-commands that take no argument.
func noArgs(c *cmdEnv) string {
	if len(c.args) > 0 {
		return fmt.Sprintf("unexpected argument %q", c.args[0])
	}
	return ""
}

// statuses in life-cycle order, for the columns and the JSON counts.
var statuses = []tasks.Status{tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled}

// jsonQueueStats is one queue in stats --json.
type jsonQueueStats struct {
	Queue  string                 `json:"queue"`
	Counts map[tasks.Status]int64 `json:"counts"`
	Total  int64                  `json:"total"`
	// OldestDue is the run-after time of the oldest due READY task, null
	// when none is due; OldestDueAgeSeconds how long it has waited.
	OldestDue           *time.Time `json:"oldest_due"`
	OldestDueAgeSeconds float64    `json:"oldest_due_age_seconds"`
	Paused              bool       `json:"paused"`
}

// jsonFinished counts finished tasks by status.
type jsonFinished struct {
	Successful int64 `json:"successful"`
	Failed     int64 `json:"failed"`
	Cancelled  int64 `json:"cancelled"`
}

// jsonMinute is one minute of the throughput.
type jsonMinute struct {
	Minute time.Time `json:"minute"`
	jsonFinished
}

func runStats(ctx context.Context, c *cmdEnv) error {
	o := c.opts.(*statsOptions)
	if o.recount {
		if err := c.b.RecountFinished(ctx); err != nil {
			return err
		}
	}
	st, err := c.b.Stats(ctx, o.window.d)
	if err != nil {
		return err
	}
	var total jsonFinished
	minutes := []jsonMinute{}
	for _, m := range st.Throughput {
		total.Successful += m.Successful
		total.Failed += m.Failed
		total.Cancelled += m.Cancelled
		minutes = append(minutes, jsonMinute{m.Minute, jsonFinished{m.Successful, m.Failed, m.Cancelled}})
	}
	if c.json {
		out := struct {
			At            time.Time        `json:"at"`
			WindowSeconds float64          `json:"window_seconds"`
			Queues        []jsonQueueStats `json:"queues"`
			Finished      jsonFinished     `json:"finished"`
			Throughput    []jsonMinute     `json:"throughput"`
		}{At: st.At, WindowSeconds: o.window.d.Seconds(), Queues: []jsonQueueStats{}, Finished: total, Throughput: minutes}
		for _, q := range st.Queues {
			j := jsonQueueStats{Queue: q.Queue, Counts: map[tasks.Status]int64{}, Total: q.Total(), Paused: q.Paused,
				OldestDueAgeSeconds: q.Age.Seconds()}
			for _, s := range statuses {
				j.Counts[s] = q.Counts[s]
			}
			if !q.OldestDue.IsZero() {
				t := q.OldestDue
				j.OldestDue = &t
			}
			out.Queues = append(out.Queues, j)
		}
		return writeJSON(c.stdout, out)
	}
	if len(st.Queues) == 0 {
		fmt.Fprintln(c.stdout, "no queues")
	} else {
		w := newTable(c.stdout)
		head := []any{"QUEUE"}
		for _, s := range statuses {
			head = append(head, s)
		}
		row(w, append(head, "TOTAL", "OLDEST DUE", "PAUSED")...)
		for _, q := range st.Queues {
			cells := []any{q.Queue}
			for _, s := range statuses {
				cells = append(cells, q.Counts[s])
			}
			paused := "no"
			if q.Paused {
				paused = "yes"
			}
			row(w, append(cells, q.Total(), fmtAge(q.Age), paused)...)
		}
		if err := w.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintf(c.stdout, "finished in the last %s: %d successful, %d failed, %d cancelled\n",
		fmtDuration(o.window.d), total.Successful, total.Failed, total.Cancelled)
	return nil
}

var workersCmd = &command{
	name:  "workers",
	args:  "[--json]",
	help:  `Lists the live workers of the backend: id, host, pid, queues, concurrency, the tasks running at the last heartbeat, start and heartbeat times.`,
	check: noArgs,
	run:   runWorkers,
}

// jsonWorker is a worker in workers --json.
type jsonWorker struct {
	ID          string    `json:"id"`
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	Queues      []string  `json:"queues"` // null: every queue
	Concurrency int       `json:"concurrency"`
	Running     int       `json:"running"`
	StartedAt   time.Time `json:"started_at"`
	HeartbeatAt time.Time `json:"heartbeat_at"`
}

func runWorkers(ctx context.Context, c *cmdEnv) error {
	ws, err := c.b.Workers(ctx)
	if err != nil {
		return err
	}
	if c.json {
		out := struct {
			Workers []jsonWorker `json:"workers"`
		}{Workers: []jsonWorker{}}
		for _, w := range ws {
			out.Workers = append(out.Workers, jsonWorker{ID: w.ID, Host: w.Host, PID: w.PID, Queues: w.Queues,
				Concurrency: w.Concurrency, Running: w.Running, StartedAt: w.StartedAt, HeartbeatAt: w.HeartbeatAt})
		}
		return writeJSON(c.stdout, out)
	}
	if len(ws) == 0 {
		fmt.Fprintln(c.stdout, "no live workers")
		return nil
	}
	w := newTable(c.stdout)
	row(w, "ID", "HOST", "PID", "QUEUES", "CONCURRENCY", "RUNNING", "STARTED", "HEARTBEAT")
	for _, x := range ws {
		queues := "*"
		if len(x.Queues) > 0 {
			queues = strings.Join(x.Queues, ",")
		}
		row(w, x.ID, x.Host, x.PID, queues, x.Concurrency, x.Running, fmtTime(x.StartedAt), fmtTime(x.HeartbeatAt))
	}
	return w.Flush()
}
