package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// EnqueueFunc stores a batch of validated requests: the rest of the enqueue
// middleware chain and, at its end, the backend (or the deferral to the
// commit of the caller's transaction). Its results are in the order of
// reqs.
type EnqueueFunc func(ctx context.Context, reqs []*EnqueueRequest) ([]*RawResult, error)

// ExecuteFunc runs the rest of the execution middleware chain and, at its
// end, the task's function with ctx.
type ExecuteFunc func(ctx context.Context) error

// Middleware wraps enqueues and task executions, like net/http middleware
// wraps handlers. Register it for every backend of the process with Use, or
// for one backend with WithMiddleware. Implement one hook and pass the
// other through, or build one from a function with EnqueueMiddlewareFunc or
// ExecuteMiddlewareFunc.
//
// Order: global middleware (Use) runs outside backend middleware
// (WithMiddleware); within each, the first registered is the outermost. So
// with Use(A) and WithMiddleware(B, C), an enqueue or an execution runs
// A → B → C → the backend or the task, and returns C → B → A.
type Middleware interface {
	// Enqueue wraps Task.Enqueue and Task.EnqueueMany. It sees the
	// validated requests (their ids already assigned) and may change their
	// metadata (EnqueueRequest.SetMetadata) and ctx before it calls next;
	// it must not add or remove requests. It runs in the caller's
	// goroutine, before the enqueue is deferred to a commit (see
	// WithEnqueueOnCommit), so a deferred task carries what it set. It
	// calls next at most once (a second call returns ErrNextCalledTwice)
	// with the requests it was given. An error it returns is returned by
	// Enqueue; nothing is enqueued unless it called next. A panic in it
	// reaches the caller of Enqueue, as in any code the caller runs.
	Enqueue(ctx context.Context, reqs []*EnqueueRequest, next EnqueueFunc) ([]*RawResult, error)

	// Execute wraps one attempt of a task, in the goroutine that runs it,
	// inside the attempt's timeout. ctx carries the TaskContext (x has it
	// too); the context passed to next is the one the task receives.
	//
	// The error next returns is the task's, made safe to use: a panic of
	// the task is a *PanicError, an unusable error value a *BadErrorValue,
	// an error after the timeout a *TimeoutError. Execute returns the
	// attempt's error, which is what the backend records and classifies:
	// return next's error to leave the outcome alone, nil to turn a
	// failure into a success, or another error. x.Outcome tells what an
	// error will mean (a retry, a final failure, …). A panic in the
	// middleware itself fails the attempt like a panic of the task.
	// Execute calls next at most once (a second call returns
	// ErrNextCalledTwice and does not run the task); without a call the
	// task does not run and the attempt ends as Execute returns.
	Execute(ctx context.Context, x *Execution, next ExecuteFunc) error
}

// EnqueueMiddlewareFunc is a Middleware that wraps enqueues only.
type EnqueueMiddlewareFunc func(ctx context.Context, reqs []*EnqueueRequest, next EnqueueFunc) ([]*RawResult, error)

// Enqueue implements Middleware by calling f.
func (f EnqueueMiddlewareFunc) Enqueue(ctx context.Context, reqs []*EnqueueRequest, next EnqueueFunc) ([]*RawResult, error) {
	return f(ctx, reqs, next)
}

// Execute implements Middleware by calling next.
func (f EnqueueMiddlewareFunc) Execute(ctx context.Context, _ *Execution, next ExecuteFunc) error {
	return next(ctx)
}

// ExecuteMiddlewareFunc is a Middleware that wraps executions only.
type ExecuteMiddlewareFunc func(ctx context.Context, x *Execution, next ExecuteFunc) error

// Enqueue implements Middleware by calling next.
func (f ExecuteMiddlewareFunc) Enqueue(ctx context.Context, reqs []*EnqueueRequest, next EnqueueFunc) ([]*RawResult, error) {
	return next(ctx, reqs)
}

// Execute implements Middleware by calling f.
func (f ExecuteMiddlewareFunc) Execute(ctx context.Context, x *Execution, next ExecuteFunc) error {
	return f(ctx, x, next)
}

// globalMiddleware holds the middleware registered with Use, copied on
// write: the hot paths load it without a lock.
var globalMiddleware struct {
	mu   sync.Mutex // serialises writers
	list atomic.Pointer[[]*useEntry]
}

// useEntry is one registration of Use; its identity is what remove finds.
type useEntry struct{ m Middleware }

