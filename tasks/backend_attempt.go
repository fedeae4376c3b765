package tasks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"time"
)

// This file is for backend authors: the one attempt path that every backend
// (immediate, dummy, the database worker) runs a stored task through, and
// the task policy it applies.

// Policy is how a stored task is run: resolved in one place (ResolvePolicy)
// from the stored row, the task's definition and the backend.
type Policy struct {
	// MaxAttempts is how many attempts the task gets in all (at least 1).
	MaxAttempts int
	// Timeout bounds one attempt; 0 means none.
	Timeout time.Duration
	// Backoff is the delay before the retry after attempt n.
	Backoff Backoff
	// Retries is false on a backend that gives every task one attempt.
	Retries bool
}

// AttemptConfig is what a backend tells RunAttempt about itself.
type AttemptConfig struct {
	// Backend supplies the default max attempts and backoff.
	Backend *BackendConfig
	// Retries: failed attempts with attempts left go back to READY. False
	// for backends without CanRetry.
	Retries bool
	// MaxRunTime caps the timeout of every attempt (0: no cap). A task with
	// no timeout of its own gets MaxRunTime.
	MaxRunTime time.Duration
	// Now is the backend's clock, for the end of an attempt (and so the
	// error's time and the retry's run-after); nil means time.Now in UTC. A
	// backend that stores times at a coarser precision passes a clock that
	// truncates to it, so that stored and returned times agree.
	Now func() time.Time
	// Logger is the base of the task's logger (TaskContext.Logger) and
	// where the attempt's life-cycle is logged; nil means Backend.Logger()
	// (slog.Default() unless the backend has its own).
	Logger *slog.Logger
	// Running is the backend running the attempt. It is in the task's
	// context (TaskContext.Backend): a follow-up task that names no backend
	// is enqueued to it. A backend with CanDefer also snoozes tasks (see
	// Snooze); without Running, a snooze is recorded as a failure.
	Running Backend
	// HandBack, when set, is asked after a failed attempt whether the
	// backend stopped under the task (a worker's hard stop): the task is
	// then handed back (Attempt.HandedBack) instead of failing.
	HandBack func() bool
}

// logger returns the logger of the attempts run with c.
func (c AttemptConfig) logger() *slog.Logger {
	switch {
	case c.Logger != nil:
		return c.Logger
	case c.Backend != nil:
		return c.Backend.Logger()
	}
	return slog.Default()
}

// snoozes reports whether the backend of c can snooze tasks.
func (c AttemptConfig) snoozes() bool {
	return c.Running != nil && c.Running.Capabilities().Has(CanDefer)
}

func (c AttemptConfig) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now().UTC()
}

// ResolvePolicy returns the policy of rec: its stored max attempts and
// timeout, else the task definition's, else the backend's defaults; the
// timeout capped by MaxRunTime; the definition's backoff, else the backend's.
func (c AttemptConfig) ResolvePolicy(rec *RawResult) Policy {
	r, _ := Lookup(rec.TaskName)
	return c.policy(rec, r)
}

// policy is ResolvePolicy with the task's definition r already looked up
// (nil when the name is not registered).
func (c AttemptConfig) policy(rec *RawResult, r Runner) Policy {
	p := Policy{MaxAttempts: rec.MaxAttempts, Timeout: rec.Timeout, Retries: c.Retries}
	var def TaskDefaults
	if r != nil {
		def = r.Defaults()
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = def.MaxAttempts
	}
	if p.MaxAttempts <= 0 {
		p.MaxAttempts = DefaultMaxAttempts
		if c.Backend != nil {
			p.MaxAttempts = c.Backend.DefaultMaxAttempts()
		}
	}
	if p.Timeout <= 0 {
		p.Timeout = def.Timeout
	}
	if c.MaxRunTime > 0 && (p.Timeout <= 0 || p.Timeout > c.MaxRunTime) {
		p.Timeout = c.MaxRunTime
	}
	p.Backoff = def.Backoff
	if p.Backoff == nil {
		p.Backoff = DefaultBackoff
		if c.Backend != nil {
			p.Backoff = c.Backend.DefaultBackoff()
		}
	}
	return p
}

