package tasks

import (
	"context"
	"log/slog"
	"maps"
	"sync"
	"time"
)

// TaskContext is what a running task knows about itself and its attempt.
// Every backend that runs tasks (immediate, the default, dummy's RunReady
// and RunAll, the database worker) puts it in the task's context; read it
// with FromContext:
//
//	func send(ctx context.Context, a EmailArgs) (string, error) {
//		tc, _ := tasks.FromContext(ctx)
//		tc.Logger.Info("sending", "to", a.To)                // carries task_id, attempt, …
//		key := tc.ResultID                                   // idempotency key for side effects
//		_, err := Receipt.Enqueue(ctx, ReceiptArgs{To: a.To}) // same backend as this task
//		...
//	}
//
// A task enqueued from inside a running task without a backend of its own
// (no WithBackend) goes to the backend running the task: a worker's
// follow-ups are rows of the worker's database, never run inline by the
// default backend. WithBackend still wins.
type TaskContext struct {
	// ResultID is the id of the task's result.
	ResultID string
	// TaskName is the registered name of the task.
	TaskName string
	// Attempt is the 1-based number of this attempt (2 on the first retry).
	Attempt int
	// MaxAttempts is how many attempts the task gets in all on this backend
	// (1 on a backend without retries).
	MaxAttempts int
	// Queue is the task's queue.
	Queue string
	// BackendName is the name of the backend running the task.
	BackendName string
	// WorkerID is the id of the worker running this attempt.
	WorkerID string
	// EnqueuedAt is when the task was enqueued (UTC).
	EnqueuedAt time.Time
	// StartedAt is when the first attempt started (UTC).
	StartedAt time.Time
	// AttemptStartedAt is when this attempt started (UTC); StartedAt on the
	// first attempt.
	AttemptStartedAt time.Time
	// Metadata is the task's metadata (see RawResult.Metadata); nil for
	// none. A copy per attempt, shared with the attempt's execution
	// middleware (Execution.Metadata): read it, don't change it.
	Metadata map[string]string
	// Logger is the backend's logger (slog.Default() unless configured) with
	// the attributes task, task_id, attempt, max_attempts, queue, backend
	// and worker_id.
	Logger *slog.Logger

	backend Backend
}

// Backend returns the backend running the task (nil when the backend did
// not say): the one a follow-up task without WithBackend is enqueued to.
func (tc TaskContext) Backend() Backend { return tc.backend }

type taskContextKey struct{}

// FromContext returns the TaskContext of the task running with ctx, and
// false outside a running task (for example in Task.Call, which runs the
// function without a backend).
func FromContext(ctx context.Context) (TaskContext, bool) {
	if ctx == nil {
		return TaskContext{}, false
	}
	tc, ok := ctx.Value(taskContextKey{}).(*TaskContext)
	if !ok {
		return TaskContext{}, false
	}
	return *tc, true
}

// Logger returns the logger of the task running with ctx (see
// TaskContext.Logger), or slog.Default() outside a running task.
func Logger(ctx context.Context) *slog.Logger {
	if ctx != nil {
		if tc, ok := ctx.Value(taskContextKey{}).(*TaskContext); ok && tc.Logger != nil {
			return tc.Logger
		}
	}
	return slog.Default()
}

// runningBackend returns the backend running the task of ctx, or nil.
func runningBackend(ctx context.Context) Backend {
	if ctx == nil {
		return nil
	}
	if tc, ok := ctx.Value(taskContextKey{}).(*TaskContext); ok {
		return tc.backend
	}
	return nil
}

// newTaskContext builds the TaskContext of the attempt of rec under pol.
func newTaskContext(rec *RawResult, cfg AttemptConfig, pol Policy, log *slog.Logger) *TaskContext {
	tc := &TaskContext{
		ResultID:    rec.ID,
		TaskName:    rec.TaskName,
		Attempt:     rec.Attempts,
		MaxAttempts: pol.MaxAttempts,
		Queue:       rec.Queue,
		BackendName: rec.Backend,
		EnqueuedAt:  rec.EnqueuedAt,
		Metadata:    maps.Clone(rec.Metadata),
		backend:     cfg.Running,
	}
	if !pol.Retries {
		tc.MaxAttempts = 1
	}
	if tc.BackendName == "" && cfg.Running != nil {
		tc.BackendName = cfg.Running.Name()
	}
	if n := len(rec.WorkerIDs); n > 0 {
		tc.WorkerID = rec.WorkerIDs[n-1]
	}
	if rec.StartedAt != nil {
		tc.StartedAt = *rec.StartedAt
	}
	tc.AttemptStartedAt = tc.StartedAt
	if rec.LastAttemptedAt != nil {
		tc.AttemptStartedAt = *rec.LastAttemptedAt
	}
	tc.Logger = slog.New(&lazyHandler{base: log.Handler(), tc: tc})
	return tc
}

// lazyHandler is base with attrs, added only when a record is handled: most
// attempts log nothing at the usual levels, and adding attributes costs a
// handler such as slog.JSONHandler a formatting of them all.
type lazyHandler struct {
	base slog.Handler
	tc   *TaskContext // its attributes; read-only once the attempt starts
	once sync.Once
	h    slog.Handler
}

func (l *lazyHandler) handler() slog.Handler {
	l.once.Do(func() {
		tc := l.tc
		l.h = l.base.WithAttrs([]slog.Attr{
			slog.String("task", tc.TaskName),
			slog.String("task_id", tc.ResultID),
			slog.Int("attempt", tc.Attempt),
			slog.Int("max_attempts", tc.MaxAttempts),
			slog.String("queue", tc.Queue),
			slog.String("backend", tc.BackendName),
			slog.String("worker_id", tc.WorkerID),
		})
	})
	return l.h
}

// Enabled implements slog.Handler.
func (l *lazyHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return l.base.Enabled(ctx, level)
}

// Handle implements slog.Handler.
func (l *lazyHandler) Handle(ctx context.Context, r slog.Record) error {
	return l.handler().Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (l *lazyHandler) WithAttrs(attrs []slog.Attr) slog.Handler { return l.handler().WithAttrs(attrs) }

// WithGroup implements slog.Handler.
func (l *lazyHandler) WithGroup(name string) slog.Handler { return l.handler().WithGroup(name) }
