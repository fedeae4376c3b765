package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

type execArgs struct {
	Mode string `json:"mode"`
}

// myErr is an error type with a pointer receiver, for typed nil errors.
type myErr struct{ msg string }

func (e *myErr) Error() string { return e.msg }

// panickyErr is an error whose Error method panics.
type panickyErr struct{}

func (panickyErr) Error() string { panic("Error method boom") }

// badUnwrap is an error whose Unwrap method panics.
type badUnwrap struct{}

func (badUnwrap) Error() string { return "bad unwrap" }
func (badUnwrap) Unwrap() error { panic("Unwrap boom") }

var execTask = tasks.Define("tasks_test.exec", func(ctx context.Context, a execArgs) (any, error) {
	switch a.Mode {
	case "ok":
		return map[string]int{"x": 1}, nil
	case "fail":
		return nil, errors.New("failing on purpose")
	case "panic":
		panic("exec panic")
	case "nan":
		return math.NaN(), nil
	case "chan":
		return struct{ C chan int }{}, nil
	case "sleep":
		<-ctx.Done()
		return nil, fmt.Errorf("sleep: %w", ctx.Err())
	case "sleep-then-panic":
		<-ctx.Done()
		panic("late panic")
	case "typed-nil":
		var e *myErr
		return nil, e
	case "error-panics":
		return nil, panickyErr{}
	case "unwrap-panics":
		return nil, fmt.Errorf("wrapped: %w", badUnwrap{})
	case "goexit":
		runtime.Goexit()
	case "no-retry":
		return nil, tasks.NoRetry(&myErr{msg: "do not retry"})
	case "snooze":
		return nil, fmt.Errorf("later: %w", tasks.Snooze(time.Minute))
	case "log":
		tasks.Logger(ctx).Info("from the task", "k", "v")
		return 1, nil
	}
	return nil, errors.New("unknown mode")
}, tasks.WithTimeout(time.Hour))

var slowByDefinition = tasks.Define("tasks_test.slow-by-definition", func(ctx context.Context, _ struct{}) (int, error) {
	<-ctx.Done()
	return 0, ctx.Err()
}, tasks.WithTimeout(20*time.Millisecond))

var (
	// withPolicy sets every policy option at definition.
	withPolicy = tasks.Define("tasks_test.with-policy", func(context.Context, execArgs) (int, error) {
		return 0, errors.New("failing on purpose")
	}, tasks.WithMaxAttempts(6), tasks.WithTimeout(3*time.Second), tasks.WithBackoff(tasks.ConstantBackoff(9*time.Second)))
	// withoutPolicy sets no policy option.
	withoutPolicy = tasks.Define("tasks_test.without-policy", func(context.Context, execArgs) (int, error) {
		return 0, errors.New("failing on purpose")
	})
)

// rec returns a stored task in its first attempt.
func rec(name, args string, timeout time.Duration) *tasks.RawResult {
	return &tasks.RawResult{ID: tasks.NewID(), TaskName: name, Args: json.RawMessage(args), Timeout: timeout,
		Status: tasks.StatusRunning, Attempts: 1}
}

// runAttempt runs one attempt of r and returns its outcome, checking that
// finish was called once and RunAttempt returned.
func runAttempt(t *testing.T, ctx context.Context, r *tasks.RawResult, cfg tasks.AttemptConfig) tasks.Attempt {
	t.Helper()
	var got []tasks.Attempt
	tasks.RunAttempt(ctx, r, cfg, func(a tasks.Attempt) { got = append(got, a) })
	if len(got) != 1 {
		t.Fatalf("finish was called %d times, want once", len(got))
	}
	return got[0]
}

