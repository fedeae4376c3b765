package tasks_test

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/tasks"
)

// logLine is one captured log record: its level, message and attributes
// (those of the logger's With included), values as strings.
type logLine struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// captureHandler is a slog.Handler that keeps every record.
type captureHandler struct {
	mu    *sync.Mutex
	lines *[]logLine
	attrs []slog.Attr
}

func newCapture() (*slog.Logger, func() []logLine) {
	h := &captureHandler{mu: new(sync.Mutex), lines: new([]logLine)}
	return slog.New(h), func() []logLine {
		h.mu.Lock()
		defer h.mu.Unlock()
		return append([]logLine(nil), *h.lines...)
	}
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	l := logLine{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		l.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { l.Attrs[a.Key] = a.Value.String(); return true })
	h.mu.Lock()
	*h.lines = append(*h.lines, l)
	h.mu.Unlock()
	return nil
}

func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), as...)
	return &c
}

func (h *captureHandler) WithGroup(string) slog.Handler { return h }

// TestAttemptLogs: RunAttempt logs the start and a success at DEBUG, a
// failure to be retried at WARN, a final failure at ERROR with the error
// (and the stack of a panic), a snooze at DEBUG; every line carries the
// task's attributes, and so do the task's own lines (tasks.Logger).
func TestAttemptLogs(t *testing.T) {
	t.Parallel()
	running := dummy.New(tasks.WithName("tasks_test.logs")) // can defer: snoozes
	backend := &tasks.BackendConfig{MaxAttempts: 3, Backoff: tasks.ConstantBackoff(time.Hour)}
	type line struct {
		Level slog.Level
		Msg   string
	}
	for _, c := range []struct {
		name     string
		mode     string
		attempts int
		want     []line
		keys     []string // attributes the last line must have
	}{
		{"success", "ok", 1, []line{{slog.LevelDebug, "gotasks: task started"}, {slog.LevelDebug, "gotasks: task succeeded"}},
			[]string{"duration"}},
		{"retried failure", "fail", 1, []line{{slog.LevelDebug, "gotasks: task started"},
			{slog.LevelWarn, "gotasks: task attempt failed; will retry"}}, []string{"err", "error_type", "retry_at"}},
		{"final failure", "fail", 3, []line{{slog.LevelDebug, "gotasks: task started"},
			{slog.LevelError, "gotasks: task failed"}}, []string{"err", "error_type"}},
		{"panic", "panic", 3, []line{{slog.LevelDebug, "gotasks: task started"},
			{slog.LevelError, "gotasks: task failed"}}, []string{"err", "stack"}},
		{"no retry", "no-retry", 1, []line{{slog.LevelDebug, "gotasks: task started"},
			{slog.LevelError, "gotasks: task failed"}}, []string{"err"}},
		{"snooze", "snooze", 1, []line{{slog.LevelDebug, "gotasks: task started"},
			{slog.LevelDebug, "gotasks: task snoozed"}}, []string{"run_after"}},
		{"the task's own line", "log", 1, []line{{slog.LevelDebug, "gotasks: task started"},
			{slog.LevelInfo, "from the task"}, {slog.LevelDebug, "gotasks: task succeeded"}}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			log, lines := newCapture()
			r := rec(execTask.Name(), `{"mode":"`+c.mode+`"}`, 0)
			r.Attempts, r.Queue, r.Backend, r.WorkerIDs = c.attempts, "q1", running.Name(), []string{"w1"}
			runAttempt(t, t.Context(), r, tasks.AttemptConfig{Backend: backend, Retries: true, Logger: log, Running: running})
			got := lines()
			var levels []line
			for _, l := range got {
				levels = append(levels, line{l.Level, l.Msg})
			}
			if d := cmp.Diff(c.want, levels); d != "" {
				t.Fatalf("log lines (-want +got):\n%s", d)
			}
			for _, l := range got {
				want := map[string]string{"task": execTask.Name(), "task_id": r.ID, "attempt": strconv.Itoa(c.attempts),
					"max_attempts": "3", "queue": "q1", "backend": running.Name(), "worker_id": "w1"}
				gotIdent := map[string]string{}
				for k := range want {
					gotIdent[k] = l.Attrs[k]
				}
				if d := cmp.Diff(want, gotIdent); d != "" {
					t.Errorf("%q: task attributes (-want +got):\n%s", l.Msg, d)
				}
			}
			last := got[len(got)-1]
			for _, k := range c.keys {
				if last.Attrs[k] == "" {
					t.Errorf("%q has no %s (attributes %v)", last.Msg, k, last.Attrs)
				}
			}
			if c.mode == "panic" && !strings.Contains(last.Attrs["stack"], "panic") {
				t.Errorf("stack %q, want the panic's stack", last.Attrs["stack"])
			}
		})
	}
}

