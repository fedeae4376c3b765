package tasks_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

type addArgs struct {
	A int `json:"a"`
	B int `json:"b"`
}

func add(_ context.Context, a addArgs) (int, error) { return a.A + a.B, nil }

var addTask = tasks.Define("tasks_test.add", add)

var failTask = tasks.Define("tasks_test.fail", func(context.Context, addArgs) (int, error) {
	return 0, errors.New("always fails")
})

func TestDefinePanics(t *testing.T) {
	fn := add
	taken := uniqueName(t)
	tasks.Define(taken, fn)
	for _, c := range []struct {
		what, want string
		define     func(name string)
	}{
		{"empty name", "1-255 bytes", func(string) { tasks.Define("", fn) }},
		{"name of 256 bytes", "1-255 bytes", func(string) { tasks.Define(strings.Repeat("x", 256), fn) }},
		{"nil function", "nil function", func(name string) { tasks.Define[addArgs, int](name, nil) }},
		{"duplicate name", "already defined", func(string) { tasks.Define(taken, fn) }},
		{"priority 101", "priority", func(name string) { tasks.Define(name, fn, tasks.WithPriority(101)) }},
		{"priority -101", "priority", func(name string) { tasks.Define(name, fn, tasks.WithPriority(-101)) }},
		{"empty queue", "queue", func(name string) { tasks.Define(name, fn, tasks.WithQueue("")) }},
		{"negative max attempts", "max attempts", func(name string) { tasks.Define(name, fn, tasks.WithMaxAttempts(-1)) }},
		{"negative timeout", "timeout", func(name string) { tasks.Define(name, fn, tasks.WithTimeout(-1)) }},
		{"repeat under a second", "repeat", func(name string) { tasks.Define(name, fn, tasks.WithRepeat(time.Millisecond)) }},
		{"long verbose name", "verbose name", func(name string) { tasks.Define(name, fn, tasks.WithVerboseName(strings.Repeat("v", 256))) }},
		{"long creator", "creator", func(name string) { tasks.Define(name, fn, tasks.WithCreator(strings.Repeat("c", 256))) }},
	} {
		t.Run(c.what, func(t *testing.T) {
			name := uniqueName(t)
			mustPanic(t, c.want, func() { c.define(name) })
			if c.what != "duplicate name" {
				if _, ok := tasks.Lookup(name); ok {
					t.Errorf("a Define that panicked registered %q", name)
				}
			}
		})
	}
}

func TestDefineRegisters(t *testing.T) {
	name := uniqueName(t)
	task := tasks.Define(name, add, tasks.WithMaxAttempts(3), tasks.WithTimeout(time.Minute),
		tasks.WithBackoff(tasks.ConstantBackoff(time.Second)), tasks.WithPriority(7), tasks.WithQueue("q"))
	if task.Name() != name {
		t.Errorf("Name() = %q, want %q", task.Name(), name)
	}
	r, ok := tasks.Lookup(name)
	if !ok {
		t.Fatalf("Lookup(%q) found nothing", name)
	}
	if r.TaskName() != name {
		t.Errorf("TaskName() = %q", r.TaskName())
	}
	d := r.Defaults()
	if d.MaxAttempts != 3 || d.Timeout != time.Minute || d.Backoff == nil || d.Backoff(5) != time.Second {
		t.Errorf("Defaults() = %+v, want max attempts 3, timeout 1m, constant 1s backoff", d)
	}
	out, err := r.RunJSON(t.Context(), json.RawMessage(`{"a":2,"b":3}`))
	if err != nil || string(out) != "5" {
		t.Errorf("RunJSON = %s, %v; want 5", out, err)
	}
	names := tasks.TaskNames()
	if !slices.IsSorted(names) || !slices.Contains(names, name) || !slices.Contains(names, addTask.Name()) {
		t.Errorf("TaskNames() = %v, want a sorted list containing %q", names, name)
	}
	if _, ok := tasks.Lookup(uniqueName(t)); ok {
		t.Error("Lookup of an undefined name found something")
	}
}

func TestTaskDefaults(t *testing.T) {
	if addTask.Priority() != tasks.DefaultPriority || addTask.Queue() != tasks.DefaultQueue || addTask.BackendName() != tasks.DefaultBackendName {
		t.Errorf("defaults: priority %d queue %q backend %q", addTask.Priority(), addTask.Queue(), addTask.BackendName())
	}
}