// runAttemptInGoroutine runs one attempt of r in a goroutine of its own and
// reports whether RunAttempt returned (it does not when the task calls
// runtime.Goexit).
func runAttemptInGoroutine(t *testing.T, r *tasks.RawResult, cfg tasks.AttemptConfig) (tasks.Attempt, bool) {
	t.Helper()
	var got []tasks.Attempt
	returned := false
	done := make(chan struct{})
	go func() {
		defer close(done) // also when the goroutine exits by runtime.Goexit
		tasks.RunAttempt(t.Context(), r, cfg, func(a tasks.Attempt) { got = append(got, a) })
		returned = true
	}()
	<-done
	if len(got) != 1 {
		t.Fatalf("finish was called %d times, want once", len(got))
	}
	return got[0], returned
}

// TestRunAttemptErrors: what an attempt reports for each way a task can end.
func TestRunAttemptErrors(t *testing.T) {
	t.Parallel()
	var none tasks.AttemptConfig // no retries, no backend: every failure is FAILED

	t.Run("success", func(t *testing.T) {
		t.Parallel()
		a := runAttempt(t, t.Context(), rec(execTask.Name(), `{"mode":"ok"}`, 0), none)
		if a.Status != tasks.StatusSuccessful || string(a.Value) != `{"x":1}` || a.Err != nil || a.Record != nil || a.Number != 1 {
			t.Errorf("outcome %+v, want SUCCESSFUL attempt 1 with value {\"x\":1}", a)
		}
		if a.End.IsZero() || a.End.Location() != time.UTC {
			t.Errorf("End = %v, want a UTC time", a.End)
		}
	})

	t.Run("unknown task", func(t *testing.T) {
		t.Parallel()
		a := runAttempt(t, t.Context(), rec("tasks_test.no-such-task", `{}`, 0), none)
		exe, _ := os.Executable()
		if !errors.Is(a.Err, tasks.ErrUnknownTask) || !strings.Contains(a.Err.Error(), "tasks_test.no-such-task") ||
			!strings.Contains(a.Err.Error(), filepath.Base(exe)) {
			t.Errorf("unknown task: %v, want ErrUnknownTask naming it and the binary %s", a.Err, filepath.Base(exe))
		}
	})

	t.Run("arguments that do not decode", func(t *testing.T) {
		t.Parallel()
		for _, args := range []string{`{"mode":1}`, `not json`} {
			a := runAttempt(t, t.Context(), rec(execTask.Name(), args, 0), none)
			var ae *tasks.ArgsError
			if !errors.As(a.Err, &ae) || ae.Task != execTask.Name() {
				t.Errorf("args %s: %v (%T), want *tasks.ArgsError", args, a.Err, a.Err)
			}
		}
	})

	t.Run("panic", func(t *testing.T) {
		t.Parallel()
		a := runAttempt(t, t.Context(), rec(execTask.Name(), `{"mode":"panic"}`, 0), none)
		var pe *tasks.PanicError
		if !errors.As(a.Err, &pe) || pe.Value != "exec panic" || !strings.Contains(pe.Stack, "tasks_test") {
			t.Errorf("panic: %v (%T), want *tasks.PanicError with a stack", a.Err, a.Err)
		}
		if a.Status != tasks.StatusFailed || a.Record.Type != "panic" || a.Record.Message != "exec panic" || a.Record.Stack != pe.Stack {
			t.Errorf("panic recorded as %+v (%s), want FAILED, type panic, the message and the stack", a.Record, a.Status)
		}
	})

	t.Run("return value that does not encode", func(t *testing.T) {
		t.Parallel()
		for _, mode := range []string{"nan", "chan"} {
			a := runAttempt(t, t.Context(), rec(execTask.Name(), `{"mode":"`+mode+`"}`, 0), none)
			var re *tasks.ReturnValueError
			if !errors.As(a.Err, &re) || re.Task != execTask.Name() {
				t.Errorf("%s return value: %v (%T), want *tasks.ReturnValueError", mode, a.Err, a.Err)
			}
		}
	})

	t.Run("timeouts", func(t *testing.T) {
		t.Parallel()
		ctx := t.Context()
		var te *tasks.TimeoutError
		a := runAttempt(t, ctx, rec(execTask.Name(), `{"mode":"sleep"}`, 10*time.Millisecond), none)
		if !errors.As(a.Err, &te) || te.Timeout != 10*time.Millisecond || !errors.Is(a.Err, context.DeadlineExceeded) {
			t.Errorf("timeout from the result: %v (%T), want *tasks.TimeoutError of 10ms", a.Err, a.Err)
		}
		a = runAttempt(t, ctx, rec(slowByDefinition.Name(), `{}`, 0), none)
		if !errors.As(a.Err, &te) || te.Timeout != 20*time.Millisecond {
			t.Errorf("timeout from the definition: %v (%T), want *tasks.TimeoutError of 20ms", a.Err, a.Err)
		}
		var pe *tasks.PanicError
		a = runAttempt(t, ctx, rec(execTask.Name(), `{"mode":"sleep-then-panic"}`, 10*time.Millisecond), none)
		if !errors.As(a.Err, &pe) || errors.As(a.Err, &te) {
			t.Errorf("panic after the timeout: %v (%T), want a *tasks.PanicError only", a.Err, a.Err)
		}
		// MaxRunTime caps a longer timeout (the task's is an hour) and is
		// the timeout of a task without one.
		a = runAttempt(t, ctx, rec(execTask.Name(), `{"mode":"sleep"}`, 0), tasks.AttemptConfig{MaxRunTime: 10 * time.Millisecond})
		if !errors.As(a.Err, &te) || te.Timeout != 10*time.Millisecond {
			t.Errorf("timeout capped by MaxRunTime: %v (%T), want *tasks.TimeoutError of 10ms", a.Err, a.Err)
		}
		a = runAttempt(t, ctx, rec(withoutPolicy.Name(), `{}`, 0), tasks.AttemptConfig{MaxRunTime: time.Minute})
		if errors.As(a.Err, &te) {
			t.Errorf("a task that fails at once: %v, want no TimeoutError", a.Err)
		}
	})

	t.Run("cancelled caller is not a timeout", func(t *testing.T) {
		t.Parallel()
		cctx, cancel := context.WithCancel(t.Context())
		cancel()
		a := runAttempt(t, cctx, rec(execTask.Name(), `{"mode":"sleep"}`, time.Minute), none)
		var te *tasks.TimeoutError
		if errors.As(a.Err, &te) || !errors.Is(a.Err, context.Canceled) {
			t.Errorf("cancelled caller: %v (%T), want context.Canceled and no TimeoutError", a.Err, a.Err)
		}
	})

	// Error values that would crash whoever logs or records them are
	// replaced by a *BadErrorValue that says what is wrong.
	for _, c := range []struct {
		mode, typ, problem string
	}{
		{"typed-nil", "*tasks_test.myErr", "a nil *tasks_test.myErr is not a nil error"},
		{"error-panics", "tasks_test.panickyErr", "its Error method panicked: Error method boom"},
		{"unwrap-panics", "*fmt.wrapError", "inspecting it panicked: Unwrap boom"},
	} {
		t.Run("unusable error value "+c.mode, func(t *testing.T) {
			t.Parallel()
			a := runAttempt(t, t.Context(), rec(execTask.Name(), `{"mode":"`+c.mode+`"}`, 0), none)
			var be *tasks.BadErrorValue
			if !errors.As(a.Err, &be) {
				t.Fatalf("error %v (%T), want a *tasks.BadErrorValue", a.Err, a.Err)
			}
			if be.Type != c.typ || !strings.Contains(be.Problem, c.problem) {
				t.Errorf("BadErrorValue %+v, want type %s and a problem saying %q", be, c.typ, c.problem)
			}
			want := tasks.TaskError{Attempt: 1, Type: "*tasks.BadErrorValue", Message: a.Err.Error(), At: a.End}
			if a.Status != tasks.StatusFailed || a.Record == nil {
				t.Fatalf("outcome %s with record %v, want FAILED with a record", a.Status, a.Record)
			}
			if d := cmp.Diff(want, *a.Record); d != "" {
				t.Errorf("record (-want +got):\n%s", d)
			}
			if !strings.Contains(a.Record.Message, "unusable error value of type "+c.typ) {
				t.Errorf("message %q does not name the type %s", a.Record.Message, c.typ)
			}
		})
	}

	t.Run("runtime.Goexit", func(t *testing.T) {
		t.Parallel()
		a, returned := runAttemptInGoroutine(t, rec(execTask.Name(), `{"mode":"goexit"}`, 0), none)
		if returned {
			t.Error("RunAttempt returned after the task called runtime.Goexit")
		}
		if !errors.Is(a.Err, tasks.ErrGoexit) || a.Status != tasks.StatusFailed || a.Record == nil ||
			!strings.Contains(a.Record.Message, "runtime.Goexit") {
			t.Errorf("outcome %s %v %+v, want FAILED with ErrGoexit recorded", a.Status, a.Err, a.Record)
		}
	})

	t.Run("runtime.Goexit with attempts left", func(t *testing.T) {
		t.Parallel()
		cfg := tasks.AttemptConfig{Retries: true, Backend: &tasks.BackendConfig{MaxAttempts: 3}}
		r := rec(execTask.Name(), `{"mode":"goexit"}`, 0)
		if a, _ := runAttemptInGoroutine(t, r, cfg); a.Status != tasks.StatusReady || !errors.Is(a.Err, tasks.ErrGoexit) {
			t.Errorf("outcome %s %v, want READY for a retry with ErrGoexit", a.Status, a.Err)
		}
	})
}