// Use registers middleware for every backend of the process, outside any
// backend's own (see Middleware for the order), and returns a function
// that removes these registrations again (handy in tests:
// t.Cleanup(tasks.Use(m))). Register it at start-up, before tasks are
// enqueued or run: an enqueue or an attempt uses the middleware registered
// when it began.
func Use(m ...Middleware) (remove func()) {
	for _, x := range m {
		if x == nil {
			panic("tasks: Use(nil)")
		}
	}
	entries := make([]*useEntry, len(m))
	for i, x := range m {
		entries[i] = &useEntry{x}
	}
	g := &globalMiddleware
	g.mu.Lock()
	var cur []*useEntry
	if p := g.list.Load(); p != nil {
		cur = *p
	}
	next := append(slices.Clip(cur), entries...)
	g.list.Store(&next)
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			var cur []*useEntry
			if p := g.list.Load(); p != nil {
				cur = *p
			}
			next := slices.DeleteFunc(slices.Clone(cur), func(e *useEntry) bool { return slices.Contains(entries, e) })
			g.list.Store(&next)
		})
	}
}

// middlewareOf returns the middleware that wraps the tasks of the backend
// configured by cfg (nil for none): the global ones, then cfg's.
func middlewareOf(cfg *BackendConfig) []Middleware {
	var global []*useEntry
	if p := globalMiddleware.list.Load(); p != nil {
		global = *p
	}
	var own []Middleware
	if cfg != nil {
		own = cfg.Middleware
	}
	if len(global) == 0 {
		return own
	}
	out := make([]Middleware, 0, len(global)+len(own))
	for _, e := range global {
		out = append(out, e.m)
	}
	return append(out, own...)
}

// backendMiddleware returns the middleware of b: the global ones, then the
// backend's own when b embeds a BackendConfig (or otherwise says, with a
// BackendMiddleware method).
func backendMiddleware(b Backend) []Middleware {
	if mb, ok := b.(interface{ BackendMiddleware() []Middleware }); ok {
		return middlewareOf(&BackendConfig{Middleware: mb.BackendMiddleware()})
	}
	return middlewareOf(nil)
}

// BackendMiddleware returns the backend's own middleware (WithMiddleware),
// without the global ones. The core finds a backend's middleware through
// this method, which backends get by embedding BackendConfig: a backend
// that wraps another must forward it.
func (c *BackendConfig) BackendMiddleware() []Middleware { return slices.Clip(c.Middleware) }

// WithMiddleware adds middleware to the backend, inside the global
// middleware of Use (see Middleware for the order).
func WithMiddleware(m ...Middleware) BackendOption {
	for _, x := range m {
		if x == nil {
			panic("tasks: WithMiddleware(nil)")
		}
	}
	return func(c *BackendConfig) { c.Middleware = append(slices.Clip(c.Middleware), m...) }
}

// ErrNextCalledTwice is the error of a middleware's second call of next:
// the task is enqueued, and runs, at most once per call of Enqueue or per
// attempt.
var ErrNextCalledTwice = errors.New("tasks: middleware called next more than once")

// enqueueChain runs the enqueue middleware mws around last. The requests
// that reach last must be those of reqs, in order (middleware changes them,
// never adds, drops or swaps them), and last runs at most once.
func enqueueChain(ctx context.Context, mws []Middleware, reqs []*EnqueueRequest, last EnqueueFunc) ([]*RawResult, error) {
	if len(mws) == 0 {
		return last(ctx, reqs)
	}
	n := len(reqs)
	orig := slices.Clone(reqs)
	var called atomic.Bool
	guarded := func(ctx context.Context, got []*EnqueueRequest) ([]*RawResult, error) {
		if !slices.Equal(got, orig) {
			return nil, fmt.Errorf("tasks: enqueue middleware passed on %d requests for the %d it was given: it may change requests, not add, drop or replace them", len(got), n)
		}
		if called.Swap(true) {
			return nil, ErrNextCalledTwice
		}
		return last(ctx, got)
	}
	var step func(i int) EnqueueFunc
	step = func(i int) EnqueueFunc {
		if i == len(mws) {
			return guarded
		}
		return func(ctx context.Context, reqs []*EnqueueRequest) ([]*RawResult, error) {
			rs, err := mws[i].Enqueue(ctx, reqs, step(i+1))
			if err != nil {
				err = usableError(err)
			}
			return rs, err
		}
	}
	rs, err := step(0)(ctx, reqs)
	if err == nil && len(rs) != n {
		return nil, fmt.Errorf("tasks: enqueue middleware returned %d results for %d tasks", len(rs), n)
	}
	return rs, err
}

// Outcome is what an attempt's error means to its backend.
type Outcome string

// The outcomes of an attempt.
const (
	// OutcomeSuccess: the task returned no error; it is SUCCESSFUL.
	OutcomeSuccess Outcome = "success"
	// OutcomeRetry: the attempt failed and the task goes back to READY for
	// a retry.
	OutcomeRetry Outcome = "retry"
	// OutcomeFailure: the attempt failed and the task is FAILED (no
	// attempt left, no retries on the backend, or a failure that retrying
	// cannot fix).
	OutcomeFailure Outcome = "failure"
	// OutcomeSnooze: the task snoozed (Snooze); it goes back to READY
	// without the attempt counted.
	OutcomeSnooze Outcome = "snooze"
	// OutcomeHandBack: the worker stopped under the task (a hard stop); it
	// goes back to READY without the attempt counted.
	OutcomeHandBack Outcome = "handback"
)

