package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"time"
)

// Task is a typed task definition: a named function from Args to Result.
// Create it with Define; derive per-call variants with Using. A Task is
// immutable and safe for concurrent use.
type Task[A, R any] struct {
	def  *definition[A, R]
	opts options
	// err is a validation error from Using, returned by Enqueue.
	err error
}

type definition[A, R any] struct {
	name     string
	fn       func(context.Context, A) (R, error)
	defaults TaskDefaults
}

// Define defines and registers a task named name that runs fn. Options set
// the task's defaults; Using overrides them per call.
//
// Define panics if name is empty or taken, fn is nil, or an option is invalid:
// these are programming errors at definition time. Define tasks in package
// variables so that importing the package registers them.
func Define[A, R any](name string, fn func(ctx context.Context, args A) (R, error), opts ...Option) *Task[A, R] {
	if name == "" || len(name) > 255 {
		panic(fmt.Sprintf("tasks: task name %q must be 1-255 bytes", name))
	}
	if fn == nil {
		panic(fmt.Sprintf("tasks: task %q has a nil function", name))
	}
	t := &Task[A, R]{opts: options{queue: DefaultQueue}}
	for _, o := range opts {
		o(&t.opts)
	}
	t.opts.backoffSet = false
	if err := t.opts.validate(); err != nil {
		panic(fmt.Sprintf("tasks: task %q: %v", name, err))
	}
	t.def = &definition[A, R]{name: name, fn: fn, defaults: TaskDefaults{
		MaxAttempts: t.opts.maxAttempts, Backoff: t.opts.backoff, Timeout: t.opts.timeout,
	}}
	register(t.def)
	return t
}

// Name returns the task's registered name.
func (t *Task[A, R]) Name() string { return t.def.name }

// Priority returns the task's effective priority.
func (t *Task[A, R]) Priority() int { return t.opts.priority }

// Queue returns the task's effective queue.
func (t *Task[A, R]) Queue() string { return t.opts.queue }

// BackendName returns the name of the backend the task enqueues to:
// "default" when the task names none (WithBackend). A task enqueued from
// inside a running task without a backend of its own goes to the backend
// running that task instead (see TaskContext).
func (t *Task[A, R]) BackendName() string {
	if t.opts.backend == "" {
		return DefaultBackendName
	}
	return t.opts.backend
}

// Using returns a copy of t with opts applied on top of t's options; t is
// unchanged. An invalid option makes the copy's Enqueue fail with
// ErrInvalidTask.
func (t *Task[A, R]) Using(opts ...Option) *Task[A, R] {
	c := *t
	for _, o := range opts {
		o(&c.opts)
	}
	if c.err == nil {
		if c.opts.backoffSet {
			c.err = invalidf("task %q: the backoff is a function and cannot be stored with a task; set it with Define or on the backend", t.def.name)
		} else if err := c.opts.validate(); err != nil {
			c.err = fmt.Errorf("task %q: %w", t.def.name, err)
		}
	}
	return &c
}

// Call runs the task's function now, synchronously, in the caller's
// goroutine, without a backend (the .now() of django-background-tasks).
// Nothing is stored and no signal is sent.
func (t *Task[A, R]) Call(ctx context.Context, args A) (R, error) {
	return t.def.fn(ctx, args)
}

