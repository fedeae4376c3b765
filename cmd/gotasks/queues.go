package main

import (
	"context"
	"fmt"
	"time"
)

var queuesCmd = &command{
	name:  "queues",
	args:  "[--json]",
	help:  `Lists the queues that hold tasks or are paused, and whether they are paused.`,
	check: noArgs,
	run:   runQueues,
}

// jsonQueue is a queue in queues --json.
type jsonQueue struct {
	Name     string     `json:"name"`
	Paused   bool       `json:"paused"`
	PausedAt *time.Time `json:"paused_at"` // null when not paused
}

func runQueues(ctx context.Context, c *cmdEnv) error {
	qs, err := c.b.ListQueues(ctx)
	if err != nil {
		return err
	}
	if c.json {
		out := struct {
			Queues []jsonQueue `json:"queues"`
		}{Queues: []jsonQueue{}}
		for _, q := range qs {
			j := jsonQueue{Name: q.Name, Paused: q.Paused}
			if !q.PausedAt.IsZero() {
				t := q.PausedAt
				j.PausedAt = &t
			}
			out.Queues = append(out.Queues, j)
		}
		return writeJSON(c.stdout, out)
	}
	if len(qs) == 0 {
		fmt.Fprintln(c.stdout, "no queues")
		return nil
	}
	w := newTable(c.stdout)
	row(w, "QUEUE", "PAUSED", "PAUSED AT")
	for _, q := range qs {
		paused := "no"
		if q.Paused {
			paused = "yes"
		}
		row(w, q.Name, paused, fmtTime(q.PausedAt))
	}
	return w.Flush()
}

// queueArg is the check of pause and resume: one queue name.
func queueArg(c *cmdEnv) string {
	switch {
	case len(c.args) == 0:
		return "missing queue name"
	case len(c.args) > 1:
		return fmt.Sprintf("unexpected argument %q (one queue at a time)", c.args[1])
	case c.args[0] == "" || c.args[0] == "*":
		return fmt.Sprintf("queue %q: give a queue name", c.args[0])
	}
	return ""
}

var pauseCmd = &command{
	name: "pause",
	args: "QUEUE",
	help: `Pauses a queue: workers stop claiming its tasks (tasks already running finish).
Tasks can still be enqueued to it. Pausing a paused queue does nothing.`,
	check:  queueArg,
	noJSON: true,
	run: func(ctx context.Context, c *cmdEnv) error {
		if err := c.b.PauseQueue(ctx, c.args[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "paused queue %s\n", c.args[0])
		return nil
	},
}

var resumeCmd = &command{
	name: "resume",
	args: "QUEUE",
	help: `Resumes a paused queue: workers claim its tasks again. Resuming a queue that
is not paused does nothing.`,
	check:  queueArg,
	noJSON: true,
	run: func(ctx context.Context, c *cmdEnv) error {
		if err := c.b.ResumeQueue(ctx, c.args[0]); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "resumed queue %s\n", c.args[0])
		return nil
	},
}
