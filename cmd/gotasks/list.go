package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// listOptions are the flags of list.
type listOptions struct {
	filterFlags
	order, cursor string
	limit         int
}

var listCmd = &command{
	name: "list",
	args: "[filters] [--order newest|oldest] [--limit N] [--cursor C] [--json]",
	help: `Lists the tasks that match the filters, a page at a time (newest first by
default). When there are more, the last line gives the --cursor of the next
page (with --json: "next_cursor"; "" on the last page).

Times: an RFC 3339 time, or an age meaning that long ago (30m, 2h, 1d, 1d12h, 2w).`,
	flags: func(fs *flag.FlagSet, c *cmdEnv) {
		o := &listOptions{}
		o.filterFlags.register(fs)
		fs.StringVar(&o.order, "order", "newest", "`order` of the list: newest or oldest (by enqueue time)")
		fs.IntVar(&o.limit, "limit", database.DefaultPageSize, fmt.Sprintf("list at most `N` tasks (at most %d)", database.MaxPageSize))
		fs.StringVar(&o.cursor, "cursor", "", "continue after the page that printed this `cursor`")
		c.opts = o
	},
	check: func(c *cmdEnv) string {
		o := c.opts.(*listOptions)
		if len(c.args) > 0 {
			return fmt.Sprintf("unexpected argument %q", c.args[0])
		}
		if _, err := database.ParseOrder(o.order); err != nil {
			return "--" + err.Error()
		}
		if o.limit < 1 || o.limit > database.MaxPageSize {
			return fmt.Sprintf("--limit %d: want 1 to %d", o.limit, database.MaxPageSize)
		}
		return ""
	},
	run: runList,
}

func runList(ctx context.Context, c *cmdEnv) error {
	o := c.opts.(*listOptions)
	order, _ := database.ParseOrder(o.order)
	page, err := c.b.ListTasks(ctx, database.ListParams{
		TaskFilter: o.filter(time.Now()), Order: order, Limit: o.limit, Cursor: o.cursor,
	})
	if err != nil {
		if errors.Is(err, database.ErrBadCursor) {
			return usagef("--cursor: %v", err)
		}
		return err
	}
	if c.json {
		out := struct {
			Tasks      []jsonTask `json:"tasks"`
			NextCursor string     `json:"next_cursor"`
		}{Tasks: []jsonTask{}, NextCursor: page.NextCursor}
		for _, t := range page.Tasks {
			out.Tasks = append(out.Tasks, toJSONTask(t))
		}
		return writeJSON(c.stdout, out)
	}
	if len(page.Tasks) == 0 {
		fmt.Fprintln(c.stdout, "no tasks")
		return nil
	}
	w := newTable(c.stdout)
	row(w, "ID", "STATUS", "QUEUE", "TASK", "ATTEMPTS", "ENQUEUED", "FINISHED", "LAST ERROR")
	for _, t := range page.Tasks {
		lastErr := ""
		if e := t.LastError(); e != nil {
			lastErr = e.Message
		}
		row(w, t.ID, t.Status, t.Queue, cell(t.TaskName, 40), attempts(&t.RawResult),
			fmtTime(t.EnqueuedAt), fmtTimePtr(t.FinishedAt), cell(lastErr, 60))
	}
	if err := w.Flush(); err != nil {
		return err
	}
	if page.NextCursor != "" {
		fmt.Fprintf(c.stdout, "next page: --cursor %s\n", page.NextCursor)
	}
	return nil
}

// attempts shows "attempts/max" ("2/default" when the backend's default
// applies).
func attempts(r *tasks.RawResult) string {
	limit := "default"
	if r.MaxAttempts > 0 {
		limit = strconv.Itoa(r.MaxAttempts)
	}
	return fmt.Sprintf("%d/%s", r.Attempts, limit)
}

var showCmd = &command{
	name: "show",
	args: "ID [--json]",
	help: `Shows every field of one task: its arguments and return value pretty-printed,
every failed attempt's error with its stack, its times, the workers that ran it,
its creator, verbose name and metadata. With --json, the task as one JSON object.`,
	check: func(c *cmdEnv) string {
		switch {
		case len(c.args) == 0:
			return "missing task ID"
		case len(c.args) > 1:
			return fmt.Sprintf("unexpected argument %q (one task ID at a time)", c.args[1])
		}
		return ""
	},
	run: runShow,
}

