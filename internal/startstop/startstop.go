// Package startstop is the start/stop life-cycle shared by the services of
// a worker: a service embeds Base, calls StartInit in its Start, runs its
// loop in a goroutine that exits when the returned context is done and
// closes the returned channel on exit; Stop cancels and waits for it.
package startstop

import (
	"context"
	"sync"
)

// Service is what every service of a worker implements.
type Service interface {
	// Start starts the service's goroutine and returns. Starting a started
	// service is a no-op.
	Start(ctx context.Context) error
	// Stop asks the goroutine to stop and waits until it has. Stopping a
	// service that was never started, or twice, is a no-op.
	Stop()
}

// Base implements the bookkeeping of Service. The zero value is ready.
type Base struct {
	mu      sync.Mutex // guards the fields below
	started bool
	cancel  context.CancelFunc
	stopped chan struct{}
}

// StartInit prepares a start: it returns the context the service's
// goroutine runs under (cancelled by Stop), shouldStart false when the
// service was already started, and the channel the goroutine must close when
// it exits.
func (b *Base) StartInit(ctx context.Context) (_ context.Context, shouldStart bool, stopped chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.started {
		return ctx, false, nil
	}
	b.started = true
	ctx, b.cancel = context.WithCancel(ctx)
	b.stopped = make(chan struct{})
	return ctx, true, b.stopped
}

// Stop cancels the service's context and waits for its goroutine to close
// the stopped channel. It is a no-op when the service never started.
func (b *Base) Stop() {
	b.mu.Lock()
	cancel, stopped := b.cancel, b.stopped
	b.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-stopped
}

// Cancel asks the service's goroutine to stop without waiting for it: for
// a service that decides to stop from its own goroutine.
func (b *Base) Cancel() {
	b.mu.Lock()
	cancel := b.cancel
	b.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// StopContext is Stop bounded by ctx: it returns ctx's error if the
// goroutine has not exited when ctx is done (it is still asked to stop).
func (b *Base) StopContext(ctx context.Context) error {
	b.mu.Lock()
	cancel, stopped := b.cancel, b.stopped
	b.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Stopped returns a channel closed when the service's goroutine has exited
// (nil before Start).
func (b *Base) Stopped() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.stopped
}
