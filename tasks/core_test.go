package tasks_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestNewID(t *testing.T) {
	before := time.Now().UnixMilli()
	prev := ""
	// 10,000 ids: many in one millisecond, more than the 4,096 a
	// millisecond's counter holds.
	for range 10000 {
		id := tasks.NewID()
		if !uuidV7.MatchString(id) {
			t.Fatalf("NewID() = %q, want a UUIDv7 string", id)
		}
		// Strictly increasing: the admin API lists in id order as enqueue
		// order.
		if id <= prev {
			t.Fatalf("NewID() = %q after %q, want increasing ids", id, prev)
		}
		prev = id
	}
	after := time.Now().UnixMilli()
	id := tasks.NewID()
	ms, err := strconv.ParseInt(strings.ReplaceAll(id[:13], "-", ""), 16, 64)
	if err != nil || ms < before || ms > after+1000 {
		t.Errorf("NewID() = %q has timestamp %d ms, want between %d and %d", id, ms, before, after)
	}
	if len(id) >= 64 {
		t.Errorf("len(NewID()) = %d, want < 64", len(id))
	}
}

func TestDefaultBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{0: 5 * time.Second, 1: 6 * time.Second, 2: 21 * time.Second, 3: 86 * time.Second, 4: 261 * time.Second, 10: 10005 * time.Second} {
		if got := tasks.ExactBackoff(attempt); got != want {
			t.Errorf("ExactBackoff(%d) = %v, want %v", attempt, got, want)
		}
		if got := tasks.DefaultBackoff(attempt); !within(got, want, 0.1) {
			t.Errorf("DefaultBackoff(%d) = %v, want %v ±10 %%", attempt, got, want)
		}
	}
	if got := tasks.ConstantBackoff(3 * time.Second)(7); got != 3*time.Second {
		t.Errorf("ConstantBackoff(3s)(7) = %v", got)
	}
	if tasks.DefaultMaxAttempts != 25 {
		t.Errorf("DefaultMaxAttempts = %d, want 25", tasks.DefaultMaxAttempts)
	}
}

func TestBackendConfig(t *testing.T) {
	var c tasks.BackendConfig
	if c.Name() != "default" || !c.EnqueueOnCommit() || c.DefaultMaxAttempts() != 25 || !within(c.DefaultBackoff()(2), 21*time.Second, 0.1) || len(c.Queues()) != 0 {
		t.Errorf("zero BackendConfig: name %q on-commit %v max %d backoff(2) %v queues %v",
			c.Name(), c.EnqueueOnCommit(), c.DefaultMaxAttempts(), c.DefaultBackoff()(2), c.Queues())
	}
	if err := c.CheckConfig(); err != nil {
		t.Errorf("CheckConfig of the zero config: %v", err)
	}
	c.Apply(tasks.WithName("x"), tasks.WithAllowedQueues("a", "b"), tasks.WithDefaultEnqueueOnCommit(false),
		tasks.WithDefaultMaxAttempts(3), tasks.WithDefaultBackoff(tasks.ConstantBackoff(time.Second)))
	if c.Name() != "x" || c.EnqueueOnCommit() || c.DefaultMaxAttempts() != 3 || c.DefaultBackoff()(2) != time.Second {
		t.Errorf("configured: name %q on-commit %v max %d backoff(2) %v", c.Name(), c.EnqueueOnCommit(), c.DefaultMaxAttempts(), c.DefaultBackoff()(2))
	}
	qs := c.Queues()
	qs[0] = "changed"
	if d := cmp.Diff([]string{"a", "b"}, c.Queues()); d != "" {
		t.Errorf("Queues() is not a copy (-want +got):\n%s", d)
	}
	c.Apply(tasks.WithAllowedQueues("ok", "", "a,b", "*", " x"), tasks.WithDefaultMaxAttempts(-1))
	err := c.CheckConfig()
	if !errors.Is(err, tasks.ErrInvalidBackend) {
		t.Fatalf("CheckConfig = %v, want ErrInvalidBackend", err)
	}
	for _, want := range []string{`""`, `"a,b"`, `"*"`, `" x"`, "max attempts -1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckConfig error %q does not mention %s", err, want)
		}
	}
}

