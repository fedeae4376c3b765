// Package lifecycle is the signal mechanism of gotasks, below the core: a
// named list of receivers, connected and disconnected concurrently, called
// synchronously in the sender's goroutine with their panics recovered and
// logged. It also holds the three task life-cycle signals, so that package
// tasks (its fallback backend and RunInline) sends them by importing this
// package, and package signals, the user-facing facade, connects receivers
// to the same instances.
//
// It imports nothing of gotasks: a payload is of any type. Receivers share
// the payload they are sent; a facade that promises each receiver its own
// copy makes it in the receiver it connects.
package lifecycle

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// The task life-cycle signals. Their payload is a *tasks.RawResult (typed
// any here because this package is below tasks); the sender is the name of
// the backend. Package signals exposes them as signals.TaskEnqueued,
// signals.TaskStarted and signals.TaskFinished.
var (
	// TaskEnqueued is sent when a task is really enqueued.
	TaskEnqueued = New[any]("task_enqueued")
	// TaskStarted is sent when an attempt starts.
	TaskStarted = New[any]("task_started")
	// TaskFinished is sent when an attempt ends.
	TaskFinished = New[any]("task_finished")
)

// Receiver handles one sending of a signal.
type Receiver[T any] func(ctx context.Context, sender string, payload T)

// Signal is a named list of receivers of payloads of type T. The zero value
// is a signal without a name and without receivers. A Signal is safe for
// concurrent use; it must not be copied after first use.
type Signal[T any] struct {
	name string

	mu        sync.Mutex                 // serialises Connect and disconnect
	receivers atomic.Pointer[[]entry[T]] // copy-on-write: Send takes no lock
	nextID    uint64                     // guarded by mu
}

type entry[T any] struct {
	id uint64
	fn Receiver[T]
}

// New returns a signal named name with no receivers.
func New[T any](name string) *Signal[T] { return &Signal[T]{name: name} }

// Name returns the signal's name.
func (s *Signal[T]) Name() string { return s.name }

// Connect adds fn after the connected receivers and returns a function that
// removes it; calling that more than once is harmless. Connecting and
// disconnecting are safe during a Send, also from inside a receiver: a Send
// calls the receivers connected when it started. Connect panics if fn is
// nil.
func (s *Signal[T]) Connect(fn Receiver[T]) (disconnect func()) {
	if fn == nil {
		panic("signals: Connect(nil)")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := s.nextID
	old := s.load()
	next := make([]entry[T], len(old), len(old)+1)
	copy(next, old)
	next = append(next, entry[T]{id: id, fn: fn})
	s.receivers.Store(&next)
	return func() { s.disconnect(id) }
}

func (s *Signal[T]) disconnect(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.load()
	next := make([]entry[T], 0, len(old))
	for _, e := range old {
		if e.id != id {
			next = append(next, e)
		}
	}
	s.receivers.Store(&next)
}

func (s *Signal[T]) load() []entry[T] {
	if p := s.receivers.Load(); p != nil {
		return *p
	}
	return nil
}

// Len returns the number of connected receivers. Senders can skip building
// a payload when it is 0.
func (s *Signal[T]) Len() int { return len(s.load()) }

// Send calls every receiver in connection order, in the calling goroutine.
// A receiver that panics is recovered and logged with slog at ERROR (the
// signal, the sender, the payload when it implements slog.LogValuer as a
// group, the panic value and the stack); the other receivers still run and
// Send never panics because of a receiver.
func (s *Signal[T]) Send(ctx context.Context, sender string, payload T) {
	for _, e := range s.load() {
		s.call(ctx, e.fn, sender, payload)
	}
}

func (s *Signal[T]) call(ctx context.Context, fn Receiver[T], sender string, payload T) {
	defer func() {
		if v := recover(); v != nil {
			args := []any{"signal", s.name, "sender", sender}
			args = append(args, payloadAttrs(any(payload))...)
			args = append(args, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			slog.ErrorContext(ctx, "gotasks: signal receiver panicked", args...)
		}
	}()
	fn(ctx, sender, payload)
}

// payloadAttrs returns the attributes of a payload that describes itself
// for logs as a group (slog.LogValuer), else none: an arbitrary payload
// may be large or hold secrets.
func payloadAttrs(payload any) []any {
	lv, ok := payload.(slog.LogValuer)
	if !ok {
		return nil
	}
	v := slog.AnyValue(lv).Resolve() // recovers a panicking LogValue
	if v.Kind() != slog.KindGroup {
		return []any{slog.Attr{Key: "payload", Value: v}}
	}
	attrs := v.Group()
	out := make([]any, len(attrs))
	for i, a := range attrs {
		out[i] = a
	}
	return out
}