func TestUsingLeavesOriginalUnchanged(t *testing.T) {
	base := tasks.Define(uniqueName(t), add, tasks.WithPriority(1), tasks.WithQueue("base"))
	c := base.Using(tasks.WithPriority(9), tasks.WithQueue("other"), tasks.WithBackend("elsewhere"), tasks.WithEnqueueOnCommit(false))
	c2 := c.Using(tasks.WithPriority(-3))
	type opts struct {
		Priority       int
		Queue, Backend string
	}
	for _, x := range []struct {
		what string
		task *tasks.Task[addArgs, int]
		want opts
	}{
		{"original", base, opts{1, "base", "default"}},
		{"copy", c, opts{9, "other", "elsewhere"}},
		{"copy of copy", c2, opts{-3, "other", "elsewhere"}},
	} {
		if d := cmp.Diff(x.want, opts{x.task.Priority(), x.task.Queue(), x.task.BackendName()}); d != "" {
			t.Errorf("%s (-want +got):\n%s", x.what, d)
		}
	}
	if c.Name() != base.Name() {
		t.Errorf("the copy's name %q differs from %q", c.Name(), base.Name())
	}
	// The original's enqueue-on-commit default is untouched: in a
	// transaction, it still defers.
	_, name := newDummy(t)
	h := tasks.NewTxHooks(nil)
	b, _ := tasks.GetBackend(name)
	res, err := base.Using(tasks.WithBackend(name)).Enqueue(tasks.ContextWithTx(t.Context(), h), addArgs{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetResult(t.Context(), res.ID); !errors.Is(err, tasks.ErrResultNotFound) {
		t.Errorf("the original task did not defer to commit: %v", err)
	}
	h.Rollback()
}

func TestUsingInvalid(t *testing.T) {
	_, name := newDummy(t)
	bound := addTask.Using(tasks.WithBackend(name))
	for _, c := range []struct {
		what string
		task *tasks.Task[addArgs, int]
	}{
		{"WithBackoff per call", bound.Using(tasks.WithBackoff(tasks.DefaultBackoff))},
		{"priority 101", bound.Using(tasks.WithPriority(101))},
		{"queue with a star", bound.Using(tasks.WithQueue("a*"))},
		{"queue with spaces around", bound.Using(tasks.WithQueue(" q"))},
		{"queue of 65 bytes", bound.Using(tasks.WithQueue(strings.Repeat("q", 65)))},
		{"negative delay", bound.Using(tasks.WithDelay(-time.Second))},
		{"negative repeat", bound.Using(tasks.WithRepeat(-time.Hour))},
		{"an invalid Using stays invalid", bound.Using(tasks.WithPriority(101)).Using(tasks.WithPriority(0))},
	} {
		_, err := c.task.Enqueue(t.Context(), addArgs{})
		if !errors.Is(err, tasks.ErrInvalidTask) {
			t.Errorf("%s: Enqueue err = %v, want ErrInvalidTask", c.what, err)
		}
		if _, err := c.task.EnqueueMany(t.Context(), []addArgs{{}}); !errors.Is(err, tasks.ErrInvalidTask) {
			t.Errorf("%s: EnqueueMany err = %v, want ErrInvalidTask", c.what, err)
		}
		if _, err := c.task.GetResult(t.Context(), tasks.NewID()); !errors.Is(err, tasks.ErrInvalidTask) {
			t.Errorf("%s: GetResult err = %v, want ErrInvalidTask", c.what, err)
		}
	}
	// Boundaries are valid.
	for _, p := range []int{tasks.MinPriority, tasks.MaxPriority} {
		if _, err := bound.Using(tasks.WithPriority(p)).Enqueue(t.Context(), addArgs{}); err != nil {
			t.Errorf("priority %d: %v", p, err)
		}
	}
	if _, err := bound.Using(tasks.WithQueue(strings.Repeat("q", 64))).Enqueue(t.Context(), addArgs{}); err != nil {
		t.Errorf("queue of 64 bytes: %v", err)
	}
}

func TestCallRunsSynchronously(t *testing.T) {
	type key struct{}
	var ran bool
	var sawCtx any
	task := tasks.Define(uniqueName(t), func(ctx context.Context, a addArgs) (chan int, error) {
		ran, sawCtx = true, ctx.Value(key{})
		return make(chan int), errors.New("returned as is")
	})
	before := countSignals(t)
	ch, err := task.Call(context.WithValue(t.Context(), key{}, "v"), addArgs{1, 2})
	if !ran || sawCtx != "v" {
		t.Errorf("the function ran=%v with ctx value %v after Call returned", ran, sawCtx)
	}
	if err == nil || err.Error() != "returned as is" || ch == nil {
		t.Errorf("Call = %v, %v; want the function's own results (no JSON involved)", ch, err)
	}
	if n := before(); n != 0 {
		t.Errorf("Call sent %d signals", n)
	}
}

// countSignals counts the signals sent from now on; the returned function
// reads the count.
func countSignals(t *testing.T) func() int64 {
	var n atomic.Int64
	inc := func(context.Context, string, *tasks.RawResult) { n.Add(1) }
	for _, s := range []*signals.Signal{signals.TaskEnqueued, signals.TaskStarted, signals.TaskFinished} {
		t.Cleanup(s.Connect(inc))
	}
	return n.Load
}

func TestUnconfiguredDefaultRunsImmediately(t *testing.T) {
	if slices.Contains(tasks.BackendNames(), tasks.DefaultBackendName) {
		t.Skip(`a backend is configured as "default"`)
	}
	b1, err := tasks.GetBackend("")
	if err != nil {
		t.Fatal(err)
	}
	b2, err := tasks.GetBackend(tasks.DefaultBackendName)
	if err != nil {
		t.Fatal(err)
	}
	if b1 != b2 {
		t.Fatalf(`GetBackend("") = %T, GetBackend("default") = %T; want the same backend`, b1, b2)
	}
	if b1.Name() != tasks.DefaultBackendName {
		t.Errorf("fallback name %q", b1.Name())
	}
	// The capabilities of backends/immediate.
	if got, want := b1.Capabilities(), tasks.CanGetResult|tasks.CanPriority|tasks.CanTimeout|tasks.CanUnique; got != want {
		t.Errorf("fallback capabilities %v, want %v", got, want)
	}
	var senders, events []string
	t.Cleanup(signals.TaskFinished.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if r.TaskName == addTask.Name() {
			senders = append(senders, sender)
		}
	}))
	for _, s := range []*signals.Signal{signals.TaskEnqueued, signals.TaskStarted, signals.TaskFinished} {
		t.Cleanup(s.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
			if r.TaskName == addTask.Name() && sender == tasks.DefaultBackendName {
				events = append(events, s.Name()+":"+string(r.Status))
			}
		}))
	}
	res, err := addTask.Enqueue(t.Context(), addArgs{2, 40})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != tasks.StatusSuccessful || res.Backend != tasks.DefaultBackendName {
		t.Fatalf("result: %s on %q, want SUCCESSFUL on default", res.Status, res.Backend)
	}
	if v, err := res.Value(); err != nil || v != 42 {
		t.Errorf("Value() = %d, %v", v, err)
	}
	if d := cmp.Diff([]string{"default"}, senders); d != "" {
		t.Errorf("TaskFinished senders (-want +got):\n%s", d)
	}
	wantEvents := []string{"task_enqueued:READY", "task_started:RUNNING", "task_finished:SUCCESSFUL"}
	if d := cmp.Diff(wantEvents, events); d != "" {
		t.Errorf("life-cycle signals of the fallback (-want +got):\n%s", d)
	}
	again, err := addTask.GetResult(t.Context(), res.ID)
	if err != nil || again.ID != res.ID {
		t.Errorf("GetResult on the fallback: %v", err)
	}

	// Configuring "default" replaces the fallback; restoring brings it back.
	d := dummy.New()
	restore := tasks.RegisterBackend(d)
	res, err = addTask.Enqueue(t.Context(), addArgs{1, 1})
	if err != nil || res.Status != tasks.StatusReady || len(d.Results()) != 1 {
		t.Errorf("with a dummy default: %v, %v, %d stored", res, err, len(d.Results()))
	}
	restore()
	if b, _ := tasks.GetBackend(""); b != b1 {
		t.Errorf("after restore, GetBackend = %T, want the fallback", b)
	}
}

