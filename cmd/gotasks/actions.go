package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// action is retry, cancel or delete: by id, one at a time, or by filter
// with --all.
type action struct {
	name, past string // "retry", "retried"
	// one acts on one task; its error says why it could not.
	one func(ctx context.Context, b *database.Backend, id string) error
	// matching acts on every eligible task that matches f.
	matching func(ctx context.Context, b *database.Backend, f database.TaskFilter) (database.BulkResult, error)
}

// actionOptions are the flags of an action.
type actionOptions struct {
	filterFlags
	all bool
}

func (a *action) command(args, help string) *command {
	return &command{
		name: a.name,
		args: args,
		help: help,
		flags: func(fs *flag.FlagSet, c *cmdEnv) {
			o := &actionOptions{}
			o.filterFlags.register(fs)
			fs.BoolVar(&o.all, "all", false, "act on every task that matches the filters (required to act by filter)")
			c.opts = o
		},
		check: func(c *cmdEnv) string {
			o := c.opts.(*actionOptions)
			switch {
			case len(c.args) > 0 && o.all:
				return "give task IDs or --all, not both"
			case len(c.args) > 0 && !o.empty():
				return "filters select tasks only with --all, not with task IDs"
			case len(c.args) == 0 && !o.all && !o.empty():
				return fmt.Sprintf("filters select tasks only with --all: add --all to %s every matching task", a.name)
			case len(c.args) == 0 && !o.all:
				return "missing task IDs (or --all with filters)"
			}
			return ""
		},
		run: a.run,
	}
}

var (
	retryAction = &action{
		name: "retry", past: "retried",
		one: func(ctx context.Context, b *database.Backend, id string) error { return b.RetryTask(ctx, id) },
		matching: func(ctx context.Context, b *database.Backend, f database.TaskFilter) (database.BulkResult, error) {
			return b.RetryMatching(ctx, f)
		},
	}
	cancelAction = &action{
		name: "cancel", past: "cancelled",
		one: func(ctx context.Context, b *database.Backend, id string) error { return b.Cancel(ctx, id) },
		matching: func(ctx context.Context, b *database.Backend, f database.TaskFilter) (database.BulkResult, error) {
			return b.CancelMatching(ctx, f)
		},
	}
	deleteAction = &action{
		name: "delete", past: "deleted",
		one: func(ctx context.Context, b *database.Backend, id string) error { return b.DeleteTask(ctx, id) },
		matching: func(ctx context.Context, b *database.Backend, f database.TaskFilter) (database.BulkResult, error) {
			return b.DeleteMatching(ctx, f)
		},
	}

	retryCmd = retryAction.command("ID... | --all [filters] [--json]",
		`Puts FAILED or CANCELLED tasks back to READY, due now. The error history and
the attempt count are kept; when no attempt would be left, max attempts is
raised to attempts+1, so the task runs at least once more. By ID, or with
--all every FAILED or CANCELLED task that matches the filters (other tasks
are left alone).`)
	cancelCmd = cancelAction.command("ID... | --all [filters] [--json]",
		`Cancels READY tasks: they will not run. By ID, or with --all every READY
task that matches the filters (other tasks are left alone). A RUNNING task
cannot be cancelled.`)
	deleteCmd = deleteAction.command("ID... | --all [filters] [--json]",
		`Deletes finished tasks (SUCCESSFUL, FAILED or CANCELLED) and their results.
By ID, or with --all every finished task that matches the filters (READY and
RUNNING tasks are left alone).`)
)

// actionFailure is a task an action could not act on, in the JSON output.
type actionFailure struct {
	ID    string `json:"id"`
	Error string `json:"error"`
}

func (a *action) run(ctx context.Context, c *cmdEnv) error {
	o := c.opts.(*actionOptions)
	if o.all {
		f := o.filter(time.Now())
		res, err := a.matching(ctx, c.b, f)
		dup := errors.Is(err, database.ErrDuplicate) // the others were done: report them
		if err != nil && !dup {
			return err
		}
		if dup {
			defer fmt.Fprintf(c.stderr, "gotasks %s: some tasks were left alone: %s\n", a.name, duplicateMsg)
		}
		if c.json {
			if err := writeJSON(c.stdout, struct {
				Action   string `json:"action"`
				Affected int64  `json:"affected"`
			}{a.name, res.Affected}); err != nil || !dup {
				return err
			}
			return errReported
		}
		fmt.Fprintf(c.stdout, "%s %d %s\n", a.past, res.Affected, plural(res.Affected, "task", "tasks"))
		if dup {
			return errReported
		}
		return nil
	}
	done := []string{}
	failed := []actionFailure{}
	seen := map[string]bool{}
	for _, id := range c.args {
		if seen[id] {
			continue
		}
		seen[id] = true
		if err := a.one(ctx, c.b, id); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: %w", err)
			}
			msg := a.why(ctx, c.b, id, err)
			failed = append(failed, actionFailure{ID: id, Error: msg})
			fmt.Fprintf(c.stderr, "gotasks %s: %s\n", a.name, msg)
			continue
		}
		done = append(done, id)
		if !c.json {
			fmt.Fprintf(c.stdout, "%s %s\n", a.past, id)
		}
	}
	if c.json {
		if err := writeJSON(c.stdout, struct {
			Action   string          `json:"action"`
			Affected int             `json:"affected"`
			IDs      []string        `json:"ids"`
			Failed   []actionFailure `json:"failed"`
		}{a.name, len(done), done, failed}); err != nil {
			return err
		}
	}
	if len(failed) > 0 {
		return errReported
	}
	return nil
}

// duplicateMsg says why a retry was refused with database.ErrDuplicate.
const duplicateMsg = "a task with the same unique key is waiting or running"

// why says in one line why the action failed on a task.
func (a *action) why(ctx context.Context, b *database.Backend, id string, err error) string {
	status := func() string {
		if t, err := b.GetTask(ctx, id); err == nil {
			return fmt.Sprintf(" (it is %s)", t.Status)
		}
		return ""
	}
	switch {
	case errors.Is(err, tasks.ErrResultNotFound):
		return fmt.Sprintf("task %s: not found", id)
	case errors.Is(err, database.ErrNotRetryable):
		return fmt.Sprintf("task %s: not retryable: only FAILED or CANCELLED tasks can be retried%s", id, status())
	case errors.Is(err, tasks.ErrNotCancellable):
		return fmt.Sprintf("task %s: not cancellable: only READY tasks can be cancelled%s", id, status())
	case errors.Is(err, database.ErrNotDeletable):
		return fmt.Sprintf("task %s: not deletable: only finished tasks can be deleted%s", id, status())
	case errors.Is(err, database.ErrDuplicate):
		return fmt.Sprintf("task %s: not retried: %s", id, duplicateMsg)
	}
	return fmt.Sprintf("task %s: %s", id, oneLine(err.Error()))
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