// TestControlErrors: NoRetry fails at once, recorded as the task's own
// error and matchable both ways; Snooze puts the task back to READY without
// counting the attempt on a backend that can defer, and fails it on one
// that cannot.
func TestControlErrors(t *testing.T) {
	t.Parallel()
	backend := &tasks.BackendConfig{MaxAttempts: 3, Backoff: tasks.ConstantBackoff(time.Hour)}
	quiet := slog.New(slog.DiscardHandler)

	t.Run("NoRetry", func(t *testing.T) {
		t.Parallel()
		r := rec(execTask.Name(), `{"mode":"no-retry"}`, 0)
		a := runAttempt(t, t.Context(), r, tasks.AttemptConfig{Backend: backend, Retries: true, Logger: quiet})
		if a.Status != tasks.StatusFailed {
			t.Fatalf("Status = %s, want FAILED with attempts left", a.Status)
		}
		var me *myErr
		if !errors.Is(a.Err, tasks.ErrNoRetry) || !errors.As(a.Err, &me) || me.msg != "do not retry" {
			t.Errorf("Err = %v, want it to match ErrNoRetry and *myErr", a.Err)
		}
		if a.Record.Type != "*tasks_test.myErr" || a.Record.Message != "do not retry" {
			t.Errorf("recorded %+v, want the task's own error", *a.Record)
		}
		if !errors.Is(tasks.NoRetry(nil), tasks.ErrNoRetry) {
			t.Error("NoRetry(nil) does not match ErrNoRetry")
		}
	})

	t.Run("Snooze", func(t *testing.T) {
		t.Parallel()
		r := rec(execTask.Name(), `{"mode":"snooze"}`, 0)
		r.Attempts, r.Errors = 2, []tasks.TaskError{{Attempt: 1, Message: "earlier"}}
		a := runAttempt(t, t.Context(), r, tasks.AttemptConfig{Backend: backend, Retries: true, Logger: quiet,
			Running: dummy.New()})
		var se *tasks.SnoozeError
		if a.Status != tasks.StatusReady || !a.Snoozed || a.Record != nil || !errors.As(a.Err, &se) || se.Delay != time.Minute {
			t.Fatalf("attempt %+v, want READY, snoozed for a minute, nothing recorded", a)
		}
		if want := a.End.Add(time.Minute).Truncate(time.Microsecond); !a.RunAfter.Equal(want) {
			t.Errorf("RunAfter = %v, want %v", a.RunAfter, want)
		}
		a.Apply(r)
		if r.Status != tasks.StatusReady || r.Attempts != 1 || len(r.Errors) != 1 || !r.RunAfter.Equal(a.RunAfter) || r.FinishedAt != nil {
			t.Errorf("after Apply: %+v; want READY, attempts back to 1, no new error, the new run-after", r)
		}
	})

	t.Run("SnoozeWithoutDefer", func(t *testing.T) {
		t.Parallel()
		r := rec(execTask.Name(), `{"mode":"snooze"}`, 0)
		a := runAttempt(t, t.Context(), r, tasks.AttemptConfig{Backend: &tasks.BackendConfig{BackendName: "inline"},
			Logger: quiet})
		if a.Status != tasks.StatusFailed || a.Snoozed || a.Record == nil || a.Record.Type != "*tasks.SnoozeError" ||
			!strings.Contains(a.Record.Message, `backend "inline" cannot defer`) {
			t.Errorf("attempt %+v (record %+v), want FAILED with a *tasks.SnoozeError naming the backend", a, a.Record)
		}
	})

	t.Run("HandBack", func(t *testing.T) {
		t.Parallel()
		r := rec(execTask.Name(), `{"mode":"fail"}`, 0)
		r.RunAfter = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
		a := runAttempt(t, t.Context(), r, tasks.AttemptConfig{Backend: backend, Retries: true, Logger: quiet,
			HandBack: func() bool { return true }})
		if a.Status != tasks.StatusReady || !a.HandedBack || a.Record != nil {
			t.Fatalf("attempt %+v, want READY, handed back, nothing recorded", a)
		}
		a.Apply(r)
		if r.Attempts != 0 || len(r.Errors) != 0 || !r.RunAfter.Equal(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)) {
			t.Errorf("after Apply: %+v; want the attempt not counted, no error, the run-after unchanged", r)
		}
	})
}

var followUpSeen = tasks.Define("tasks_test.follow-up-target", func(context.Context, struct{}) (int, error) { return 1, nil })

var followUpParent = tasks.Define("tasks_test.follow-up-parent", func(ctx context.Context, a struct{ To string }) (string, error) {
	task := followUpSeen
	if a.To != "" {
		task = task.Using(tasks.WithBackend(a.To))
	}
	res, err := task.Enqueue(ctx, struct{}{})
	if err != nil {
		return "", err
	}
	return res.Backend, nil
})

// TestFollowUpBackend: a task enqueued by a running task without a
// backend of its own goes to the running backend; WithBackend still wins.
func TestFollowUpBackend(t *testing.T) {
	t.Parallel()
	running := dummy.New(tasks.WithName("tasks_test.running"))
	other := dummy.New(tasks.WithName("tasks_test.other"))
	t.Cleanup(tasks.RegisterBackend(running))
	t.Cleanup(tasks.RegisterBackend(other))
	for _, c := range []struct{ to, want string }{{"", running.Name()}, {other.Name(), other.Name()}} {
		res, err := followUpParent.Using(tasks.WithBackend(running.Name())).Enqueue(t.Context(), struct{ To string }{c.to})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := running.RunReady(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := res.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, err := res.Value(); err != nil || got != c.want {
			t.Errorf("WithBackend(%q): follow-up on %q (%v), want %q", c.to, got, err, c.want)
		}
	}
	if tc, ok := tasks.FromContext(t.Context()); ok || tasks.Logger(t.Context()) != slog.Default() || tc.Backend() != nil {
		t.Error("outside a task: FromContext ok, or Logger is not slog.Default()")
	}
}
