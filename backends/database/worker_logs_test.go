package database

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// The worker's log levels (issue 13): a transient database error is WARN
// while it is retried, ERROR when the worker gives up (or, for the
// heartbeat, when its leases may have expired).

// logCapture is a slog.Handler that keeps "LEVEL message" lines.
type logCapture struct {
	mu    sync.Mutex
	lines []string
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lines = append(c.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *logCapture) WithGroup(string) slog.Handler      { return c }

func (c *logCapture) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines...)
}

// has reports whether a line starts with prefix ("WARN gotasks: …").
func (c *logCapture) has(prefix string) bool {
	for _, l := range c.all() {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

func TestWorkerHeartbeatLogLevels(t *testing.T) {
	t.Parallel()
	var c logCapture
	h := &heartbeat{log: slog.New(&c), interval: time.Second, rescueAfter: 3 * time.Second, t: newTally()}
	t0 := time.Now()
	blip := errors.New("connection refused")
	h.report(blip, false, t0)
	h.report(blip, false, t0.Add(time.Second))
	h.report(blip, true, t0.Add(2*time.Second)) // stopping: not logged
	h.report(blip, false, t0.Add(3*time.Second))
	h.report(blip, false, t0.Add(4*time.Second))
	h.report(nil, false, t0.Add(5*time.Second))
	h.report(blip, false, t0.Add(6*time.Second)) // a new outage
	h.report(nil, false, t0.Add(7*time.Second))
	want := []string{
		"WARN gotasks: heartbeat failed; retrying",
		"WARN gotasks: heartbeat failed; retrying",
		"ERROR gotasks: heartbeat failing for longer than the rescue delay; other workers may rescue this worker's tasks and run them again",
		"WARN gotasks: heartbeat failed; retrying",
		"INFO gotasks: heartbeat recovered",
		"WARN gotasks: heartbeat failed; retrying",
	}
	if diff := cmp.Diff(want, c.all()); diff != "" {
		t.Errorf("log lines (-want +got):\n%s", diff)
	}
}

var workerLogEcho = tasks.Define("database.worker_log_echo", func(ctx context.Context, s string) (string, error) {
	return s, nil
})

// TestWorkerTransientErrorsLogWarn: while the task table is away, the
// claim loop and the completer log WARN and retry; once it is back, the
// task is recorded and nothing was logged at ERROR.
func TestWorkerTransientErrorsLogWarn(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b, err := Open(ctx, dsn, WithAutoMigrate(true), WithName("logs-"+strings.ReplaceAll(t.Name(), "/", "-")),
			WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		t.Cleanup(tasks.RegisterBackend(b))
		var c logCapture
		w, err := NewWorker(b, WorkerConfig{Logger: slog.New(&c), PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.StopAndCancel(context.Background()) })
		exec := func(q string) {
			t.Helper()
			if _, err := b.DB().DB.ExecContext(ctx, q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		exec(`ALTER TABLE gotasks_task RENAME TO gotasks_task_away`)
		dbtest.WaitUntil(t, 10*time.Second, "a WARN claim failure", func() bool { return c.has("WARN gotasks: claim failed; retrying") })
		exec(`ALTER TABLE gotasks_task_away RENAME TO gotasks_task`)
		r, err := workerLogEcho.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, "x")
		if err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := r.Wait(wctx); err != nil {
			t.Fatalf("wait: %v", err)
		}
		for _, l := range c.all() {
			if strings.HasPrefix(l, "ERROR") {
				t.Errorf("logged at ERROR during a transient outage: %s", l)
			}
		}
	})
}

// TestWorkerCompleterRetryLogsWarn: a failed write of outcomes is WARN
// while retried; the give-up at shutdown stays ERROR.
func TestWorkerCompleterRetryLogsWarn(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b, err := Open(ctx, dsn, WithAutoMigrate(true), WithName("logc-"+strings.ReplaceAll(t.Name(), "/", "-")),
			WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		var c logCapture
		w, err := NewWorker(b, WorkerConfig{Logger: slog.New(&c), PollInterval: 20 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		out := make(chan *outcome, 1)
		co := newCompleter(b, w.cfg, w.log, newTally(), out, func() {})
		rec := &tasks.RawResult{ID: tasks.NewID(), Status: tasks.StatusSuccessful}
		if _, err := b.DB().DB.ExecContext(ctx, `ALTER TABLE gotasks_task RENAME TO gotasks_task_away`); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); co.record([]*outcome{{rec: rec, attempt: 1}}) }()
		dbtest.WaitUntil(t, 10*time.Second, "a WARN write failure", func() bool {
			return c.has("WARN gotasks: recording task outcomes failed; retrying")
		})
		co.giveUp()
		<-done
		if !c.has("ERROR gotasks: gave up recording task outcomes") {
			t.Errorf("no ERROR when giving up; lines: %q", c.all())
		}
		if _, err := b.DB().DB.ExecContext(ctx, `ALTER TABLE gotasks_task_away RENAME TO gotasks_task`); err != nil {
			t.Fatal(err)
		}
	})
}
