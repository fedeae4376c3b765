// Package signals lets code observe task life-cycle events: TaskEnqueued,
// TaskStarted and TaskFinished, as in django-tasks.
//
// Receivers are called synchronously, in the goroutine that emits the
// signal (the enqueuing goroutine, or the worker goroutine that runs the
// task), with the name of the backend as sender and a copy of the result.
// A receiver that panics is recovered and logged with log/slog; it never
// affects the task or the worker. Connect and disconnect are safe for
// concurrent use, also from inside a receiver.
//
// Every backend sends these signals, the implicit default backend of
// package tasks included: the three signals of this package are the ones
// the core sends through, so connecting a receiver here is all it takes.
package signals

import (
	"context"

	"github.com/gotasks/gotasks/internal/lifecycle"
	"github.com/gotasks/gotasks/tasks"
)

// Receiver handles a signal. sender is the backend's name; result is a copy
// the receiver may keep.
type Receiver func(ctx context.Context, sender string, result *tasks.RawResult)

// Signal is a named event with a list of receivers. Create one with New;
// the zero value is a signal without a name.
type Signal struct {
	sig  *lifecycle.Signal[any] // payload: *tasks.RawResult; nil in the zero value
	zero lifecycle.Signal[any]  // the receivers of the zero value
}

// core returns the signal's receiver list.
func (s *Signal) core() *lifecycle.Signal[any] {
	if s.sig != nil {
		return s.sig
	}
	return &s.zero
}

// The task life-cycle signals.
var (
	// TaskEnqueued is sent when a task is really enqueued: at once, or after
	// the commit of the caller's transaction. The result is READY.
	TaskEnqueued = &Signal{sig: lifecycle.TaskEnqueued}
	// TaskStarted is sent when an attempt starts. The result is RUNNING.
	TaskStarted = &Signal{sig: lifecycle.TaskStarted}
	// TaskFinished is sent when an attempt ends: SUCCESSFUL, FAILED, or READY
	// again when a retry is scheduled.
	TaskFinished = &Signal{sig: lifecycle.TaskFinished}
)

// New returns a signal with no receivers. Backends with events of their own
// can define more signals.
func New(name string) *Signal { return &Signal{sig: lifecycle.New[any](name)} }

// Name returns the signal's name.
func (s *Signal) Name() string { return s.core().Name() }

// Connect adds fn to the receivers and returns a function that removes it
// (calling it more than once is harmless). It panics if fn is nil.
func (s *Signal) Connect(fn Receiver) (disconnect func()) {
	if fn == nil {
		panic("signals: Connect(nil)")
	}
	return s.core().Connect(func(ctx context.Context, sender string, payload any) {
		r, _ := payload.(*tasks.RawResult)
		fn(ctx, sender, r.Clone()) // each receiver gets its own copy
	})
}

// Len returns the number of connected receivers.
func (s *Signal) Len() int { return s.core().Len() }

// Send calls every receiver in connection order with a copy of result each.
// A panicking receiver is recovered and logged; the others still run.
func (s *Signal) Send(ctx context.Context, sender string, result *tasks.RawResult) {
	s.core().Send(ctx, sender, result)
}
