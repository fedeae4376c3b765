// Package signals lets code observe task life-cycle events: TaskEnqueued,
// TaskStarted and TaskFinished, as in django-tasks.
//
// Receivers are called synchronously, in the goroutine that emits the
// signal (the enqueuing goroutine, or the worker goroutine that runs the
// task), with the name of the backend as sender and a copy of the result.
// A receiver that panics is recovered and logged with log/slog; it never
// affects the task or the worker. Connect and disconnect are safe for
// concurrent use, also from inside a receiver.
package signals

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"github.com/gotasks/gotasks/tasks"
)

// Receiver handles a signal. sender is the backend's name; result is a copy
// the receiver may keep.
type Receiver func(ctx context.Context, sender string, result *tasks.RawResult)

// Signal is a named event with a list of receivers.
type Signal struct {
	name string

	mu        sync.Mutex
	receivers atomic.Pointer[[]entry] // copy-on-write: Send takes no lock
	nextID    uint64
}

type entry struct {
	id uint64
	fn Receiver
}

// The task life-cycle signals.
var (
	// TaskEnqueued is sent when a task is really enqueued: at once, or after
	// the commit of the caller's transaction. The result is READY.
	TaskEnqueued = New("task_enqueued")
	// TaskStarted is sent when an attempt starts. The result is RUNNING.
	TaskStarted = New("task_started")
	// TaskFinished is sent when an attempt ends: SUCCESSFUL, FAILED, or READY
	// again when a retry is scheduled.
	TaskFinished = New("task_finished")
)

func init() {
	tasks.SetEventSink(func(ctx context.Context, ev tasks.Event, sender string, r *tasks.RawResult) {
		if s := ForEvent(ev); s != nil {
			s.Send(ctx, sender, r)
		}
	})
}

// ForEvent returns the signal of a tasks.Event, or nil.
func ForEvent(ev tasks.Event) *Signal {
	switch ev {
	case tasks.EventEnqueued:
		return TaskEnqueued
	case tasks.EventStarted:
		return TaskStarted
	case tasks.EventFinished:
		return TaskFinished
	}
	return nil
}

// New returns a signal with no receivers. Backends with events of their own
// can define more signals.
func New(name string) *Signal { return &Signal{name: name} }

// Name returns the signal's name.
func (s *Signal) Name() string { return s.name }

// Connect adds fn to the receivers and returns a function that removes it
// (calling it more than once is harmless).
func (s *Signal) Connect(fn Receiver) (disconnect func()) {
	if fn == nil {
		panic("signals: Connect(nil)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := s.nextID
	old := s.load()
	next := make([]entry, len(old), len(old)+1)
	copy(next, old)
	next = append(next, entry{id: id, fn: fn})
	s.receivers.Store(&next)
	return func() { s.disconnect(id) }
}

func (s *Signal) disconnect(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	next := make([]entry, 0, len(old))
	for _, e := range old {
		if e.id != id {
			next = append(next, e)
		}
	}
	s.receivers.Store(&next)
}

func (s *Signal) load() []entry {
	if p := s.receivers.Load(); p != nil {
		return *p
	}
	return nil
}

// Len returns the number of connected receivers.
func (s *Signal) Len() int { return len(s.load()) }

// Send calls every receiver in connection order with a copy of result each.
// A panicking receiver is recovered and logged; the others still run.
func (s *Signal) Send(ctx context.Context, sender string, result *tasks.RawResult) {
	for _, e := range s.load() {
		s.call(ctx, e.fn, sender, result.Clone())
	}
}

func (s *Signal) call(ctx context.Context, fn Receiver, sender string, r *tasks.RawResult) {
	defer func() {
		if v := recover(); v != nil {
			slog.ErrorContext(ctx, "gotasks: signal receiver panicked",
				"signal", s.name, "sender", sender, "task", r.TaskName, "id", r.ID,
				"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	fn(ctx, sender, r)
}