func runShow(ctx context.Context, c *cmdEnv) error {
	t, err := c.b.GetTask(ctx, c.args[0])
	if err != nil {
		if errors.Is(err, tasks.ErrResultNotFound) {
			return fmt.Errorf("task %s: %w", c.args[0], tasks.ErrResultNotFound)
		}
		return err
	}
	if c.json {
		return writeJSON(c.stdout, toJSONTask(t))
	}
	return printTask(c.stdout, t)
}

// printTask writes a task for people.
func printTask(out io.Writer, t *database.TaskInfo) error {
	w := newTable(out)
	opt := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	dur := func(d time.Duration) string {
		if d == 0 {
			return "-"
		}
		return d.String()
	}
	row(w, "ID:", t.ID)
	row(w, "Task:", t.TaskName)
	row(w, "Verbose name:", opt(t.VerboseName))
	row(w, "Status:", t.Status)
	row(w, "Queue:", t.Queue)
	row(w, "Priority:", t.Priority)
	row(w, "Backend:", t.Backend)
	row(w, "Creator:", opt(t.Creator))
	row(w, "Attempts:", attempts(&t.RawResult))
	row(w, "Timeout:", dur(t.Timeout))
	if t.Repeat != 0 {
		row(w, "Repeat:", t.Repeat.String())
		row(w, "Repeat until:", fmtTimePtr(t.RepeatUntil))
	}
	row(w, "Enqueued:", fmtTime(t.EnqueuedAt))
	row(w, "Run after:", fmtTime(t.RunAfter))
	row(w, "Started:", fmtTimePtr(t.StartedAt))
	row(w, "Last attempted:", fmtTimePtr(t.LastAttemptedAt))
	row(w, "Finished:", fmtTimePtr(t.FinishedAt))
	if t.WorkerID != "" {
		row(w, "Running on:", t.WorkerID)
	}
	row(w, "Workers:", opt(strings.Join(t.WorkerIDs, ", ")))
	if err := w.Flush(); err != nil {
		return err
	}
	printMetadata(out, t.Metadata)
	fmt.Fprintln(out, "Args:")
	fmt.Fprintln(out, indentJSON(t.Args))
	if t.ReturnValue != nil {
		fmt.Fprintln(out, "Return value:")
		fmt.Fprintln(out, indentJSON(t.ReturnValue))
	}
	if len(t.Errors) == 0 {
		fmt.Fprintln(out, "Errors: none")
		return nil
	}
	fmt.Fprintf(out, "Errors (%d):\n", len(t.Errors))
	for _, e := range t.Errors {
		fmt.Fprintf(out, "  attempt %d at %s: %s: %s\n", e.Attempt, fmtTime(e.At), e.Type, indent(e.Message, "    "))
		if e.Stack != "" {
			fmt.Fprintln(out, "    "+indent(strings.TrimRight(e.Stack, "\n"), "    "))
		}
	}
	return nil
}

// printMetadata writes a task's metadata, one "key: value" line per
// entry sorted by key.
func printMetadata(out io.Writer, md map[string]string) {
	if len(md) == 0 {
		fmt.Fprintln(out, "Metadata: none")
		return
	}
	fmt.Fprintf(out, "Metadata (%d):\n", len(md))
	for _, k := range slices.Sorted(maps.Keys(md)) {
		fmt.Fprintf(out, "  %s: %s\n", plainOrQuoted(k), plainOrQuoted(md[k]))
	}
}

// plainOrQuoted returns s as it is when it prints as one plain line, else
// Go-quoted: empty, with surrounding spaces, a line break, a control
// character (a terminal escape) or invalid UTF-8.
func plainOrQuoted(s string) string {
	if s == "" || strings.TrimSpace(s) != s || !utf8.ValidString(s) ||
		strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return strconv.Quote(s)
	}
	return s
}

// indentJSON pretty-prints a JSON value, indented by two spaces.
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "  null"
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "  ", "  "); err != nil {
		return "  " + string(raw)
	}
	return "  " + b.String()
}

// indent indents the lines after the first of s by prefix.
func indent(s, prefix string) string {
	return strings.ReplaceAll(s, "\n", "\n"+prefix)
}