func TestBackendRegistry(t *testing.T) {
	name := uniqueName(t)
	a, b := dummy.New(tasks.WithName(name)), dummy.New(tasks.WithName(name))
	if _, err := tasks.GetBackend(name); !errors.Is(err, tasks.ErrInvalidBackend) || !strings.Contains(err.Error(), name) {
		t.Errorf("GetBackend of an unconfigured name: %v, want ErrInvalidBackend naming it", err)
	}
	restoreA := tasks.RegisterBackend(a)
	restoreB := tasks.RegisterBackend(b)
	if got, _ := tasks.GetBackend(name); got != b {
		t.Error("the second RegisterBackend did not replace the first")
	}
	names := tasks.BackendNames()
	if !slices.IsSorted(names) || !slices.Contains(names, name) {
		t.Errorf("BackendNames() = %v", names)
	}
	restoreB()
	if got, _ := tasks.GetBackend(name); got != a {
		t.Error("restoring the second did not bring back the first")
	}
	restoreA()
	if _, err := tasks.GetBackend(name); !errors.Is(err, tasks.ErrInvalidBackend) {
		t.Errorf("after both restores: %v, want ErrInvalidBackend", err)
	}

	// A restore after a newer registration leaves the newer one.
	restoreA = tasks.RegisterBackend(a)
	restoreB = tasks.RegisterBackend(b)
	restoreA()
	if got, _ := tasks.GetBackend(name); got != b {
		t.Error("restoring an older registration removed a newer one")
	}
	tasks.UnregisterBackend(name)
	if _, err := tasks.GetBackend(name); !errors.Is(err, tasks.ErrInvalidBackend) {
		t.Errorf("after UnregisterBackend: %v", err)
	}
	restoreB() // harmless now

	mustPanic(t, "nil", func() { tasks.RegisterBackend(nil) })

	_, err := addTask.Using(tasks.WithBackend(name)).Enqueue(t.Context(), addArgs{})
	if !errors.Is(err, tasks.ErrInvalidBackend) {
		t.Errorf("Enqueue to an unknown backend: %v, want ErrInvalidBackend", err)
	}
}

