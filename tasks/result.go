package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"
)

// Status is the state of a task result.
type Status string

// The statuses of a task result (SPEC §3).
const (
	// StatusReady: waiting to run, including between retries.
	StatusReady Status = "READY"
	// StatusRunning: claimed by a worker and running.
	StatusRunning Status = "RUNNING"
	// StatusSuccessful: finished without error; the return value is stored.
	StatusSuccessful Status = "SUCCESSFUL"
	// StatusFailed: the last attempt failed and no attempt is left.
	StatusFailed Status = "FAILED"
	// StatusCancelled: cancelled while READY; it never ran (again).
	StatusCancelled Status = "CANCELLED"
)

// Finished reports whether s is a final status.
func (s Status) Finished() bool {
	return s == StatusSuccessful || s == StatusFailed || s == StatusCancelled
}

// Valid reports whether s is one of the five statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusReady, StatusRunning, StatusSuccessful, StatusFailed, StatusCancelled:
		return true
	}
	return false
}

// TaskError records one failed attempt.
type TaskError struct {
	// Attempt is the 1-based attempt that failed.
	Attempt int `json:"attempt"`
	// Type is the Go type of the error (for example "*fs.PathError"), or
	// "panic" when the task panicked.
	Type string `json:"type"`
	// Message is the error's text, or the panic value.
	Message string `json:"message"`
	// Stack is the goroutine stack where a panic was recovered; empty for
	// returned errors.
	Stack string `json:"stack,omitempty"`
	// At is when the attempt failed (UTC).
	At time.Time `json:"at"`
}

// Error implements error so that a TaskError can be returned and wrapped.
func (e *TaskError) Error() string {
	if e.Type == "" {
		return e.Message
	}
	return e.Type + ": " + e.Message
}

// RawResult is the untyped, backend-level view of a task result: every field
// of SPEC §3, with arguments and return value as JSON. Backends return it
// from their untyped GetResult; Result[R] embeds it.
type RawResult struct {
	// ID identifies the result (fewer than 64 characters; see NewID).
	ID string `json:"id"`
	// TaskName is the registered name of the task.
	TaskName string `json:"task_name"`
	// Status is where the task is in its life-cycle.
	Status Status `json:"status"`
	// Args is the JSON encoding of the task's arguments.
	Args json.RawMessage `json:"args"`
	// Priority is the task's priority; higher runs first.
	Priority int `json:"priority"`
	// Queue is the task's queue.
	Queue string `json:"queue"`
	// Backend is the name of the backend that stores the result.
	Backend string `json:"backend"`
	// RunAfter is the earliest time the task may start; the enqueue time
	// when it was not deferred.
	RunAfter time.Time `json:"run_after"`
	// EnqueuedAt is when the task was enqueued (UTC).
	EnqueuedAt time.Time `json:"enqueued_at"`
	// StartedAt is when the first attempt started; nil before.
	StartedAt *time.Time `json:"started_at,omitempty"`
	// FinishedAt is when the task reached a final status; nil before.
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	// LastAttemptedAt is when the latest attempt started; nil before the
	// first.
	LastAttemptedAt *time.Time `json:"last_attempted_at,omitempty"`
	// Attempts is how many times the task has been started.
	Attempts int `json:"attempts"`
	// MaxAttempts is how many attempts the task gets in all; 0 means the
	// backend's default.
	MaxAttempts int `json:"max_attempts"`
	// Timeout bounds each attempt; 0 means none.
	Timeout time.Duration `json:"timeout,omitempty"`
	// WorkerIDs lists the workers that ran the task, one per attempt.
	WorkerIDs []string `json:"worker_ids,omitempty"`
	// Errors has one entry per failed attempt, oldest first.
	Errors []TaskError `json:"errors,omitempty"`
	// ReturnValue is the JSON encoding of the return value of a SUCCESSFUL
	// task; nil otherwise.
	ReturnValue json.RawMessage `json:"return_value,omitempty"`
	// VerboseName is a human-readable name given at enqueue.
	VerboseName string `json:"verbose_name,omitempty"`
	// Creator refers to whoever enqueued the task, such as "user:42".
	Creator string `json:"creator,omitempty"`
	// Repeat is the interval of a repeating task; 0 for a one-off task.
	Repeat time.Duration `json:"repeat,omitempty"`
	// RepeatUntil ends a repeating chain; nil repeats forever.
	RepeatUntil *time.Time `json:"repeat_until,omitempty"`
	// Metadata is the small string map stored with the task at enqueue
	// (WithMetadata, enqueue middleware), such as the W3C traceparent of
	// the request that enqueued it; nil for none.
	Metadata map[string]string `json:"metadata,omitempty"`
	// UniqueKey is the unique key of a unique task (WithUnique); empty
	// otherwise.
	UniqueKey string `json:"unique_key,omitempty"`
}