// TestRunAttemptClassification: a failure is retried while the policy
// allows it, unless no retry can fix it.
func TestRunAttemptClassification(t *testing.T) {
	t.Parallel()
	backend := &tasks.BackendConfig{MaxAttempts: 3, Backoff: tasks.ConstantBackoff(time.Hour)}
	retries := tasks.AttemptConfig{Backend: backend, Retries: true}
	for _, c := range []struct {
		name     string
		rec      *tasks.RawResult
		cfg      tasks.AttemptConfig
		want     tasks.Status
		wantWait time.Duration // of a retry
	}{
		{"success", rec(execTask.Name(), `{"mode":"ok"}`, 0), retries, tasks.StatusSuccessful, 0},
		{"failure with attempts left", rec(execTask.Name(), `{"mode":"fail"}`, 0), retries, tasks.StatusReady, time.Hour},
		{"panic with attempts left", rec(execTask.Name(), `{"mode":"panic"}`, 0), retries, tasks.StatusReady, time.Hour},
		{"unencodable return value with attempts left", rec(execTask.Name(), `{"mode":"nan"}`, 0), retries, tasks.StatusReady, time.Hour},
		{"the definition's backoff", rec(withPolicy.Name(), `{}`, 0), retries, tasks.StatusReady, 9 * time.Second},
		{"last attempt", func() *tasks.RawResult {
			r := rec(execTask.Name(), `{"mode":"fail"}`, 0)
			r.Attempts = 3
			return r
		}(), retries, tasks.StatusFailed, 0},
		{"the stored max attempts", func() *tasks.RawResult {
			r := rec(execTask.Name(), `{"mode":"fail"}`, 0)
			r.Attempts, r.MaxAttempts = 3, 4
			return r
		}(), retries, tasks.StatusReady, time.Hour},
		{"backend without retries", rec(execTask.Name(), `{"mode":"fail"}`, 0), tasks.AttemptConfig{Backend: backend}, tasks.StatusFailed, 0},
		{"unknown task is retried", rec("tasks_test.no-such-task", `{}`, 0), retries, tasks.StatusReady, time.Hour},
		{"undecodable arguments are permanent", rec(execTask.Name(), `{"mode":1}`, 0), retries, tasks.StatusFailed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			a := runAttempt(t, t.Context(), c.rec, c.cfg)
			if a.Status != c.want {
				t.Fatalf("Status = %s (error %v), want %s", a.Status, a.Err, c.want)
			}
			if a.Number != c.rec.Attempts {
				t.Errorf("Number = %d, want %d", a.Number, c.rec.Attempts)
			}
			if c.want == tasks.StatusSuccessful {
				return
			}
			if a.Err == nil || a.Record == nil {
				t.Fatalf("failure with error %v recorded as %v", a.Err, a.Record)
			}
			if d := cmp.Diff(tasks.NewTaskError(a.Number, a.End, a.Err), *a.Record); d != "" {
				t.Errorf("record (-want +got):\n%s", d)
			}
			wantRunAfter := time.Time{}
			if c.want == tasks.StatusReady {
				wantRunAfter = a.End.Add(c.wantWait).Truncate(time.Microsecond)
			}
			if !a.RunAfter.Equal(wantRunAfter) {
				t.Errorf("RunAfter = %v, want %v (End %v + %v)", a.RunAfter, wantRunAfter, a.End, c.wantWait)
			}
		})
	}
}