// Attempt is the classified outcome of one attempt of a stored task.
type Attempt struct {
	// Number is the attempt's 1-based number (rec.Attempts when it ran).
	Number int
	// Status is SUCCESSFUL, READY (a retry is scheduled at RunAfter; or
	// Snoozed, or HandedBack) or FAILED (no attempt left, or a failure that
	// retrying cannot fix).
	Status Status
	// Value is the JSON return value of a successful attempt.
	Value json.RawMessage
	// Err is the attempt's error; nil on success. It is never a panic: a
	// panic is a *PanicError, a misbehaving error value a *BadErrorValue,
	// runtime.Goexit an ErrGoexit.
	Err error
	// Record is Err as stored in the result's error list; nil on success
	// and when the attempt is not counted (Snoozed, HandedBack).
	Record *TaskError
	// RunAfter is when the retry (or the snoozed task) is due (Status
	// READY).
	RunAfter time.Time
	// End is when the attempt ended (UTC).
	End time.Time
	// Snoozed: the task returned Snooze(d) on a backend that can defer it.
	// Status is READY, RunAfter End + d; Err is the *SnoozeError, Record
	// nil: the attempt is not counted and no error is recorded.
	Snoozed bool
	// HandedBack: the backend stopped under the task (AttemptConfig.HandBack).
	// Status is READY with the run-after unchanged; Err is the attempt's
	// error, Record nil: the attempt is not counted and no error is
	// recorded.
	HandedBack bool
}

// ErrGoexit is the error of an attempt whose task called runtime.Goexit
// (as testing.T.FailNow does) instead of returning.
var ErrGoexit = errors.New("task called runtime.Goexit instead of returning")

// BadErrorValue replaces an error returned by a task that cannot be used as
// an error: a typed nil pointer (var e *MyErr; return v, e), or a value
// whose Error method panics.
type BadErrorValue struct {
	// Type is the Go type of the returned value.
	Type string
	// Problem says what is wrong with it.
	Problem string
}

// Error implements error.
func (e *BadErrorValue) Error() string {
	return fmt.Sprintf("task returned an unusable error value of type %s: %s", e.Type, e.Problem)
}

// RunAttempt runs one attempt of the stored task rec (already marked
// RUNNING, with rec.Attempts counting this attempt) in the calling
// goroutine, classifies its outcome with the policy of cfg, and calls finish
// with it exactly once. RunAttempt only reads rec; Attempt.Apply records the
// outcome on it.
//
// The attempt looks the task up by name, decodes the arguments, applies the
// policy's timeout to ctx, puts the TaskContext in it (see FromContext) and
// calls the function with panics recovered and encodes the return value,
// inside the execution middleware of the backend (global middleware from
// Use, then cfg.Backend's own; see Middleware).
// Its error is always safe to log and record: a panic becomes a
// *PanicError (with the stack), an error value that would crash its user
// (a typed nil pointer, an Error or Unwrap method that panics) a
// *BadErrorValue, an error after the timeout cancelled the context a
// *TimeoutError, an unregistered task an *UnknownTaskError, and arguments
// that do not decode an *ArgsError.
//
// The outcome is SUCCESSFUL without error. A failed attempt is READY again
// (a retry at End + Backoff(Number)) when the policy retries, attempts are
// left and the failure is not permanent; otherwise it is FAILED.
// Undecodable arguments are permanent (no retry can fix them), and so is
// an error the task marked with NoRetry. An unknown task is retried like
// any failure: a worker that knows it may run it later (a rolling deploy).
// A task that returns Snooze(d) is READY again at End + d without the
// attempt counted, on a backend that can defer (cfg.Running has CanDefer);
// elsewhere the snooze is FAILED with a *SnoozeError saying why.
//
// RunAttempt logs the attempt with the task's logger (TaskContext.Logger):
// its start and its success at DEBUG, a failure to be retried at WARN, a
// final failure at ERROR with the error (and the stack of a panic), a
// snooze at DEBUG.
//
// If the task calls runtime.Goexit (as testing.T.FailNow does), finish is
// called with Err ErrGoexit while the calling goroutine unwinds, and
// RunAttempt does not return: put everything that must happen after the
// attempt (storing it, the TaskFinished signal, giving back a slot) in
// finish.
func RunAttempt(ctx context.Context, rec *RawResult, cfg AttemptConfig, finish func(Attempt)) {
	r, _ := Lookup(rec.TaskName) // one registry look-up per attempt
	pol := cfg.policy(rec, r)
	tc := newTaskContext(rec, cfg, pol, cfg.logger())
	number := rec.Attempts
	start := time.Now()
	tc.Logger.Debug("gotasks: task started")
	returned := false
	done := func(out json.RawMessage, err error) {
		a := classify(number, pol, out, err, cfg.now())
		a = cfg.adjust(a, pol)
		logAttempt(tc.Logger, a, time.Since(start))
		finish(a)
	}
	defer func() {
		if !returned { // runtime.Goexit: deferred calls run, recover is nil
			done(nil, ErrGoexit)
		}
	}()
	var x *Execution
	mws := middlewareOf(cfg.Backend)
	if len(mws) > 0 {
		x = &Execution{TaskContext: *tc, Args: rec.Args, Priority: rec.Priority, RunAfter: rec.RunAfter, Repeat: rec.Repeat, cfg: cfg, pol: pol}
	}
	out, err := execute(context.WithValue(ctx, taskContextKey{}, tc), rec, r, pol.Timeout, mws, x)
	returned = true
	done(out, err)
}

