package database

import (
	"errors"
	"fmt"
)

// ErrNotReady is wrapped by every error of Worker.Ready.
var ErrNotReady = errors.New("worker not ready")

// Ready reports whether the worker is doing its job: nil while it runs and
// its latest claim round succeeded, or needed no claim because every slot
// is busy. Otherwise it returns an error wrapping ErrNotReady that says
// why: the worker is not started (or its Start failed), it is stopping (or
// stopped), or its latest claim failed, in which case the error also wraps
// that claim's error (a database error, retried by the worker meanwhile).
//
// Ready reads a few atomics and touches neither the database nor the
// worker's goroutines: call it as often as needed, from any goroutine (a
// readiness probe, for example, together with Backend.Check for the
// database and its schema). A claim round that fails makes the worker
// unready at once; the next one that succeeds makes it ready again. A
// worker whose slots stay busy stays ready without claiming.
func (w *Worker) Ready() error {
	if !w.started.Load() {
		return fmt.Errorf("%w: not started", ErrNotReady)
	}
	if w.stopping.Load() {
		select {
		case <-w.done:
			return fmt.Errorf("%w: stopped", ErrNotReady)
		default:
			return fmt.Errorf("%w: stopping", ErrNotReady)
		}
	}
	if err := w.fetcher.lastClaimErr(); err != nil {
		return fmt.Errorf("%w: claiming tasks failed: %w", ErrNotReady, err)
	}
	return nil
}