// TestRunAttemptClock: the end of an attempt, the time of its error and the
// run-after of its retry come from the backend's clock.
func TestRunAttemptClock(t *testing.T) {
	t.Parallel()
	at := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
	cfg := tasks.AttemptConfig{Retries: true, Backend: &tasks.BackendConfig{Backoff: tasks.ConstantBackoff(time.Minute)},
		Now: func() time.Time { return at }}
	a := runAttempt(t, t.Context(), rec(execTask.Name(), `{"mode":"fail"}`, 0), cfg)
	got := []time.Time{a.End, a.Record.At, a.RunAfter}
	if d := cmp.Diff([]time.Time{at, at, at.Add(time.Minute)}, got); d != "" {
		t.Errorf("End, Record.At, RunAfter (-want +got):\n%s", d)
	}
}

// comparablePolicy is a Policy with its backoff sampled, for cmp.
type comparablePolicy struct {
	MaxAttempts int
	Timeout     time.Duration
	Backoff2    time.Duration // Backoff(2)
	Retries     bool
}

// sample reads p's backoff after attempt 2; the jittered DefaultBackoff
// (21 s ±10 %) reads as its exact value.
func sample(p tasks.Policy) comparablePolicy {
	b := p.Backoff(2)
	if b >= 18900*time.Millisecond && b <= 23100*time.Millisecond {
		b = tasks.ExactBackoff(2)
	}
	return comparablePolicy{MaxAttempts: p.MaxAttempts, Timeout: p.Timeout, Backoff2: b, Retries: p.Retries}
}

