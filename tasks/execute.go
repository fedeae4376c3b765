package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"time"
)

// ArgsError reports stored arguments that do not decode to the task's Args.
type ArgsError struct {
	Task string
	Err  error
}

func (e *ArgsError) Error() string {
	return fmt.Sprintf("task %q: arguments do not decode: %v", e.Task, e.Err)
}

func (e *ArgsError) Unwrap() error { return e.Err }

// ReturnValueError reports a return value that does not encode to JSON.
type ReturnValueError struct {
	Task string
	Err  error
}

func (e *ReturnValueError) Error() string {
	return fmt.Sprintf("task %q: return value does not encode to JSON: %v", e.Task, e.Err)
}

func (e *ReturnValueError) Unwrap() error { return e.Err }

// UnknownTaskError reports a stored task whose name is not registered in
// the running binary. It matches ErrUnknownTask with errors.Is.
type UnknownTaskError struct{ Name string }

func (e *UnknownTaskError) Error() string {
	return fmt.Sprintf("task %q not registered in this binary (is the package that defines it imported?)", e.Name)
}

// Is reports whether target is ErrUnknownTask.
func (e *UnknownTaskError) Is(target error) bool { return target == ErrUnknownTask }

// TimeoutError reports an attempt that failed after its timeout cancelled
// its context.
type TimeoutError struct {
	Timeout time.Duration
	Err     error
}

func (e *TimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %v: %v", e.Timeout, e.Err)
}

func (e *TimeoutError) Unwrap() error { return e.Err }

// PanicError reports a task that panicked.
type PanicError struct {
	Value any
	Stack string
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Execute runs one attempt of the stored task rec in the calling goroutine:
// it looks the task up by name, decodes the arguments, applies the timeout
// (rec.Timeout, else the task's definition), calls the function with panics
// recovered, and encodes the return value. It returns the JSON return value,
// or the error of the failed attempt, which is never a panic. Use
// NewTaskError to record it.
func Execute(ctx context.Context, rec *RawResult) (json.RawMessage, error) {
	r, ok := Lookup(rec.TaskName)
	if !ok {
		return nil, &UnknownTaskError{Name: rec.TaskName}
	}
	timeout := rec.Timeout
	if timeout <= 0 {
		timeout = r.Defaults().Timeout
	}
	runCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	out, err := runRecovered(runCtx, r, rec.Args)
	if err != nil && timeout > 0 && ctx.Err() == nil && errors.Is(runCtx.Err(), context.DeadlineExceeded) {
		if _, isPanic := err.(*PanicError); !isPanic {
			err = &TimeoutError{Timeout: timeout, Err: err}
		}
	}
	return out, err
}

func runRecovered(ctx context.Context, r Runner, args json.RawMessage) (out json.RawMessage, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = nil, &PanicError{Value: v, Stack: string(debug.Stack())}
		}
	}()
	return r.RunJSON(ctx, args)
}

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
		case "*fmt.wrapError", "*fmt.wrapErrors", "*errors.joinError":
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
