package tasks

import (
	"context"
	"sync/atomic"
)

// Event names a life-cycle event of a task result.
type Event int

// The life-cycle events, sent as the signals of package signals.
const (
	EventEnqueued Event = iota + 1
	EventStarted
	EventFinished
)

// EventSink receives life-cycle events.
type EventSink func(ctx context.Context, ev Event, sender string, result *RawResult)

var sink atomic.Pointer[EventSink]

// SetEventSink installs the receiver of Emit. Package signals installs
// itself when it is imported; other code has no reason to call this.
func SetEventSink(s EventSink) { sink.Store(&s) }

// Emit sends a life-cycle event to the installed sink (package signals), if
// any. Backends call it (through signals) at each status change.
func Emit(ctx context.Context, ev Event, sender string, result *RawResult) {
	if s := sink.Load(); s != nil && *s != nil {
		(*s)(ctx, ev, sender, result)
	}
}