// TestResolvePolicy: the stored result first, then the task's definition,
// then the backend's defaults, then the package's; MaxRunTime caps the
// timeout.
func TestResolvePolicy(t *testing.T) {
	t.Parallel()
	backend := &tasks.BackendConfig{MaxAttempts: 8, Backoff: tasks.ConstantBackoff(11 * time.Second)}
	stored := func(name string, maxAttempts int, timeout time.Duration) *tasks.RawResult {
		return &tasks.RawResult{TaskName: name, MaxAttempts: maxAttempts, Timeout: timeout}
	}
	for _, c := range []struct {
		name string
		cfg  tasks.AttemptConfig
		rec  *tasks.RawResult
		want comparablePolicy
	}{
		{"the stored result", tasks.AttemptConfig{Backend: backend, Retries: true}, stored(withPolicy.Name(), 4, 2*time.Second),
			comparablePolicy{MaxAttempts: 4, Timeout: 2 * time.Second, Backoff2: 9 * time.Second, Retries: true}},
		{"the definition", tasks.AttemptConfig{Backend: backend}, stored(withPolicy.Name(), 0, 0),
			comparablePolicy{MaxAttempts: 6, Timeout: 3 * time.Second, Backoff2: 9 * time.Second}},
		{"the backend", tasks.AttemptConfig{Backend: backend}, stored(withoutPolicy.Name(), 0, 0),
			comparablePolicy{MaxAttempts: 8, Backoff2: 11 * time.Second}},
		{"a task unknown here", tasks.AttemptConfig{Backend: backend}, stored("tasks_test.no-such-task", 0, 0),
			comparablePolicy{MaxAttempts: 8, Backoff2: 11 * time.Second}},
		{"the zero backend config", tasks.AttemptConfig{Backend: &tasks.BackendConfig{}}, stored(withoutPolicy.Name(), 0, 0),
			comparablePolicy{MaxAttempts: tasks.DefaultMaxAttempts, Backoff2: tasks.ExactBackoff(2)}},
		{"no backend config", tasks.AttemptConfig{}, stored(withoutPolicy.Name(), 0, 0),
			comparablePolicy{MaxAttempts: tasks.DefaultMaxAttempts, Backoff2: tasks.ExactBackoff(2)}},
		{"MaxRunTime without a timeout", tasks.AttemptConfig{MaxRunTime: time.Minute}, stored(withoutPolicy.Name(), 0, 0),
			comparablePolicy{MaxAttempts: tasks.DefaultMaxAttempts, Timeout: time.Minute, Backoff2: tasks.ExactBackoff(2)}},
		{"MaxRunTime above the timeout", tasks.AttemptConfig{MaxRunTime: time.Minute}, stored(withPolicy.Name(), 0, 0),
			comparablePolicy{MaxAttempts: 6, Timeout: 3 * time.Second, Backoff2: 9 * time.Second}},
		{"MaxRunTime below the timeout", tasks.AttemptConfig{MaxRunTime: time.Second}, stored(withPolicy.Name(), 0, time.Hour),
			comparablePolicy{MaxAttempts: 6, Timeout: time.Second, Backoff2: 9 * time.Second}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if d := cmp.Diff(c.want, sample(c.cfg.ResolvePolicy(c.rec))); d != "" {
				t.Errorf("ResolvePolicy (-want +got):\n%s", d)
			}
		})
	}
}