func TestValidationAgainstCapabilities(t *testing.T) {
	name := uniqueName(t)
	b := limited{Backend: dummy.New(tasks.WithName(name), tasks.WithAllowedQueues("a", "b"))}
	t.Cleanup(tasks.RegisterBackend(b))
	bound := addTask.Using(tasks.WithBackend(name), tasks.WithQueue("a"))
	for _, c := range []struct {
		what string
		opt  tasks.Option
	}{
		{"WithDelay", tasks.WithDelay(time.Minute)},
		{"WithRunAfter", tasks.WithRunAfter(time.Now().Add(time.Minute))},
		{"WithPriority", tasks.WithPriority(1)},
		{"WithTimeout", tasks.WithTimeout(time.Second)},
		{"WithRepeat", tasks.WithRepeat(time.Hour)},
		{"WithQueue(c)", tasks.WithQueue("c")},
	} {
		if _, err := bound.Using(c.opt).Enqueue(t.Context(), addArgs{}); !errors.Is(err, tasks.ErrInvalidTask) {
			t.Errorf("%s on a backend without the flag: %v, want ErrInvalidTask", c.what, err)
		}
	}
	// Options that cancel each other out are fine.
	for _, opts := range [][]tasks.Option{
		{tasks.WithDelay(time.Minute), tasks.WithDelay(0)},
		{tasks.WithRunAfter(time.Now().Add(time.Minute)), tasks.WithRunAfter(time.Time{})},
		{tasks.WithDelay(time.Minute), tasks.WithRunAfter(time.Time{})},
		{tasks.WithPriority(5), tasks.WithPriority(0)},
		{tasks.WithQueue("b")},
	} {
		if _, err := bound.Using(opts...).Enqueue(t.Context(), addArgs{}); err != nil {
			t.Errorf("Enqueue: %v", err)
		}
	}
	res, err := bound.Enqueue(t.Context(), addArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Cancel(t.Context()); !errors.Is(err, tasks.ErrNotSupported) {
		t.Errorf("Cancel without CanCancel: %v, want ErrNotSupported", err)
	}
	if _, err := bound.GetResult(t.Context(), res.ID); !errors.Is(err, tasks.ErrNotSupported) {
		t.Errorf("GetResult without CanGetResult: %v, want ErrNotSupported", err)
	}
}

func TestEnqueueRequest(t *testing.T) {
	name := uniqueName(t)
	rec := &recording{Backend: dummy.New(tasks.WithName(name))}
	t.Cleanup(tasks.RegisterBackend(rec))
	zone := time.FixedZone("UTC+2", 2*3600)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, zone)
	until := time.Date(2031, 1, 1, 0, 0, 0, 0, zone)
	task := addTask.Using(tasks.WithBackend(name), tasks.WithPriority(-5), tasks.WithQueue("mail"),
		tasks.WithRunAfter(at), tasks.WithMaxAttempts(4), tasks.WithTimeout(time.Minute),
		tasks.WithVerboseName("Add"), tasks.WithCreator("user:1"))
	res, err := task.Enqueue(t.Context(), addArgs{1, 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.reqs) != 1 || rec.enqueues != 1 || rec.manys != 0 {
		t.Fatalf("Enqueue made %d Enqueue and %d EnqueueMany calls", rec.enqueues, rec.manys)
	}
	req := rec.reqs[0]
	if req.RunAfter.Location() != time.UTC || !req.RunAfter.Equal(at) {
		t.Errorf("RunAfter = %v, want %v in UTC", req.RunAfter, at)
	}
	want := tasks.EnqueueRequest{
		ID: res.ID, TaskName: addTask.Name(), Args: json.RawMessage(`{"a":1,"b":2}`), Priority: -5, Queue: "mail",
		RunAfter: at.UTC(), MaxAttempts: 4, Timeout: time.Minute, VerboseName: "Add", Creator: "user:1",
	}
	if d := cmp.Diff(want, *req); d != "" {
		t.Errorf("EnqueueRequest (-want +got):\n%s", d)
	}
	stored, _ := rec.GetResult(t.Context(), res.ID)
	if !stored.RunAfter.Equal(at) || stored.Priority != -5 || stored.MaxAttempts != 4 || stored.Timeout != time.Minute {
		t.Errorf("stored result %+v", stored)
	}

	// A delay is relative to the enqueue.
	before := time.Now()
	if _, err := task.Using(tasks.WithDelay(time.Hour)).Enqueue(t.Context(), addArgs{}); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	got := rec.reqs[1].RunAfter
	if got.Before(before.Add(time.Hour).Truncate(time.Millisecond)) || got.After(after.Add(time.Hour)) || got.Location() != time.UTC {
		t.Errorf("WithDelay(1h): RunAfter = %v, want now+1h in UTC", got)
	}
	// Not deferred: RunAfter is zero in the request, the enqueue time in the result.
	res, err = addTask.Using(tasks.WithBackend(name)).Enqueue(t.Context(), addArgs{})
	if err != nil {
		t.Fatal(err)
	}
	if !rec.reqs[2].RunAfter.IsZero() {
		t.Errorf("RunAfter in the request = %v, want zero", rec.reqs[2].RunAfter)
	}
	if !res.RunAfter.Equal(res.EnqueuedAt) {
		t.Errorf("RunAfter %v, want the enqueue time %v", res.RunAfter, res.EnqueuedAt)
	}

	// NewRawResult copies the request.
	r := (&tasks.EnqueueRequest{ID: "x", TaskName: "t", Args: json.RawMessage(`{}`), RepeatUntil: until, Repeat: time.Hour}).
		NewRawResult("b", before.UTC())
	if r.Status != tasks.StatusReady || r.Backend != "b" || !r.RunAfter.Equal(before) || r.RepeatUntil == nil ||
		r.RepeatUntil.Location() != time.UTC || !r.RepeatUntil.Equal(until) || r.Repeat != time.Hour {
		t.Errorf("NewRawResult = %+v", r)
	}
}

func TestEnqueueMany(t *testing.T) {
	name := uniqueName(t)
	d := dummy.New(tasks.WithName(name))
	rec := &recording{Backend: d}
	t.Cleanup(tasks.RegisterBackend(rec))
	task := addTask.Using(tasks.WithBackend(name))
	if rs, err := task.EnqueueMany(t.Context(), nil); rs != nil || err != nil {
		t.Errorf("EnqueueMany(nil) = %v, %v; want nil, nil", rs, err)
	}
	rs, err := task.EnqueueMany(t.Context(), []addArgs{{1, 1}, {2, 2}, {3, 3}})
	if err != nil || len(rs) != 3 {
		t.Fatalf("EnqueueMany = %d, %v", len(rs), err)
	}
	if rec.manys != 1 || rec.enqueues != 0 {
		t.Errorf("EnqueueMany of 3 made %d EnqueueMany and %d Enqueue calls, want 1 and 0", rec.manys, rec.enqueues)
	}
	for i, r := range rs {
		a, _ := task.DecodeArgs(r.Args)
		if a.A != i+1 {
			t.Errorf("result %d has args %s", i, r.Args)
		}
	}
	// The whole batch is validated before anything is stored.
	before := len(d.Results())
	_, err = task.EnqueueMany(t.Context(), []addArgs{{1, 1}, {2, 2}})
	if err != nil {
		t.Fatal(err)
	}
	type maybeBad struct{ F float64 }
	mb := tasks.Define(uniqueName(t), func(context.Context, maybeBad) (int, error) { return 0, nil })
	_, err = mb.Using(tasks.WithBackend(name)).EnqueueMany(t.Context(), []maybeBad{{1}, {2}, {math.Inf(1)}})
	if !errors.Is(err, tasks.ErrInvalidTask) {
		t.Errorf("EnqueueMany with a bad element: %v, want ErrInvalidTask", err)
	}
	if n := len(d.Results()) - before; n != 2 {
		t.Errorf("%d results stored, want 2 (none of the rejected batch)", n)
	}
}