// Clone returns a deep copy of r.
func (r *RawResult) Clone() *RawResult {
	if r == nil {
		return nil
	}
	c := *r
	c.Args = slices.Clone(r.Args)
	c.ReturnValue = slices.Clone(r.ReturnValue)
	c.WorkerIDs = slices.Clone(r.WorkerIDs)
	c.Errors = slices.Clone(r.Errors)
	c.StartedAt = clonePtr(r.StartedAt)
	c.FinishedAt = clonePtr(r.FinishedAt)
	c.LastAttemptedAt = clonePtr(r.LastAttemptedAt)
	c.RepeatUntil = clonePtr(r.RepeatUntil)
	c.Metadata = maps.Clone(r.Metadata)
	return &c
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// LogValue implements slog.LogValuer: a result is logged as a group of its
// task name, id, status and attempts (not its arguments, which may be large
// or secret).
func (r *RawResult) LogValue() slog.Value {
	if r == nil {
		return slog.Value{}
	}
	return slog.GroupValue(slog.String("task", r.TaskName), slog.String("id", r.ID),
		slog.String("status", string(r.Status)), slog.Int("attempts", r.Attempts))
}

// LastError returns the most recent failed attempt, or nil.
func (r *RawResult) LastError() *TaskError {
	if len(r.Errors) == 0 {
		return nil
	}
	return &r.Errors[len(r.Errors)-1]
}

// valueErr returns the error that reading the return value of r yields, or
// nil when r is SUCCESSFUL.
func (r *RawResult) valueErr() error {
	switch r.Status {
	case StatusSuccessful:
		return nil
	case StatusFailed:
		if last := r.LastError(); last != nil {
			return fmt.Errorf("task %s (%s): %w after %d attempt(s): %s", r.TaskName, r.ID, ErrTaskFailed, r.Attempts, last.Message)
		}
		return fmt.Errorf("task %s (%s): %w", r.TaskName, r.ID, ErrTaskFailed)
	case StatusCancelled:
		return fmt.Errorf("task %s (%s): %w", r.TaskName, r.ID, ErrTaskCancelled)
	default:
		return fmt.Errorf("task %s (%s) is %s: %w", r.TaskName, r.ID, r.Status, ErrNotFinished)
	}
}

// Result is the typed handle on a task result returned by Enqueue and
// GetResult. It embeds the RawResult fields (ID, Status, Errors, …) and
// decodes the return value to R.
//
// A Result is a snapshot: Refresh and Wait update it in place. It is not safe
// for concurrent use.
type Result[R any] struct {
	RawResult
	// Duplicate is true when Enqueue of a unique task (WithUnique) found a
	// task with the same key in the chosen statuses and returned it (with
	// its own id and status) instead of enqueueing a new one.
	Duplicate bool `json:"duplicate,omitempty"`
	backend   Backend
}

func newResult[R any](b Backend, raw *RawResult) *Result[R] {
	return &Result[R]{RawResult: *raw, backend: b}
}

// Value returns the task's return value. It returns an error wrapping
// ErrNotFinished while the task is READY or RUNNING, ErrTaskFailed (with the
// last attempt's message) when it FAILED, and ErrTaskCancelled when it was
// CANCELLED.
func (r *Result[R]) Value() (R, error) {
	var v R
	if err := r.valueErr(); err != nil {
		return v, err
	}
	if err := json.Unmarshal(r.ReturnValue, &v); err != nil {
		return v, fmt.Errorf("task %s (%s): decode return value: %w", r.TaskName, r.ID, err)
	}
	return v, nil
}

// IsFinished reports whether the task reached a final status.
func (r *Result[R]) IsFinished() bool { return r.Status.Finished() }

// Raw returns a copy of the untyped result.
func (r *Result[R]) Raw() *RawResult { return r.RawResult.Clone() }

// Refresh reloads the result from its backend.
func (r *Result[R]) Refresh(ctx context.Context) error {
	raw, err := r.backend.GetResult(ctx, r.ID)
	if err != nil {
		return fmt.Errorf("refresh result %s: %w", r.ID, err)
	}
	r.RawResult = *raw
	return nil
}

// Wait blocks until the task reaches a final status or ctx is done, then
// updates r. It uses the backend's notifications when it has them (see
// Waiter) and otherwise polls with a growing interval capped at one second.
// Reaching FAILED or CANCELLED is not an error of Wait; read Value or Status.
func (r *Result[R]) Wait(ctx context.Context) error {
	if r.Status.Finished() {
		return nil
	}
	raw, err := WaitResult(ctx, r.backend, r.ID)
	if err != nil {
		return err
	}
	r.RawResult = *raw
	return nil
}

// Cancel cancels the task if it is still READY. It returns an error wrapping
// ErrNotCancellable when it is not, and ErrNotSupported when the backend
// cannot cancel.
func (r *Result[R]) Cancel(ctx context.Context) error {
	if !r.backend.Capabilities().Has(CanCancel) {
		return fmt.Errorf("cancel %s on backend %q: %w", r.ID, r.backend.Name(), ErrNotSupported)
	}
	if err := r.backend.Cancel(ctx, r.ID); err != nil {
		return err
	}
	return r.Refresh(ctx)
}

// WaitResult blocks until the result id on backend b is finished or ctx is
// done. It uses b's Waiter implementation when there is one, otherwise it
// polls GetResult.
func WaitResult(ctx context.Context, b Backend, id string) (*RawResult, error) {
	if w, ok := b.(Waiter); ok {
		return w.WaitResult(ctx, id)
	}
	return PollResult(ctx, b, id, 5*time.Millisecond, time.Second)
}

// PollResult polls b.GetResult(id) from interval min, doubling up to max,
// until the result is finished or ctx is done. Backends without
// notifications can use it to implement Waiter.
func PollResult(ctx context.Context, b Backend, id string, min, max time.Duration) (*RawResult, error) {
	interval := min
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for result %s: %w", id, context.Cause(ctx))
		case <-timer.C:
		}
		raw, err := b.GetResult(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("wait for result %s: %w", id, err)
		}
		if raw.Status.Finished() {
			return raw, nil
		}
		timer.Reset(interval)
		interval = min2(interval*2, max)
	}
}

func min2(a, b time.Duration) time.Duration {
	if a < b {
		return a
	}
	return b
}