// TestAttemptApply: an outcome is recorded on the stored result.
func TestAttemptApply(t *testing.T) {
	t.Parallel()
	end := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	runAfter := end.Add(time.Minute)
	old := tasks.TaskError{Attempt: 1, Type: "x", Message: "first"}
	te := tasks.TaskError{Attempt: 2, Type: "*errors.errorString", Message: "second", At: end}
	running := func() *tasks.RawResult {
		return &tasks.RawResult{ID: "1", Status: tasks.StatusRunning, Attempts: 2, RunAfter: end.Add(-time.Hour),
			Errors: []tasks.TaskError{old}}
	}
	for _, c := range []struct {
		name string
		a    tasks.Attempt
		want *tasks.RawResult
	}{
		{"success", tasks.Attempt{Number: 2, Status: tasks.StatusSuccessful, Value: json.RawMessage(`7`), End: end},
			&tasks.RawResult{ID: "1", Status: tasks.StatusSuccessful, Attempts: 2, RunAfter: end.Add(-time.Hour),
				Errors: []tasks.TaskError{old}, ReturnValue: json.RawMessage(`7`), FinishedAt: &end}},
		{"retry", tasks.Attempt{Number: 2, Status: tasks.StatusReady, Err: errors.New("second"), Record: &te, RunAfter: runAfter, End: end},
			&tasks.RawResult{ID: "1", Status: tasks.StatusReady, Attempts: 2, RunAfter: runAfter,
				Errors: []tasks.TaskError{old, te}}},
		{"final failure", tasks.Attempt{Number: 2, Status: tasks.StatusFailed, Err: errors.New("second"), Record: &te, End: end},
			&tasks.RawResult{ID: "1", Status: tasks.StatusFailed, Attempts: 2, RunAfter: end.Add(-time.Hour),
				Errors: []tasks.TaskError{old, te}, FinishedAt: &end}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			r := running()
			c.a.Apply(r)
			if d := cmp.Diff(c.want, r); d != "" {
				t.Errorf("after Apply (-want +got):\n%s", d)
			}
		})
	}
}
