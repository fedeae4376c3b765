package tasks

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package and by the backends
// wraps one of these where it applies, so callers match them with errors.Is.
var (
	// ErrInvalidTask reports a task, its options or its arguments that cannot
	// be enqueued: priority out of range, a queue the backend does not allow,
	// run-after on a backend that cannot defer, arguments that do not encode
	// to JSON, and the like.
	ErrInvalidTask = errors.New("invalid task")

	// ErrInvalidBackend reports a backend name that is not configured, or a
	// backend that is misconfigured.
	ErrInvalidBackend = errors.New("invalid backend")

	// ErrResultNotFound reports an id that the backend does not know.
	ErrResultNotFound = errors.New("task result not found")

	// ErrResultMismatch reports a result that exists but belongs to another
	// task than the one asked.
	ErrResultMismatch = errors.New("task result belongs to another task")

	// ErrNotFinished is returned when reading the return value of a task that
	// has not finished (READY or RUNNING).
	ErrNotFinished = errors.New("task has not finished")

	// ErrTaskFailed is returned when reading the return value of a task that
	// finished FAILED. The error also carries the message of the last attempt.
	ErrTaskFailed = errors.New("task failed")

	// ErrTaskCancelled is returned when reading the return value of a
	// CANCELLED task.
	ErrTaskCancelled = errors.New("task was cancelled")

	// ErrNotSupported reports an operation the backend's capability flags say
	// it lacks (for example Cancel on the immediate backend).
	ErrNotSupported = errors.New("operation not supported by backend")

	// ErrNotCancellable is returned when cancelling a task that is no longer
	// READY.
	ErrNotCancellable = errors.New("task cannot be cancelled: it is not READY")

	// ErrUnknownTask is recorded as the failure of a stored task whose name is
	// not registered in the running binary. Such a task is retried with
	// backoff, like any failure.
	ErrUnknownTask = errors.New("task not registered in this binary")
)

// invalidf returns an error wrapping ErrInvalidTask.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidTask}, args...)...)
}