func TestCapabilities(t *testing.T) {
	all := tasks.CanDefer | tasks.CanPriority | tasks.CanGetResult | tasks.CanRetry | tasks.CanTransact |
		tasks.CanCancel | tasks.CanBulkEnqueue | tasks.CanRepeat | tasks.CanTimeout
	for _, c := range []struct {
		caps tasks.Capabilities
		want string
	}{
		{0, "none"},
		{tasks.CanDefer, "Defer"},
		{tasks.CanPriority | tasks.CanDefer, "Defer|Priority"},
		{tasks.CanTimeout | tasks.CanCancel, "Cancel|Timeout"},
		{all, "Defer|Priority|GetResult|Retry|Transact|Cancel|BulkEnqueue|Repeat|Timeout"},
	} {
		if got := c.caps.String(); got != c.want {
			t.Errorf("%#x.String() = %q, want %q", uint32(c.caps), got, c.want)
		}
		if got := fmt.Sprint(c.caps); got != c.want {
			t.Errorf("fmt.Sprint = %q, want %q", got, c.want)
		}
	}
	c := tasks.CanDefer | tasks.CanCancel
	if !c.Has(tasks.CanDefer) || !c.Has(tasks.CanDefer|tasks.CanCancel) || c.Has(tasks.CanDefer|tasks.CanRetry) || c.Has(tasks.CanRetry) {
		t.Error("Has is wrong")
	}
}

func TestStatus(t *testing.T) {
	for _, c := range []struct {
		s               tasks.Status
		finished, valid bool
	}{
		{tasks.StatusReady, false, true},
		{tasks.StatusRunning, false, true},
		{tasks.StatusSuccessful, true, true},
		{tasks.StatusFailed, true, true},
		{tasks.StatusCancelled, true, true},
		{"ready", false, false},
		{"", false, false},
	} {
		if c.s.Finished() != c.finished || c.s.Valid() != c.valid {
			t.Errorf("%q: Finished() = %v, Valid() = %v; want %v, %v", c.s, c.s.Finished(), c.s.Valid(), c.finished, c.valid)
		}
	}
}

type valueError struct{ code int }

func (e valueError) Error() string { return "code " + strconv.Itoa(e.code) }

