// Package immediate provides the immediate backend: each task runs in the
// caller's goroutine during Enqueue, with the full status life-cycle and the
// signals, as django-tasks' ImmediateBackend. It is meant for development
// and is what "default" does when no backend is configured.
//
// A task's error or panic is recorded in a FAILED result (type, message, and
// the stack of a panic); Enqueue never returns the task's error and never
// panics because of the task.
//
// Flags: GetResult, Priority, Timeout. It cannot defer, cancel or repeat:
// enqueueing with RunAfter/Delay or Repeat is an error wrapping
// tasks.ErrInvalidTask. It does not retry: MaxAttempts is accepted (so that
// the same task definition works on every backend) and each task gets one
// attempt.
package immediate

import (
	"github.com/gotasks/gotasks/tasks"

	// Imported so that its receivers get the events of this backend.
	_ "github.com/gotasks/gotasks/signals"
)

// Backend is the immediate backend.
type Backend = tasks.InlineBackend

// Option configures the backend.
type Option = tasks.InlineOption

// New returns an immediate backend; configure its name, allowed queues and
// enqueue-on-commit default with tasks backend options:
//
//	b := immediate.New(immediate.WithConfig(tasks.WithName("dev")))
func New(opts ...Option) *Backend { return tasks.NewInlineBackend(opts...) }

// WithConfig applies the shared backend options (name, queues, …).
func WithConfig(opts ...tasks.BackendOption) Option { return tasks.InlineConfig(opts...) }

// WithKeep sets how many results are kept in memory for GetResult
// (default 10,000; the oldest are forgotten first).
func WithKeep(n int) Option { return tasks.InlineKeep(n) }
