package tasks

import (
	"errors"
	"fmt"
	"time"
)

// Control-flow errors: what a task returns to tell its backend what to do
// next, besides succeeding or failing with retries.

// ErrNoRetry matches (errors.Is) the error of a task that asked to fail at
// once, without retrying (see NoRetry).
var ErrNoRetry = errors.New("task failed without retry")

// NoRetryError is the error NoRetry returns: the task's own error Err, with
// the request not to retry it. It is recorded as Err is (its type and
// message), and the task is FAILED whatever attempts are left.
type NoRetryError struct {
	// Err is the task's error.
	Err error
}

// Error returns the message of Err.
func (e *NoRetryError) Error() string { return e.Err.Error() }

// Unwrap returns Err, so that errors.As finds the task's own error type.
func (e *NoRetryError) Unwrap() error { return e.Err }

// Is reports whether target is ErrNoRetry.
func (e *NoRetryError) Is(target error) bool { return target == ErrNoRetry }

// NoRetry returns err marked as final: the attempt fails and the task goes
// to FAILED at once, whatever attempts are left (as River's JobCancel,
// asynq's SkipRetry). err stays matchable with errors.Is and errors.As,
// and is recorded as itself; the result matches ErrNoRetry too:
//
//	if errors.Is(err, ErrAccountClosed) {
//		return "", tasks.NoRetry(err)
//	}
//
// NoRetry(nil) returns ErrNoRetry. Wrapping the result again (fmt.Errorf
// with %w) keeps the request.
func NoRetry(err error) error {
	if err == nil {
		return ErrNoRetry
	}
	return &NoRetryError{Err: err}
}

// SnoozeError is the error Snooze returns. A backend that can defer tasks
// (CanDefer) puts the task back to READY, due after Delay, without counting
// the attempt and without recording an error. A backend that cannot (the
// immediate backend, the default) records the attempt FAILED with a
// *SnoozeError whose message says so.
type SnoozeError struct {
	// Delay is how long the task sleeps before its next attempt.
	Delay time.Duration
	// backend names a backend that could not snooze the task ("" when it
	// could).
	backend string
}

// Error implements error.
func (e *SnoozeError) Error() string {
	if e.backend != "" {
		return fmt.Sprintf("task snoozed for %v, but backend %q cannot defer tasks (no Defer flag); the snooze is recorded as a failure",
			e.Delay, e.backend)
	}
	return fmt.Sprintf("task snoozed for %v", e.Delay)
}

// Snooze returns an error that asks the backend to run the task again
// after d, without counting this attempt (River's JobSnooze): for a task
// that cannot make progress yet (a rate limit, a resource not ready). The
// task goes back to READY with its run-after d from now; its attempt count
// goes back by one and no error is recorded, so snoozing neither uses up
// the task's attempts nor ends it. A negative d is 0 (due at once; the
// worker runs it again at its next claim).
//
// Only backends with CanDefer snooze (the database and dummy backends);
// on the others the attempt is FAILED with a *SnoozeError that says the
// backend cannot snooze. Return the error as it is or wrapped with %w.
func Snooze(d time.Duration) error {
	return &SnoozeError{Delay: max(d, 0)}
}