func TestNewTaskError(t *testing.T) {
	pathErr := &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist}
	for _, c := range []struct {
		what string
		err  error
		want string
	}{
		{"errors.New", errors.New("plain"), "*errors.errorString"},
		{"fmt.Errorf without %w", fmt.Errorf("plain %d", 1), "*errors.errorString"},
		{"fmt.Errorf %w", fmt.Errorf("read config: %w", pathErr), "*fs.PathError"},
		{"two fmt.Errorf %w", fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", pathErr)), "*fs.PathError"},
		{"fmt.Errorf with two %w", fmt.Errorf("%w and %w", valueError{1}, pathErr), "tasks_test.valueError"},
		{"errors.Join", errors.Join(pathErr, errors.New("second")), "*fs.PathError"},
		{"fmt.Errorf %w of errors.Join", fmt.Errorf("x: %w", errors.Join(valueError{2}, pathErr)), "tasks_test.valueError"},
		{"value type", valueError{3}, "tasks_test.valueError"},
		{"context deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), "context.deadlineExceededError"},
		{"ArgsError", &tasks.ArgsError{Task: "t", Err: errors.New("bad")}, "*tasks.ArgsError"},
		{"wrapped TimeoutError", fmt.Errorf("x: %w", &tasks.TimeoutError{Timeout: time.Second, Err: context.DeadlineExceeded}), "*tasks.TimeoutError"},
	} {
		te := tasks.NewTaskError(2, time.Now(), c.err)
		if te.Type != c.want {
			t.Errorf("%s: Type = %q, want %q", c.what, te.Type, c.want)
		}
		if te.Message != c.err.Error() || te.Stack != "" || te.Attempt != 2 {
			t.Errorf("%s: %+v", c.what, te)
		}
	}

	at := time.Date(2030, 1, 1, 12, 0, 0, 0, time.FixedZone("X", 3600))
	p := &tasks.PanicError{Value: "boom", Stack: "goroutine 1 [running]:\nmain.f()"}
	for _, err := range []error{p, fmt.Errorf("attempt: %w", p)} {
		te := tasks.NewTaskError(1, at, err)
		if te.Type != "panic" || te.Stack != p.Stack || te.Message != "boom" {
			t.Errorf("NewTaskError(%v) = %+v, want type panic with the stack", err, te)
		}
		if te.At.Location() != time.UTC || !te.At.Equal(at) {
			t.Errorf("At = %v, want %v in UTC", te.At, at)
		}
	}

	if got := (&tasks.TaskError{Type: "*fs.PathError", Message: "open /x"}).Error(); got != "*fs.PathError: open /x" {
		t.Errorf("TaskError.Error() = %q", got)
	}
	if got := (&tasks.TaskError{Message: "m"}).Error(); got != "m" {
		t.Errorf("TaskError.Error() without type = %q", got)
	}
}

func TestDecodeArgs(t *testing.T) {
	a, err := addTask.DecodeArgs(json.RawMessage(`{"a":1,"b":2}`))
	if err != nil || a != (addArgs{1, 2}) {
		t.Errorf("DecodeArgs = %+v, %v", a, err)
	}
	_, err = addTask.DecodeArgs(json.RawMessage(`{"a":"x"}`))
	var ae *tasks.ArgsError
	if !errors.As(err, &ae) || ae.Task != addTask.Name() || !strings.Contains(err.Error(), addTask.Name()) {
		t.Errorf("DecodeArgs of bad JSON: %v, want *tasks.ArgsError", err)
	}
}

func TestRawResultClone(t *testing.T) {
	now := time.Now().UTC()
	r := &tasks.RawResult{
		ID: "1", Args: json.RawMessage(`{"a":1}`), ReturnValue: json.RawMessage(`2`),
		WorkerIDs: []string{"w"}, Errors: []tasks.TaskError{{Message: "m"}},
		StartedAt: &now, FinishedAt: &now, LastAttemptedAt: &now, RepeatUntil: &now,
	}
	c := r.Clone()
	if d := cmp.Diff(r, c); d != "" {
		t.Fatalf("Clone differs (-orig +clone):\n%s", d)
	}
	c.Args[0], c.ReturnValue[0], c.WorkerIDs[0], c.Errors[0].Message = 'X', 'X', "X", "X"
	*c.StartedAt, *c.FinishedAt, *c.LastAttemptedAt, *c.RepeatUntil = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if string(r.Args) != `{"a":1}` || string(r.ReturnValue) != "2" || r.WorkerIDs[0] != "w" || r.Errors[0].Message != "m" ||
		!r.StartedAt.Equal(now) || !r.FinishedAt.Equal(now) || !r.LastAttemptedAt.Equal(now) || !r.RepeatUntil.Equal(now) {
		t.Errorf("mutating the clone changed the original: %+v", r)
	}
	if (*tasks.RawResult)(nil).Clone() != nil {
		t.Error("nil.Clone() != nil")
	}
	if r.LastError().Message != "m" || (&tasks.RawResult{}).LastError() != nil {
		t.Error("LastError is wrong")
	}
}

// TestResultLogValue: a result logs as a group of its task, id, status and
// attempts, without its arguments.
func TestResultLogValue(t *testing.T) {
	t.Parallel()
	raw := &tasks.RawResult{ID: "id-1", TaskName: "t.name", Status: tasks.StatusFailed, Attempts: 2, Args: json.RawMessage(`{"secret":1}`)}
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))
	log.Info("m", "raw", raw, "typed", &tasks.Result[int]{RawResult: *raw}, "nil", (*tasks.RawResult)(nil))
	want := "level=INFO msg=m raw.task=t.name raw.id=id-1 raw.status=FAILED raw.attempts=2 " +
		"typed.task=t.name typed.id=id-1 typed.status=FAILED typed.attempts=2 nil=<nil>\n"
	if d := cmp.Diff(want, buf.String()); d != "" {
		t.Errorf("log line (-want +got):\n%s", d)
	}
}