// Outcome returns what a means to its backend.
func (a Attempt) Outcome() Outcome {
	switch {
	case a.Status == StatusSuccessful:
		return OutcomeSuccess
	case a.Snoozed:
		return OutcomeSnooze
	case a.HandedBack:
		return OutcomeHandBack
	case a.Status == StatusReady:
		return OutcomeRetry
	}
	return OutcomeFailure
}

// Execution is one attempt of a task, as execution middleware sees it. It
// is valid during Middleware.Execute only; middleware must not change it.
type Execution struct {
	// TaskContext is the attempt as the task sees it (FromContext): id,
	// task name, attempt, queue, backend, worker, times, logger, metadata.
	TaskContext
	// Args is the JSON encoding of the task's arguments.
	Args json.RawMessage
	// Priority is the task's priority.
	Priority int
	// RunAfter is when the attempt was due: the enqueue time, the deferral
	// (WithRunAfter) or the retry time. AttemptStartedAt minus the later of
	// RunAfter and EnqueuedAt is how long the attempt waited to start.
	RunAfter time.Time
	// Repeat is the interval of a repeating task (WithRepeat); 0 for a
	// one-off task. Each run of a repeating task is a result of its own,
	// with a copy of the metadata of the first.
	Repeat time.Duration

	cfg AttemptConfig
	pol Policy
}

// Outcome returns what err, if the middleware returned it, would mean to
// the backend: OutcomeSuccess for nil, else a retry, a final failure, a
// snooze or a hand-back, by the task's policy (attempts left, NoRetry,
// retries on the backend).
func (x *Execution) Outcome(err error) Outcome {
	if err == nil {
		return OutcomeSuccess
	}
	a := classify(x.Attempt, x.pol, nil, err, time.Now())
	return x.cfg.adjust(a, x.pol).Outcome()
}

// Wait returns how long the attempt waited to start: from when it was due
// (the later of RunAfter and EnqueuedAt) to AttemptStartedAt; 0 when the
// times are unknown.
func (x *Execution) Wait() time.Duration {
	due := x.RunAfter
	if x.EnqueuedAt.After(due) {
		due = x.EnqueuedAt
	}
	if due.IsZero() || x.AttemptStartedAt.IsZero() || x.AttemptStartedAt.Before(due) {
		return 0
	}
	return x.AttemptStartedAt.Sub(due)
}

// executeChain runs the execution middleware mws around last, recovering
// a panic of a middleware as a failure of the attempt.
func executeChain(ctx context.Context, mws []Middleware, x *Execution, last ExecuteFunc) (err error) {
	if len(mws) == 0 {
		return last(ctx)
	}
	defer func() {
		if v := recover(); v != nil {
			err = newPanicError(v)
		}
	}()
	var called atomic.Bool
	guarded := func(ctx context.Context) error {
		if called.Swap(true) {
			return ErrNextCalledTwice
		}
		return last(ctx)
	}
	var step func(i int) ExecuteFunc
	step = func(i int) ExecuteFunc {
		if i == len(mws) {
			return guarded
		}
		return func(ctx context.Context) error {
			err := mws[i].Execute(ctx, x, step(i+1))
			if err != nil { // each layer hands the next one out a usable error
				err = usableError(err)
			}
			return err
		}
	}
	return step(0)(ctx)
}

// Metadata limits: a task's metadata is small, stored with every row.
const (
	// MaxMetadataEntries is the most entries a task's metadata may have.
	MaxMetadataEntries = 64
	// MaxMetadataBytes bounds the total length of a task's metadata keys
	// and values.
	MaxMetadataBytes = 16 << 10
)

// SetMetadata sets the metadata entry key to value on the request (for
// enqueue middleware and backends).
func (req *EnqueueRequest) SetMetadata(key, value string) {
	if req.Metadata == nil {
		req.Metadata = make(map[string]string, 2)
	}
	req.Metadata[key] = value
}

// CheckMetadata reports metadata that cannot be stored, as an error
// wrapping ErrInvalidTask: too many or too long entries (MaxMetadataEntries,
// MaxMetadataBytes), an empty key, or text that is not valid UTF-8 (which
// would not survive the JSON it is stored as). Task.Enqueue checks every
// request's metadata after the enqueue middleware ran; a backend checks
// again where requests can reach it directly.
func CheckMetadata(md map[string]string) error { return checkMetadata(md) }

func checkMetadata(md map[string]string) error {
	if len(md) > MaxMetadataEntries {
		return invalidf("metadata has %d entries, more than %d", len(md), MaxMetadataEntries)
	}
	size := 0
	for k, v := range md {
		if k == "" {
			return invalidf("metadata has an empty key")
		}
		if !utf8.ValidString(k) || !utf8.ValidString(v) {
			return invalidf("metadata entry %q is not valid UTF-8", k)
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataBytes {
		return invalidf("metadata is %d bytes, more than %d", size, MaxMetadataBytes)
	}
	return nil
}
