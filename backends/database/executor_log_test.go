package database_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// execLogLine is a captured log line: level, message, and the attributes
// the test looks at.
type execLogLine struct {
	Level           slog.Level
	Msg             string
	TaskID, Attempt string
}

// execLogHandler captures the lines that name a task (task_id).
type execLogHandler struct {
	mu    *sync.Mutex
	lines *[]execLogLine
	attrs []slog.Attr
}

func (h *execLogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *execLogHandler) Handle(_ context.Context, r slog.Record) error {
	l := execLogLine{Level: r.Level, Msg: r.Message}
	set := func(a slog.Attr) bool {
		switch a.Key {
		case "task_id", "id":
			l.TaskID = a.Value.String()
		case "attempt":
			l.Attempt = a.Value.String()
		}
		return true
	}
	for _, a := range h.attrs {
		set(a)
	}
	r.Attrs(set)
	if l.TaskID == "" {
		return nil
	}
	h.mu.Lock()
	*h.lines = append(*h.lines, l)
	h.mu.Unlock()
	return nil
}

func (h *execLogHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *execLogHandler) WithGroup(string) slog.Handler { return h }

var execLogFails = tasks.Define("database_test.exec_log_fails", func(context.Context, int) (int, error) {
	return 0, errors.New("failing on purpose")
}, tasks.WithMaxAttempts(2), tasks.WithBackoff(tasks.ConstantBackoff(0)))

// TestExecutorLogs: a worker logs a task's attempts once each, through the
// one attempt path, on the worker's logger: start and success at DEBUG, a
// failed attempt to be retried at WARN, the final failure at ERROR.
func TestExecutorLogs(t *testing.T) {
	t.Parallel()
	wkBehaviour(t, "Levels", func(t *testing.T, bundle *testBundle) {
		b := bundle.b
		h := &execLogHandler{mu: new(sync.Mutex), lines: new([]execLogLine)}
		ok := wkEnqueue(t, wkOn(workerEcho, b), "ok")
		fails := wkEnqueue(t, wkOn(execLogFails, b), 1)
		if _, err := wkRun(t, b, database.WorkerConfig{Concurrency: 1, ExitWhenEmpty: true,
			PollInterval: 10 * time.Millisecond, Logger: slog.New(h)}); err != nil {
			t.Fatal(err)
		}
		h.mu.Lock()
		lines := append([]execLogLine(nil), *h.lines...)
		h.mu.Unlock()
		byID := map[string][]execLogLine{}
		for _, l := range lines {
			byID[l.TaskID] = append(byID[l.TaskID], l)
		}
		want := map[string][]execLogLine{
			ok.ID: {
				{slog.LevelDebug, "gotasks: task started", ok.ID, "1"},
				{slog.LevelDebug, "gotasks: task succeeded", ok.ID, "1"},
			},
			fails.ID: {
				{slog.LevelDebug, "gotasks: task started", fails.ID, "1"},
				{slog.LevelWarn, "gotasks: task attempt failed; will retry", fails.ID, "1"},
				{slog.LevelDebug, "gotasks: task started", fails.ID, "2"},
				{slog.LevelError, "gotasks: task failed", fails.ID, "2"},
			},
		}
		if d := cmp.Diff(want, byID); d != "" {
			t.Errorf("log lines by task (-want +got):\n%s", d)
		}
	})
}