// adjust turns a classified failure into a hand-back when the backend
// stopped under the task, and a snooze into a failure on a backend that
// cannot defer.
func (c AttemptConfig) adjust(a Attempt, pol Policy) Attempt {
	if a.Err == nil || a.Snoozed && c.snoozes() {
		return a
	}
	if c.HandBack != nil && c.HandBack() {
		return Attempt{Number: a.Number, Status: StatusReady, Err: a.Err, End: a.End, HandedBack: true}
	}
	if a.Snoozed && !c.snoozes() {
		name := "?"
		if c.Running != nil {
			name = c.Running.Name()
		} else if c.Backend != nil {
			name = c.Backend.Name()
		}
		var se *SnoozeError
		errors.As(a.Err, &se)
		err := &SnoozeError{Delay: se.Delay, backend: name}
		te := NewTaskError(a.Number, a.End, err)
		return Attempt{Number: a.Number, Status: StatusFailed, Err: err, Record: &te, End: a.End}
	}
	return a
}

// logAttempt logs the outcome a of an attempt that took d.
func logAttempt(log *slog.Logger, a Attempt, d time.Duration) {
	switch {
	case a.Status == StatusSuccessful:
		log.Debug("gotasks: task succeeded", "duration", d.String())
	case a.Snoozed:
		log.Debug("gotasks: task snoozed", "run_after", a.RunAfter, "duration", d.String())
	case a.HandedBack:
		log.Debug("gotasks: task handed back: the backend stopped under it", "err", a.Err.Error(), "duration", d.String())
	case a.Status == StatusReady:
		log.Warn("gotasks: task attempt failed; will retry", "err", a.Record.Message, "error_type", a.Record.Type,
			"retry_at", a.RunAfter, "duration", d.String())
	default:
		args := []any{"err", a.Record.Message, "error_type", a.Record.Type, "duration", d.String()}
		if a.Record.Stack != "" {
			args = append(args, "stack", a.Record.Stack)
		}
		log.Error("gotasks: task failed", args...)
	}
}

// Apply records a on rec: status, return value, error list, finish time,
// and the run-after of a retry. A snoozed or handed-back attempt is not
// counted: rec.Attempts goes back by one.
func (a Attempt) Apply(rec *RawResult) {
	rec.Status = a.Status
	switch {
	case a.Snoozed:
		rec.Attempts--
		rec.RunAfter = a.RunAfter
	case a.HandedBack:
		rec.Attempts--
	case a.Status == StatusSuccessful:
		rec.ReturnValue = a.Value
		end := a.End
		rec.FinishedAt = &end
	case a.Status == StatusReady:
		rec.Errors = append(rec.Errors, *a.Record)
		rec.RunAfter = a.RunAfter
	default:
		rec.Errors = append(rec.Errors, *a.Record)
		end := a.End
		rec.FinishedAt = &end
	}
}

// classify returns the outcome of attempt number with the return value out
// or the error err, ended at end, under pol.
func classify(number int, pol Policy, out json.RawMessage, err error, end time.Time) Attempt {
	a := Attempt{Number: number, End: end}
	if err == nil {
		a.Status, a.Value = StatusSuccessful, out
		return a
	}
	te, ctl, ierr := inspect(number, end, err)
	if ierr != nil { // its Error, Unwrap, Is or As method panicked
		err = ierr
		te, ctl, _ = inspect(number, end, err)
	}
	a.Err = err
	if ctl.snooze != nil {
		a.Status, a.Snoozed = StatusReady, true
		a.RunAfter = end.Add(ctl.snooze.Delay).Truncate(time.Microsecond)
		return a
	}
	a.Record = &te
	if pol.Retries && !ctl.permanent && number < pol.MaxAttempts {
		a.Status = StatusReady
		a.RunAfter = end.Add(pol.Backoff(number)).Truncate(time.Microsecond)
	} else {
		a.Status = StatusFailed
	}
	return a
}