func TestResultValue(t *testing.T) {
	b, name := newDummy(t)
	ctx := t.Context()
	task := addTask.Using(tasks.WithBackend(name))
	ready, _ := task.Enqueue(ctx, addArgs{1, 2})
	cancelled, _ := task.Enqueue(ctx, addArgs{3, 4})
	failed, _ := failTask.Using(tasks.WithBackend(name)).Enqueue(ctx, addArgs{})
	if err := cancelled.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := ready.Value(); !errors.Is(err, tasks.ErrNotFinished) || !strings.Contains(err.Error(), "READY") {
		t.Errorf("Value() of READY: %v, want ErrNotFinished", err)
	}
	if _, err := cancelled.Value(); !errors.Is(err, tasks.ErrTaskCancelled) {
		t.Errorf("Value() of CANCELLED: %v, want ErrTaskCancelled", err)
	}
	if _, err := b.RunReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := failed.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := failed.Value(); !errors.Is(err, tasks.ErrTaskFailed) || !strings.Contains(err.Error(), "always fails") {
		t.Errorf("Value() of FAILED: %v, want ErrTaskFailed with the message", err)
	}
	raw := ready.Raw()
	raw.Args[0] = 'X'
	if ready.Args[0] != '{' {
		t.Error("Raw() is not a copy")
	}
	b.Clear()
	if err := ready.Refresh(ctx); !errors.Is(err, tasks.ErrResultNotFound) {
		t.Errorf("Refresh of a forgotten result: %v, want ErrResultNotFound", err)
	}
}

// waiting is a backend with notifications (tasks.Waiter).
type waiting struct {
	*recording
	calls int
}

func (w *waiting) WaitResult(ctx context.Context, id string) (*tasks.RawResult, error) {
	w.calls++
	r, err := w.GetResult(ctx, id)
	if err != nil {
		return nil, err
	}
	r.Status = tasks.StatusSuccessful
	r.ReturnValue = json.RawMessage(`99`)
	return r, nil
}

func TestWait(t *testing.T) {
	name := uniqueName(t)
	w := &waiting{recording: &recording{Backend: newDummyUnregistered(name)}}
	t.Cleanup(tasks.RegisterBackend(w))
	res, err := addTask.Using(tasks.WithBackend(name)).Enqueue(t.Context(), addArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Wait(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v, err := res.Value(); w.calls != 1 || err != nil || v != 99 {
		t.Errorf("Wait did not use the backend's WaitResult: calls %d, value %d, %v", w.calls, v, err)
	}
	if err := res.Wait(t.Context()); err != nil || w.calls != 1 {
		t.Errorf("Wait on a finished result: %v, %d calls", err, w.calls)
	}

	// Polling: a READY result and a context that ends.
	b, name2 := newDummy(t)
	res, err = addTask.Using(tasks.WithBackend(name2)).Enqueue(t.Context(), addArgs{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Millisecond)
	defer cancel()
	if _, err := tasks.PollResult(ctx, b, res.ID, time.Millisecond, 4*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("PollResult: %v, want DeadlineExceeded", err)
	}
	if _, err := tasks.PollResult(t.Context(), b, tasks.NewID(), time.Millisecond, time.Millisecond); !errors.Is(err, tasks.ErrResultNotFound) {
		t.Errorf("PollResult of an unknown id: %v, want ErrResultNotFound", err)
	}
}
