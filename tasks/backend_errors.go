package tasks

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"
)

// This file is for backend authors (and middleware): the errors of a failed
// attempt as RunAttempt reports them in Attempt.Err, and how a failure is
// recorded in a result (NewTaskError). Results store them as TaskError
// values, with the error's Go type by name.

// ArgsError reports stored arguments that do not decode to the task's Args
// (from RunAttempt, and from Task.DecodeArgs). It is a permanent failure:
// the task is not retried.
type ArgsError struct {
	// Task is the task's name.
	Task string
	// Err is the JSON decoding error.
	Err error
}

// Error implements error.
func (e *ArgsError) Error() string {
	return fmt.Sprintf("task %q: arguments do not decode: %v", e.Task, e.Err)
}

// Unwrap returns Err.
func (e *ArgsError) Unwrap() error { return e.Err }

// ReturnValueError reports a return value that does not encode to JSON;
// the attempt fails.
type ReturnValueError struct {
	// Task is the task's name.
	Task string
	// Err is the JSON encoding error.
	Err error
}

// Error implements error.
func (e *ReturnValueError) Error() string {
	return fmt.Sprintf("task %q: return value does not encode to JSON: %v", e.Task, e.Err)
}

// Unwrap returns Err.
func (e *ReturnValueError) Unwrap() error { return e.Err }

// UnknownTaskError reports a stored task whose name is not registered in
// the running binary. It matches ErrUnknownTask with errors.Is. It is
// retried with backoff like any failure, so that a task enqueued by a
// newer web process waits for a worker that knows it (a rolling deploy)
// instead of failing for good.
type UnknownTaskError struct {
	// Name is the stored task name.
	Name string
	// Binary is the name of the executable that could not run it.
	Binary string
}

// Error implements error.
func (e *UnknownTaskError) Error() string {
	bin := ""
	if e.Binary != "" {
		bin = " (" + e.Binary + ")"
	}
	return fmt.Sprintf("task %q not registered in this binary%s: is the package that defines it imported? "+
		"It is retried with backoff until a worker that defines it runs it", e.Name, bin)
}

// Is reports whether target is ErrUnknownTask.
func (e *UnknownTaskError) Is(target error) bool { return target == ErrUnknownTask }

// binaryName is the name of the running executable, for UnknownTaskError.
var binaryName = sync.OnceValue(func() string {
	if exe, err := os.Executable(); err == nil {
		return filepath.Base(exe)
	}
	if len(os.Args) > 0 {
		return filepath.Base(os.Args[0])
	}
	return ""
})

// TimeoutError reports an attempt that failed after its timeout cancelled
// its context.
type TimeoutError struct {
	// Timeout is the attempt's timeout.
	Timeout time.Duration
	// Err is the error the task returned.
	Err error
}

// Error implements error.
func (e *TimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %v: %v", e.Timeout, e.Err)
}

// Unwrap returns Err.
func (e *TimeoutError) Unwrap() error { return e.Err }

// PanicError reports a task that panicked. NewTaskError records it with the
// type "panic" and the stack.
type PanicError struct {
	// Value is the value passed to panic.
	Value any
	// Stack is the stack of the panicking goroutine.
	Stack string
}

// Error implements error.
func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// NewTaskError describes the failure err of attempt number attempt at time
// at: the Go type of the error (the first type under fmt/errors wrappers),
// its message, and the stack of a recovered panic.
func NewTaskError(attempt int, at time.Time, err error) TaskError {
	te := TaskError{Attempt: attempt, At: at.UTC(), Type: errorType(err), Message: err.Error()}
	var p *PanicError
	if errors.As(err, &p) {
		te.Type, te.Message, te.Stack = "panic", fmt.Sprint(p.Value), p.Stack
	}
	return te
}

// errorType names the type of err, looking through the anonymous wrappers
// of fmt.Errorf and errors.Join for a more telling type.
func errorType(err error) string {
	for e := err; e != nil; {
		t := reflect.TypeOf(e).String()
		switch t {
		case "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError", "*tasks.NoRetryError":
		default:
			return t
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			// fmt.Errorf with several %w, errors.Join: name the first.
			e = nil
			for _, x := range u.Unwrap() {
				if x != nil {
					e = x
					break
				}
			}
		default:
			e = nil
		}
	}
	return reflect.TypeOf(err).String()
}
