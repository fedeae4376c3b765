package database

import "errors"

// ErrNotReady is wrapped by every error of Worker.Ready, together with the
// one of ErrWorkerNotStarted, ErrWorkerStopping and ErrClaimFailed that
// says why.
var ErrNotReady = errors.New("worker not ready")

// The reasons of Worker.Ready, matched with errors.Is: each error of Ready
// wraps ErrNotReady and exactly one of them.
var (
	// ErrWorkerNotStarted reports a worker whose Start has not been called,
	// or failed.
	ErrWorkerNotStarted = errors.New("not started")
	// ErrWorkerStopping reports a worker that is stopping or has stopped:
	// Stop or StopAndCancel was called, or it decided to stop by itself.
	ErrWorkerStopping = errors.New("stopping")
	// ErrClaimFailed reports a worker whose latest claim failed; Ready's
	// error also wraps the claim's error. The worker retries meanwhile.
	ErrClaimFailed = errors.New("claiming tasks failed")
)

// notReadyError is an error of Worker.Ready: "worker not ready: " and
// detail, then the failed claim's error if any. It wraps ErrNotReady, why
// and err.
type notReadyError struct {
	why    error  // ErrWorkerNotStarted, ErrWorkerStopping or ErrClaimFailed
	detail string // why's message, or a finer one ("stopped")
	err    error  // the failed claim's error, or nil
}

func (e *notReadyError) Error() string {
	s := ErrNotReady.Error() + ": " + e.detail
	if e.err != nil {
		s += ": " + e.err.Error()
	}
	return s
}

func (e *notReadyError) Unwrap() []error {
	if e.err == nil {
		return []error{ErrNotReady, e.why}
	}
	return []error{ErrNotReady, e.why, e.err}
}

// Ready reports whether the worker is doing its job: nil while it runs and
// its latest claim round succeeded, or needed no claim because every slot
// is busy. Otherwise it returns an error wrapping ErrNotReady and, to tell
// why without parsing the message, one of:
//
//   - ErrWorkerNotStarted: the worker is not started, or its Start failed;
//   - ErrWorkerStopping: it is stopping, or stopped (the message says
//     which);
//   - ErrClaimFailed: its latest claim failed; the error also wraps that
//     claim's error (a database error, such as ErrUnreachable or
//     ErrSchemaMissing, retried by the worker meanwhile).
//
// Ready reads a few atomics and touches neither the database nor the
// worker's goroutines: call it as often as needed, from any goroutine (a
// readiness probe, for example, together with Backend.Check for the
// database and its schema). A claim round that fails makes the worker
// unready at once; the next one that succeeds makes it ready again. A
// worker whose slots stay busy stays ready without claiming.
func (w *Worker) Ready() error {
	if !w.started.Load() {
		return &notReadyError{why: ErrWorkerNotStarted, detail: ErrWorkerNotStarted.Error()}
	}
	if w.stopping.Load() {
		select {
		case <-w.done:
			return &notReadyError{why: ErrWorkerStopping, detail: "stopped"}
		default:
			return &notReadyError{why: ErrWorkerStopping, detail: ErrWorkerStopping.Error()}
		}
	}
	if err := w.fetcher.lastClaimErr(); err != nil {
		return &notReadyError{why: ErrClaimFailed, detail: ErrClaimFailed.Error(), err: err}
	}
	return nil
}