// Enqueue validates args and options against the task's backend and hands
// the task to it. It returns the typed result handle: READY on a backend
// that runs tasks later, already finished on the immediate backend.
//
// Inside a transaction (ContextWithTx), a backend that can join it inserts
// in it; otherwise, with enqueue-on-commit on, the enqueue is deferred to
// the commit (the handle is READY and not yet visible to GetResult) and
// dropped on rollback.
func (t *Task[A, R]) Enqueue(ctx context.Context, args A) (*Result[R], error) {
	rs, err := t.EnqueueMany(ctx, []A{args})
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// EnqueueMany enqueues one task per element of args, in one round trip on a
// backend with CanBulkEnqueue. Either all are enqueued or none (the whole
// batch is validated first).
func (t *Task[A, R]) EnqueueMany(ctx context.Context, args []A) ([]*Result[R], error) {
	if len(args) == 0 {
		return nil, nil
	}
	b, err := t.backend(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	reqs := make([]*EnqueueRequest, len(args))
	for i := range args {
		if reqs[i], err = t.request(args[i], now); err != nil {
			return nil, err
		}
	}
	raws, err := enqueueChain(ctx, backendMiddleware(b), reqs, func(ctx context.Context, reqs []*EnqueueRequest) ([]*RawResult, error) {
		for _, r := range reqs {
			if err := checkMetadata(r.Metadata); err != nil {
				return nil, fmt.Errorf("task %q: %w", r.TaskName, err)
			}
		}
		return submit(ctx, b, t.opts.onCommit, reqs)
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Result[R], len(raws))
	for i, raw := range raws {
		out[i] = newResult[R](b, raw)
		// A unique task's duplicate is the existing task, with its own id.
		out[i].Duplicate = i < len(reqs) && reqs[i].UniqueKey != "" && raw.ID != reqs[i].ID
	}
	return out, nil
}

// GetResult returns the typed result with the given id from the task's
// backend. The result of another task is an error wrapping
// ErrResultMismatch; an unknown id, ErrResultNotFound.
func (t *Task[A, R]) GetResult(ctx context.Context, id string) (*Result[R], error) {
	b, err := t.backend(ctx)
	if err != nil {
		return nil, err
	}
	if !b.Capabilities().Has(CanGetResult) {
		return nil, fmt.Errorf("get result %s on backend %q: %w", id, b.Name(), ErrNotSupported)
	}
	raw, err := b.GetResult(ctx, id)
	if err != nil {
		return nil, err
	}
	if raw.TaskName != t.def.name {
		return nil, fmt.Errorf("result %s is of task %q, not %q: %w", id, raw.TaskName, t.def.name, ErrResultMismatch)
	}
	return newResult[R](b, raw), nil
}

// DecodeArgs decodes a stored result's arguments to the task's Args type.
func (t *Task[A, R]) DecodeArgs(raw json.RawMessage) (A, error) {
	var a A
	if err := json.Unmarshal(raw, &a); err != nil {
		return a, &ArgsError{Task: t.def.name, Err: err}
	}
	return a, nil
}

// backend resolves the task's backend: the one its WithBackend names;
// without one, the backend running the task whose context ctx is (a
// follow-up goes to the same backend, see TaskContext), else "default".
func (t *Task[A, R]) backend(ctx context.Context) (Backend, error) {
	if t.err != nil {
		return nil, t.err
	}
	if t.opts.backend == "" {
		if b := runningBackend(ctx); b != nil {
			if err := t.checkAgainst(b); err != nil {
				return nil, fmt.Errorf("task %q on backend %q: %w", t.def.name, b.Name(), err)
			}
			return b, nil
		}
	}
	b, err := GetBackend(t.opts.backend)
	if err != nil {
		return nil, fmt.Errorf("task %q: %w", t.def.name, err)
	}
	if err := t.checkAgainst(b); err != nil {
		return nil, fmt.Errorf("task %q on backend %q: %w", t.def.name, b.Name(), err)
	}
	return b, nil
}

// checkAgainst validates the options against what b supports.
func (t *Task[A, R]) checkAgainst(b Backend) error {
	caps := b.Capabilities()
	o := &t.opts
	if (!o.runAfter.IsZero() || o.delay > 0) && !caps.Has(CanDefer) {
		return invalidf("the backend cannot defer tasks (no Defer flag); remove RunAfter/Delay")
	}
	if o.priority != DefaultPriority && !caps.Has(CanPriority) {
		return invalidf("the backend does not support priorities (no Priority flag)")
	}
	if o.repeat > 0 && !caps.Has(CanRepeat) {
		return invalidf("the backend cannot repeat tasks (no Repeat flag)")
	}
	if o.timeout > 0 && !caps.Has(CanTimeout) {
		return invalidf("the backend does not enforce timeouts (no Timeout flag)")
	}
	if o.unique != nil && !caps.Has(CanUnique) {
		return invalidf("the backend cannot deduplicate unique tasks (no Unique flag)")
	}
	if qs := b.Queues(); len(qs) > 0 && !contains(qs, o.queue) {
		return invalidf("queue %q is not allowed (allowed: %v)", o.queue, qs)
	}
	return nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// request encodes args and builds the backend request.
func (t *Task[A, R]) request(args A, now time.Time) (*EnqueueRequest, error) {
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, invalidf("task %q: arguments do not encode to JSON: %v", t.def.name, err)
	}
	var probe A
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, invalidf("task %q: arguments do not survive a JSON round trip: %v", t.def.name, err)
	}
	o := &t.opts
	req := &EnqueueRequest{
		ID:          NewID(),
		TaskName:    t.def.name,
		Args:        raw,
		Priority:    o.priority,
		Queue:       o.queue,
		RunAfter:    o.runAfter,
		MaxAttempts: o.maxAttempts,
		Timeout:     o.timeout,
		VerboseName: o.verboseName,
		Creator:     o.creator,
		Repeat:      o.repeat,
		RepeatUntil: o.repeatUntil,
		Metadata:    maps.Clone(o.metadata),
	}
	if o.delay > 0 {
		req.RunAfter = now.Add(o.delay)
	}
	if !req.RunAfter.IsZero() {
		req.RunAfter = req.RunAfter.UTC()
	}
	if o.unique != nil {
		if req.UniqueKey, err = UniqueKey(*o.unique, t.def.name, o.queue, raw, now); err != nil {
			return nil, err
		}
		req.UniqueStatuses = uniqueMask(o.unique)
	}
	return req, nil
}

// TaskName implements Runner.
func (d *definition[A, R]) TaskName() string { return d.name }

// Defaults implements Runner.
func (d *definition[A, R]) Defaults() TaskDefaults { return d.defaults }

// RunJSON implements Runner.
func (d *definition[A, R]) RunJSON(ctx context.Context, args json.RawMessage) (json.RawMessage, error) {
	var a A
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, &ArgsError{Task: d.name, Err: err}
	}
	r, err := d.fn(ctx, a)
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(r)
	if err != nil {
		return nil, &ReturnValueError{Task: d.name, Err: err}
	}
	return out, nil
}

// submit hands reqs to b, deferring them to the commit of the transaction
// in ctx when b cannot join it and enqueue-on-commit is on. A deferred
// handle has no enqueue time (and no run-after unless one was set) until
// the task is really enqueued: Refresh after the commit shows the stored
// ones.
func submit(ctx context.Context, b Backend, onCommit *bool, reqs []*EnqueueRequest) ([]*RawResult, error) {
	joins := false
	if j, ok := b.(TxJoiner); ok && b.Capabilities().Has(CanTransact) {
		joins = j.JoinsTx(ctx)
	}
	if h := txFromContext(ctx); h != nil {
		deferIt := b.EnqueueOnCommit()
		if onCommit != nil {
			deferIt = *onCommit
		}
		if !joins && deferIt {
			pending := make([]*RawResult, len(reqs))
			for i, r := range reqs {
				pending[i] = r.NewRawResult(b.Name(), time.Time{})
				pending[i].RunAfter = r.RunAfter // zero unless set
			}
			err := h.OnCommit(func(ctx context.Context) error {
				rs, err := enqueueNow(ctx, b, reqs)
				if err == nil {
					logEnqueued(ctx, b, rs, "")
				}
				return err
			})
			if err != nil {
				return nil, fmt.Errorf("enqueue on commit: %w", err)
			}
			logEnqueued(ctx, b, pending, "deferred to commit")
			return pending, nil
		}
	}
	rs, err := enqueueNow(ctx, b, reqs)
	if err != nil {
		return nil, err
	}
	if joins {
		logEnqueued(ctx, b, rs, "in transaction")
	} else {
		logEnqueued(ctx, b, rs, "")
	}
	return rs, nil
}

// logBatchLines is the largest batch logged one line per task; a larger
// one is logged as one line with its count.
const logBatchLines = 10

// logEnqueued logs enqueued (or deferred) results at DEBUG on the backend's
// logger (its BackendLogger method, when it has one, as the database
// backend; else its Logger method, as BackendConfig's; else slog.Default),
// with the
// result id, task, queue and backend; mode says "deferred to commit" or
// "in transaction" when it applies.
func logEnqueued(ctx context.Context, b Backend, rs []*RawResult, mode string) {
	l := slog.Default()
	if lb, ok := b.(interface{ BackendLogger() *slog.Logger }); ok && lb.BackendLogger() != nil {
		l = lb.BackendLogger()
	} else if lb, ok := b.(interface{ Logger() *slog.Logger }); ok && lb.Logger() != nil {
		l = lb.Logger() // BackendConfig.Logger: dummy, immediate
	}
	if len(rs) == 0 || !l.Enabled(ctx, slog.LevelDebug) {
		return
	}
	msg, batchMsg := "gotasks: task enqueued", "gotasks: tasks enqueued"
	if mode == "deferred to commit" {
		msg, batchMsg = "gotasks: task deferred to commit", "gotasks: tasks deferred to commit"
	}
	extra := func(attrs []slog.Attr) []slog.Attr {
		if mode != "" {
			attrs = append(attrs, slog.String("mode", mode))
		}
		return attrs
	}
	if len(rs) > logBatchLines {
		r := rs[0]
		l.LogAttrs(ctx, slog.LevelDebug, batchMsg, extra([]slog.Attr{
			slog.Int("count", len(rs)), slog.String("task", r.TaskName), slog.String("queue", r.Queue),
			slog.String("backend", b.Name()), slog.String("first_id", r.ID), slog.String("last_id", rs[len(rs)-1].ID),
		})...)
		return
	}
	for _, r := range rs {
		l.LogAttrs(ctx, slog.LevelDebug, msg, extra([]slog.Attr{
			slog.String("id", r.ID), slog.String("task", r.TaskName), slog.String("queue", r.Queue),
			slog.String("backend", b.Name()),
		})...)
	}
}

func enqueueNow(ctx context.Context, b Backend, reqs []*EnqueueRequest) ([]*RawResult, error) {
	if len(reqs) == 1 {
		r, err := b.Enqueue(ctx, reqs[0])
		if err != nil {
			return nil, err
		}
		return []*RawResult{r}, nil
	}
	return b.EnqueueMany(ctx, reqs)
}