// execute runs the function of rec (r, its registered definition; nil when
// the name is unknown) with timeout applied, inside the execution
// middleware mws (x describes the attempt to them; nil without
// middleware). The returned error is safe to use: never a panic, never a
// typed nil.
func execute(ctx context.Context, rec *RawResult, r Runner, timeout time.Duration, mws []Middleware, x *Execution) (json.RawMessage, error) {
	runCtx := ctx
	if timeout > 0 {
		var cancel context.CancelFunc
		runCtx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if len(mws) == 0 { // the common case, without a closure
		return runTask(ctx, runCtx, runCtx, rec, r, timeout)
	}
	var out json.RawMessage
	err := executeChain(runCtx, mws, x, func(taskCtx context.Context) error {
		var err error
		out, err = runTask(ctx, runCtx, taskCtx, rec, r, timeout)
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case out == nil: // a middleware turned a failure into a success
		return json.RawMessage("null"), nil
	}
	return out, nil
}

// runTask runs the function of rec with taskCtx, derived by middleware from
// runCtx, which is ctx with the attempt's timeout. An error after the
// timeout fired (and not because ctx ended) is a *TimeoutError.
func runTask(ctx, runCtx, taskCtx context.Context, rec *RawResult, r Runner, timeout time.Duration) (json.RawMessage, error) {
	if r == nil {
		return nil, &UnknownTaskError{Name: rec.TaskName, Binary: binaryName()}
	}
	out, err := runRecovered(taskCtx, r, rec.Args)
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
			out, err = nil, newPanicError(v)
		}
	}()
	out, err = r.RunJSON(ctx, args)
	if err != nil {
		err = usableError(err)
	}
	return out, err
}

// newPanicError records the panic value v with the stack of the panicking
// goroutine (call it in the deferred function that recovered v).
func newPanicError(v any) *PanicError {
	return &PanicError{Value: v, Stack: string(debug.Stack())}
}

// usableError returns err, or a *BadErrorValue when err is a typed nil
// pointer or its Error method panics: such a value crashes whoever logs or
// records it.
func usableError(err error) (safe error) {
	typ := fmt.Sprintf("%T", err)
	if v := reflect.ValueOf(err); (v.Kind() == reflect.Pointer || v.Kind() == reflect.Map ||
		v.Kind() == reflect.Slice || v.Kind() == reflect.Func || v.Kind() == reflect.Chan) && v.IsNil() {
		return &BadErrorValue{Type: typ, Problem: "a nil " + typ + " is not a nil error (return a literal nil instead)"}
	}
	defer func() {
		if v := recover(); v != nil {
			safe = &BadErrorValue{Type: typ, Problem: fmt.Sprintf("its Error method panicked: %v", v)}
		}
	}()
	_ = err.Error()
	return err
}

// control is what an error asks of its backend.
type control struct {
	// permanent: no retry can fix it (undecodable arguments, NoRetry).
	permanent bool
	// snooze is set for Snooze.
	snooze *SnoozeError
}

// inspect records err and tells what it asks: a permanent failure (stored
// arguments that do not decode, or an error marked with NoRetry) or a
// snooze. Both walk err's chain of wrapped errors, whose methods the task
// wrote: when one of them panics, inspect returns a *BadErrorValue to
// record instead.
func inspect(number int, end time.Time, err error) (te TaskError, ctl control, bad error) {
	defer func() {
		if v := recover(); v != nil {
			bad = &BadErrorValue{Type: fmt.Sprintf("%T", err), Problem: fmt.Sprintf("inspecting it panicked: %v", v)}
		}
	}()
	te = NewTaskError(number, end, err)
	var ae *ArgsError
	ctl.permanent = errors.As(err, &ae) || errors.Is(err, ErrNoRetry)
	var se *SnoozeError
	if errors.As(err, &se) && se != nil {
		ctl.snooze = se
	}
	return te, ctl, nil
}
