package backendtest

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

type testCase struct {
	name string
	run  func(t *testing.T, f Factory)
}

var suite = []testCase{
	{"Lifecycle", testLifecycle},
	{"Wait", testWait},
	{"SignalOrder", testSignalOrder},
	{"UnencodableArgs", testUnencodableArgs},
	{"UnencodableReturnValue", testUnencodableReturnValue},
	{"TaskError", testTaskError},
	{"Panic", testPanic},
	{"TypedNilError", testTypedNilError},
	{"Goexit", testGoexit},
	{"InvalidOptions", testInvalidOptions},
	{"AllowedQueues", testAllowedQueues},
	{"Defer", testDefer},
	{"Priority", testPriority},
	{"GetResult", testGetResult},
	{"Cancel", testCancel},
	{"EnqueueMany", testEnqueueMany},
	{"Timeout", testTimeout},
	{"Retries", testRetries},
	{"Repeat", testRepeat},
	{"EnqueueOnCommit", testEnqueueOnCommit},
	{"Transaction", testTransaction},
	{"Check", testCheck},
	{"ConcurrentEnqueue", testConcurrentEnqueue},
	{"TaskContext", testTaskContext},
	{"NoRetry", testNoRetry},
	{"Snooze", testSnooze},
	{"FollowUp", testFollowUp},
	{"MiddlewareOrder", testMiddlewareOrder},
	{"MiddlewareOutcome", testMiddlewareOutcome},
	{"MiddlewareRecover", testMiddlewareRecover},
	{"EnqueueMiddlewareError", testEnqueueMiddlewareError},
	{"Metadata", testMetadata},
	{"InvalidMetadata", testInvalidMetadata},
	{"Unique", testUnique}, {"UniqueFinished", testUniqueFinished}, {"UniqueConcurrent", testUniqueConcurrent},
}

// testLifecycle: enqueue → READY (or finished inline) → SUCCESSFUL, with
// every field of the result.
func testLifecycle(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a := args{Mode: modeOK, Text: "hello", N: 21}
	task := e.task(tasks.WithVerboseName("Say hello"), tasks.WithCreator("user:42"))
	before := time.Now().Add(-time.Second)
	res := e.enqueue(task, a)

	if res.ID == "" || len(res.ID) >= 64 {
		t.Errorf("ID = %q, want 1-63 characters", res.ID)
	}
	type ident struct {
		TaskName, Backend, Queue, VerboseName, Creator string
		Priority                                       int
	}
	want := ident{workTask.Name(), e.name, tasks.DefaultQueue, "Say hello", "user:42", 0}
	got := ident{res.TaskName, res.Backend, res.Queue, res.VerboseName, res.Creator, res.Priority}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("result from Enqueue (-want +got):\n%s", d)
	}

	if !e.inline() {
		if res.Status != tasks.StatusReady {
			t.Fatalf("Status after Enqueue = %s, want READY", res.Status)
		}
		if _, err := res.Value(); !errors.Is(err, tasks.ErrNotFinished) {
			t.Errorf("Value() on a READY result: err = %v, want ErrNotFinished", err)
		}
		if res.IsFinished() {
			t.Error("IsFinished() on a READY result = true")
		}
		stored := e.mustLookup(res.ID)
		if stored.Status != tasks.StatusReady {
			t.Errorf("stored Status before Drain = %s, want READY", stored.Status)
		}
		if stored.Attempts != 0 || stored.StartedAt != nil || stored.FinishedAt != nil {
			t.Errorf("a READY result has attempts=%d started=%v finished=%v, want 0, nil, nil", stored.Attempts, stored.StartedAt, stored.FinishedAt)
		}
		e.drain()
		if res.Status != tasks.StatusReady {
			t.Errorf("the handle changed without Refresh: Status = %s", res.Status)
		}
		e.refresh(res)
	}

	if res.Status != tasks.StatusSuccessful {
		t.Fatalf("Status = %s, want SUCCESSFUL (errors: %+v)", res.Status, res.Errors)
	}
	if !res.IsFinished() {
		t.Error("IsFinished() = false on a SUCCESSFUL result")
	}
	v, err := res.Value()
	if err != nil {
		t.Fatalf("Value(): %v", err)
	}
	if d := cmp.Diff(out{Echo: "hello", N: 42}, v); d != "" {
		t.Errorf("Value() (-want +got):\n%s", d)
	}
	gotArgs, err := workTask.DecodeArgs(res.Args)
	if err != nil {
		t.Fatalf("DecodeArgs(%s): %v", res.Args, err)
	}
	if d := cmp.Diff(a, gotArgs); d != "" {
		t.Errorf("args round trip (-want +got):\n%s", d)
	}
	got = ident{res.TaskName, res.Backend, res.Queue, res.VerboseName, res.Creator, res.Priority}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("finished result (-want +got):\n%s", d)
	}
	if res.Attempts != 1 {
		t.Errorf("Attempts = %d, want 1", res.Attempts)
	}
	if len(res.WorkerIDs) != 1 || res.WorkerIDs[0] == "" {
		t.Errorf("WorkerIDs = %q, want one non-empty worker id", res.WorkerIDs)
	}
	if len(res.Errors) != 0 {
		t.Errorf("Errors = %+v, want none", res.Errors)
	}
	wantUTC(t, "EnqueuedAt", &res.EnqueuedAt)
	wantUTC(t, "RunAfter", &res.RunAfter)
	wantUTC(t, "StartedAt", res.StartedAt)
	wantUTC(t, "FinishedAt", res.FinishedAt)
	wantUTC(t, "LastAttemptedAt", res.LastAttemptedAt)
	if t.Failed() {
		return
	}
	after := time.Now().Add(time.Second)
	if res.EnqueuedAt.Before(before) || res.EnqueuedAt.After(after) {
		t.Errorf("EnqueuedAt = %v, want about now", res.EnqueuedAt)
	}
	if d := res.RunAfter.Sub(res.EnqueuedAt).Abs(); d > time.Second {
		t.Errorf("RunAfter = %v, want the enqueue time %v for a task that is not deferred", res.RunAfter, res.EnqueuedAt)
	}
	if res.StartedAt.Before(res.EnqueuedAt) || res.FinishedAt.Before(*res.StartedAt) {
		t.Errorf("times out of order: enqueued %v, started %v, finished %v", res.EnqueuedAt, *res.StartedAt, *res.FinishedAt)
	}
	if e.has(tasks.CanGetResult) {
		again, err := task.GetResult(e.ctx, res.ID)
		if err != nil {
			t.Fatalf("GetResult: %v", err)
		}
		if d := cmp.Diff(res.RawResult, again.RawResult); d != "" {
			t.Errorf("GetResult after Refresh (-want +got):\n%s", d)
		}
	}
}

// testWait: Wait returns when the task finishes, and with ctx's error
// before.
func testWait(t *testing.T, f Factory) {
	e := newEnv(t, f)
	res := e.enqueue(e.task(), args{Mode: modeOK, Text: "w", N: 1})
	if e.inline() {
		if err := res.Wait(e.ctx); err != nil {
			t.Fatalf("Wait on a finished result: %v", err)
		}
		if res.Status != tasks.StatusSuccessful {
			t.Fatalf("Status = %s, want SUCCESSFUL", res.Status)
		}
		return
	}
	if !e.has(tasks.CanGetResult) {
		if _, ok := e.h.Backend.(tasks.Waiter); !ok {
			t.Skip("Wait needs GetResult or a Waiter")
		}
	}
	short, cancel := context.WithTimeout(e.ctx, 20*time.Millisecond)
	err := res.Wait(short)
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait with nothing draining: err = %v, want context.DeadlineExceeded", err)
	}
	if res.Status != tasks.StatusReady {
		t.Errorf("Status after a timed-out Wait = %s, want READY", res.Status)
	}

	done := make(chan error, 1)
	go func() { done <- e.h.Drain(e.ctx) }()
	if err := res.Wait(e.ctx); err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if res.Status != tasks.StatusSuccessful {
		t.Fatalf("Status after Wait = %s, want SUCCESSFUL", res.Status)
	}
	if v, err := res.Value(); err != nil || v.N != 2 {
		t.Errorf("Value() = %+v, %v; want N=2", v, err)
	}
	raw, err := tasks.WaitResult(e.ctx, e.h.Backend, res.ID)
	if err != nil || raw.Status != tasks.StatusSuccessful {
		t.Errorf("WaitResult on a finished task = %v, %v", raw, err)
	}
}

// testSignalOrder: TaskEnqueued, TaskStarted, TaskFinished per result, with
// the backend's name as sender.
func testSignalOrder(t *testing.T, f Factory) {
	e := newEnv(t, f)
	ok := e.enqueue(e.task(), args{Mode: modeOK, Text: "s"})
	bad := e.enqueue(e.task(e.once()...), args{Mode: modeFail, Text: "s"})
	e.drain()
	for _, c := range []struct {
		res  *tasks.Result[out]
		want []string
	}{
		{ok, []string{sigEnqueued + " READY", sigStarted + " RUNNING", sigFinished + " SUCCESSFUL"}},
		{bad, []string{sigEnqueued + " READY", sigStarted + " RUNNING", sigFinished + " FAILED"}},
	} {
		eventually(t, "three signals for "+c.res.ID, func() bool { return len(e.rec.seq(c.res.ID)) >= len(c.want) })
		if d := cmp.Diff(c.want, e.rec.seq(c.res.ID)); d != "" {
			t.Errorf("signals of %s (-want +got):\n%s", c.res.ID, d)
		}
	}
	for _, ev := range e.rec.all() {
		r := ev.result
		if r.TaskName != workTask.Name() || r.Backend != e.name {
			t.Errorf("%s: result has task %q backend %q, want %q %q", ev.signal, r.TaskName, r.Backend, workTask.Name(), e.name)
		}
		if ev.signal == sigStarted && r.Attempts != 1 {
			t.Errorf("%s: Attempts = %d, want 1", ev.signal, r.Attempts)
		}
		if ev.signal == sigFinished && r.ID == ok.ID {
			if string(r.ReturnValue) == "" || r.FinishedAt == nil {
				t.Errorf("%s SUCCESSFUL: return value %q, finished at %v; want both set", ev.signal, r.ReturnValue, r.FinishedAt)
			}
		}
	}
}

// testUnencodableArgs: arguments that do not survive JSON are rejected at
// enqueue, and nothing is stored.
func testUnencodableArgs(t *testing.T, f Factory) {
	e := newEnv(t, f)
	_, err := chanTask.Using(tasks.WithBackend(e.name)).Enqueue(e.ctx, chanArgs{Ch: make(chan int)})
	wantErrIs(t, "args with a chan field", err, tasks.ErrInvalidTask)
	_, err = funcTask.Using(tasks.WithBackend(e.name)).Enqueue(e.ctx, funcArgs{Fn: func() {}})
	wantErrIs(t, "args with a func field", err, tasks.ErrInvalidTask)
	_, err = oneWayTask.Using(tasks.WithBackend(e.name)).Enqueue(e.ctx, oneWayArgs{X: 1})
	wantErrIs(t, "args that encode but do not decode", err, tasks.ErrInvalidTask)
	for _, x := range []float64{math.Inf(1), math.Inf(-1), math.NaN()} {
		_, err = e.task().Enqueue(e.ctx, args{Mode: modeOK, F: x})
		wantErrIs(t, "args with float "+fmtFloat(x), err, tasks.ErrInvalidTask)
	}
	rs, err := e.task().EnqueueMany(e.ctx, []args{{Mode: modeOK}, {Mode: modeOK, F: math.Inf(1)}})
	wantErrIs(t, "EnqueueMany with one bad element", err, tasks.ErrInvalidTask)
	if rs != nil {
		t.Errorf("EnqueueMany returned %d results with its error", len(rs))
	}
	e.drain()
	e.wantNoSignals()
}

func fmtFloat(x float64) string {
	switch {
	case math.IsInf(x, 1):
		return "+Inf"
	case math.IsInf(x, -1):
		return "-Inf"
	}
	return "NaN"
}

// testUnencodableReturnValue: the attempt fails with a ReturnValueError.
func testUnencodableReturnValue(t *testing.T, f Factory) {
	e := newEnv(t, f)
	res := e.enqueue(e.task(e.once()...), args{Mode: modeBadReturn, Text: "nan"})
	e.finish(res)
	if res.Status != tasks.StatusFailed {
		t.Fatalf("Status = %s, want FAILED", res.Status)
	}
	if len(res.Errors) != 1 {
		t.Fatalf("Errors = %+v, want one", res.Errors)
	}
	if !strings.Contains(res.Errors[0].Type, "ReturnValueError") {
		t.Errorf("Errors[0].Type = %q, want it to mention ReturnValueError", res.Errors[0].Type)
	}
	if len(res.ReturnValue) != 0 {
		t.Errorf("ReturnValue = %s, want none", res.ReturnValue)
	}
	_, err := res.Value()
	wantErrIs(t, "Value() of a FAILED result", err, tasks.ErrTaskFailed)
}

// testTaskError: a returned error fails the task, recorded with its type
// (looking through fmt.Errorf) and message.
func testTaskError(t *testing.T, f Factory) {
	e := newEnv(t, f)
	res := e.enqueue(e.task(e.once()...), args{Mode: modeFail, Text: "te"})
	e.finish(res)
	if res.Status != tasks.StatusFailed {
		t.Fatalf("Status = %s, want FAILED", res.Status)
	}
	if res.Attempts != 1 {
		t.Errorf("Attempts = %d, want 1", res.Attempts)
	}
	if len(res.Errors) != 1 {
		t.Fatalf("Errors = %+v, want one", res.Errors)
	}
	te := res.Errors[0]
	type rec struct {
		Attempt              int
		Type, Message, Stack string
	}
	want := rec{1, failureType, "mode fail: backendtest: failing on purpose: te", ""}
	if d := cmp.Diff(want, rec{te.Attempt, te.Type, te.Message, te.Stack}); d != "" {
		t.Errorf("Errors[0] (-want +got):\n%s", d)
	}
	wantUTC(t, "Errors[0].At", &te.At)
	wantUTC(t, "FinishedAt", res.FinishedAt)
	if len(res.ReturnValue) != 0 {
		t.Errorf("ReturnValue = %s, want none", res.ReturnValue)
	}
	if res.LastError() == nil || res.LastError().Message != te.Message {
		t.Errorf("LastError() = %+v, want the only error", res.LastError())
	}
	_, err := res.Value()
	wantErrIs(t, "Value() of a FAILED result", err, tasks.ErrTaskFailed)
	if err != nil && !strings.Contains(err.Error(), "failing on purpose") {
		t.Errorf("Value() error %q does not carry the task's message", err)
	}
}

// testPanic: a panic fails the task with type "panic" and a stack.
func testPanic(t *testing.T, f Factory) {
	e := newEnv(t, f)
	res, err := e.task(e.once()...).Enqueue(e.ctx, args{Mode: modePanic, Text: "p"})
	if err != nil {
		t.Fatalf("Enqueue of a panicking task: %v", err)
	}
	e.finish(res)
	if res.Status != tasks.StatusFailed {
		t.Fatalf("Status = %s, want FAILED", res.Status)
	}
	if len(res.Errors) != 1 {
		t.Fatalf("Errors = %+v, want one", res.Errors)
	}
	te := res.Errors[0]
	if te.Type != "panic" {
		t.Errorf("Errors[0].Type = %q, want \"panic\"", te.Type)
	}
	if !strings.Contains(te.Message, "panic on purpose: p") {
		t.Errorf("Errors[0].Message = %q, want the panic value", te.Message)
	}
	if !strings.Contains(te.Stack, "backendtest.work") {
		t.Errorf("Errors[0].Stack does not show the panicking function:\n%s", te.Stack)
	}
	_, err = res.Value()
	wantErrIs(t, "Value() of a panicked task", err, tasks.ErrTaskFailed)
}

// testTypedNilError: a task that returns a typed nil pointer as its error
// (var f *failure; return v, f) fails with an error that says so; nothing
// crashes on calling its Error method.
func testTypedNilError(t *testing.T, f Factory) {
	e := newEnv(t, f)
	res, err := e.task(e.once()...).Enqueue(e.ctx, args{Mode: modeTypedNil})
	if err != nil {
		t.Fatalf("Enqueue of a task returning a typed nil error: %v", err)
	}
	e.finish(res)
	if res.Status != tasks.StatusFailed || len(res.Errors) != 1 {
		t.Fatalf("result %s with errors %+v, want FAILED with one error", res.Status, res.Errors)
	}
	te := res.Errors[0]
	if te.Type != "*tasks.BadErrorValue" || !strings.Contains(te.Message, "a nil "+failureType+" is not a nil error") {
		t.Errorf("Errors[0] = %s: %q, want a *tasks.BadErrorValue saying that a nil %s is not a nil error", te.Type, te.Message, failureType)
	}
	_, err = res.Value()
	wantErrIs(t, "Value() of the task", err, tasks.ErrTaskFailed)
	if seq := e.rec.seq(res.ID); len(seq) == 0 || seq[len(seq)-1] != sigFinished+" FAILED" {
		t.Errorf("signals %v, want the last one %s FAILED", seq, sigFinished)
	}
}

// testGoexit: a task that calls runtime.Goexit (as t.FailNow does) fails
// that attempt, with its TaskFinished signal, and the backend goes on
// running tasks. The goroutine that ran the task may exit: the suite
// enqueues (inline backends) or drains in a goroutine of its own.
func testGoexit(t *testing.T, f Factory) {
	e := newEnv(t, f)
	task := e.task(e.once()...)
	inGoroutine := func(what string, fn func() error) {
		t.Helper()
		done := make(chan struct{})
		var err error
		go func() {
			defer close(done) // also when the goroutine exits by runtime.Goexit
			err = fn()
		}()
		select {
		case <-done:
		case <-e.ctx.Done():
			t.Fatalf("%s with a task that calls runtime.Goexit did not end: %v", what, context.Cause(e.ctx))
		}
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	var id string
	if e.inline() {
		inGoroutine("Enqueue", func() error {
			_, err := task.Enqueue(e.ctx, args{Mode: modeGoexit})
			return err
		})
		ids := e.rec.ids(sigEnqueued)
		if len(ids) != 1 {
			t.Fatalf("%d TaskEnqueued signals, want 1", len(ids))
		}
		id = ids[0]
	} else {
		id = e.enqueue(task, args{Mode: modeGoexit}).ID
		inGoroutine("Drain", func() error { return e.h.Drain(e.ctx) })
	}
	r := e.mustLookup(id)
	if r.Status != tasks.StatusFailed || len(r.Errors) != 1 || !strings.Contains(r.Errors[0].Message, "runtime.Goexit") {
		t.Errorf("result %s with errors %+v, want FAILED with an error that names runtime.Goexit", r.Status, r.Errors)
	}
	if seq := e.rec.seq(id); len(seq) == 0 || seq[len(seq)-1] != sigFinished+" FAILED" {
		t.Errorf("signals %v, want the last one %s FAILED", seq, sigFinished)
	}

	// The backend runs the next task.
	res := e.enqueue(e.task(), args{Mode: modeOK, N: 1})
	e.finish(res)
	if res.Status != tasks.StatusSuccessful {
		t.Errorf("the next task is %s, want SUCCESSFUL", res.Status)
	}
}

// testInvalidOptions: values that are invalid on any backend.
func testInvalidOptions(t *testing.T, f Factory) {
	e := newEnv(t, f)
	a := args{Mode: modeOK}
	for _, c := range []struct {
		what string
		task *tasks.Task[args, out]
		want error
	}{
		{"priority 101", e.task(tasks.WithPriority(tasks.MaxPriority + 1)), tasks.ErrInvalidTask},
		{"priority -101", e.task(tasks.WithPriority(tasks.MinPriority - 1)), tasks.ErrInvalidTask},
		{"empty queue name", e.task(tasks.WithQueue("")), tasks.ErrInvalidTask},
		{"queue name with a comma", e.task(tasks.WithQueue("a,b")), tasks.ErrInvalidTask},
		{"negative max attempts", e.task(tasks.WithMaxAttempts(-1)), tasks.ErrInvalidTask},
		{"negative timeout", e.task(tasks.WithTimeout(-time.Second)), tasks.ErrInvalidTask},
		{"negative delay", e.task(tasks.WithDelay(-time.Second)), tasks.ErrInvalidTask},
		{"backoff per call", e.task(tasks.WithBackoff(tasks.ConstantBackoff(0))), tasks.ErrInvalidTask},
		{"unknown backend", workTask.Using(tasks.WithBackend(e.name + "-missing")), tasks.ErrInvalidBackend},
	} {
		_, err := c.task.Enqueue(e.ctx, a)
		wantErrIs(t, c.what, err, c.want)
		_, err = c.task.EnqueueMany(e.ctx, []args{a, a})
		wantErrIs(t, c.what+" (EnqueueMany)", err, c.want)
	}
	e.drain()
	e.wantNoSignals()
}

// testAllowedQueues: a backend with allowed queues rejects the others.
func testAllowedQueues(t *testing.T, f Factory) {
	e := newEnv(t, f, tasks.WithAllowedQueues("alpha", "beta"))
	if d := cmp.Diff([]string{"alpha", "beta"}, e.h.Backend.Queues()); d != "" {
		t.Errorf("Queues() (-want +got):\n%s", d)
	}
	_, err := e.task().Enqueue(e.ctx, args{Mode: modeOK})
	wantErrIs(t, "the default queue, not allowed", err, tasks.ErrInvalidTask)
	_, err = e.task(tasks.WithQueue("gamma")).Enqueue(e.ctx, args{Mode: modeOK})
	wantErrIs(t, "queue gamma, not allowed", err, tasks.ErrInvalidTask)
	if n := e.rec.count(sigEnqueued, ""); n != 0 {
		t.Errorf("%d TaskEnqueued signals for rejected tasks", n)
	}
	res := e.enqueue(e.task(tasks.WithQueue("beta")), args{Mode: modeOK, N: 3})
	if res.Queue != "beta" {
		t.Errorf("Queue = %q, want beta", res.Queue)
	}
	e.finish(res)
	if res.Status != tasks.StatusSuccessful || res.Queue != "beta" {
		t.Errorf("result: status %s queue %q, want SUCCESSFUL beta", res.Status, res.Queue)
	}
}

// testDefer: RunAfter and Delay need CanDefer; deferred tasks wait.
func testDefer(t *testing.T, f Factory) {
	e := newEnv(t, f)
	at := time.Now().Add(time.Hour).Truncate(time.Second)
	if !e.has(tasks.CanDefer) {
		_, err := e.task(tasks.WithRunAfter(at)).Enqueue(e.ctx, args{Mode: modeOK})
		wantErrIs(t, "WithRunAfter without CanDefer", err, tasks.ErrInvalidTask)
		_, err = e.task(tasks.WithDelay(time.Hour)).Enqueue(e.ctx, args{Mode: modeOK})
		wantErrIs(t, "WithDelay without CanDefer", err, tasks.ErrInvalidTask)
		e.wantNoSignals()
		// Clearing a deferral is fine.
		res := e.enqueue(e.task(tasks.WithDelay(time.Hour), tasks.WithDelay(0)), args{Mode: modeOK})
		e.finish(res)
		return
	}
	if e.inline() {
		t.Skip("the backend runs tasks inline yet claims CanDefer")
	}
	later := e.enqueue(e.task(tasks.WithRunAfter(at.In(time.FixedZone("X", 3600)))), args{Mode: modeOK, Text: "later"})
	before := time.Now()
	delayed := e.enqueue(e.task(tasks.WithDelay(time.Hour)), args{Mode: modeOK, Text: "delayed"})
	after := time.Now()
	past := e.enqueue(e.task(tasks.WithRunAfter(time.Now().Add(-time.Minute))), args{Mode: modeOK, Text: "past"})
	now := e.enqueue(e.task(), args{Mode: modeOK, Text: "now"})
	for _, r := range []*tasks.Result[out]{later, delayed} {
		if r.Status != tasks.StatusReady {
			t.Errorf("deferred %q: Status = %s, want READY", r.Args, r.Status)
		}
	}
	e.drain()
	for _, r := range []*tasks.Result[out]{later, delayed, past, now} {
		e.refresh(r)
	}
	if !later.RunAfter.Equal(at) {
		t.Errorf("RunAfter = %v, want %v", later.RunAfter, at)
	}
	wantUTC(t, "RunAfter", &later.RunAfter)
	if lo, hi := before.Add(time.Hour-time.Second), after.Add(time.Hour+time.Second); delayed.RunAfter.Before(lo) || delayed.RunAfter.After(hi) {
		t.Errorf("WithDelay(1h): RunAfter = %v, want about %v", delayed.RunAfter, before.Add(time.Hour).UTC())
	}
	for _, r := range []*tasks.Result[out]{later, delayed} {
		if r.Status != tasks.StatusReady || r.Attempts != 0 {
			t.Errorf("deferred task %s after Drain: status %s attempts %d, want READY 0", r.Args, r.Status, r.Attempts)
		}
		if n := e.rec.count(sigStarted, r.ID); n != 0 {
			t.Errorf("deferred task %s was started %d times before it was due", r.Args, n)
		}
	}
	for _, r := range []*tasks.Result[out]{past, now} {
		if r.Status != tasks.StatusSuccessful {
			t.Errorf("due task %s after Drain: status %s, want SUCCESSFUL", r.Args, r.Status)
		}
	}
	if e.has(tasks.CanCancel) {
		// Leave nothing READY behind in a shared database.
		for _, r := range []*tasks.Result[out]{later, delayed} {
			if err := r.Cancel(e.ctx); err != nil {
				t.Errorf("Cancel: %v", err)
			}
		}
	}
}

// testPriority: priorities need CanPriority; higher runs first, FIFO
// within a priority.
func testPriority(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !e.has(tasks.CanPriority) {
		_, err := e.task(tasks.WithPriority(5)).Enqueue(e.ctx, args{Mode: modeOK})
		wantErrIs(t, "WithPriority(5) without CanPriority", err, tasks.ErrInvalidTask)
		e.wantNoSignals()
		res := e.enqueue(e.task(tasks.WithPriority(tasks.DefaultPriority)), args{Mode: modeOK})
		e.finish(res)
		return
	}
	enq := func(p int, text string) *tasks.Result[out] {
		r := e.enqueue(e.task(tasks.WithPriority(p)), args{Mode: modeOK, Text: text})
		if r.Priority != p {
			t.Errorf("Priority = %d, want %d", r.Priority, p)
		}
		clockPast(t, r.EnqueuedAt)
		return r
	}
	low := enq(-10, "low")
	high := enq(10, "high")
	mid1 := enq(0, "mid1")
	bottom := enq(tasks.MinPriority, "bottom")
	mid2 := enq(0, "mid2")
	top := enq(tasks.MaxPriority, "top")
	if e.inline() {
		return // each task ran as it was enqueued
	}
	e.drain()
	order := []*tasks.Result[out]{top, high, mid1, mid2, low, bottom}
	text := map[string]string{}
	var want, got []string
	for _, r := range order {
		a, _ := workTask.DecodeArgs(r.Args)
		text[r.ID] = a.Text
		want = append(want, a.Text)
		e.refresh(r)
		if r.Status != tasks.StatusSuccessful {
			t.Errorf("%s: status %s, want SUCCESSFUL", a.Text, r.Status)
		}
	}
	for _, id := range e.rec.ids(sigStarted) {
		got = append(got, text[id])
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("start order (priority DESC, then FIFO) (-want +got):\n%s", d)
	}
}

// testGetResult: typed and untyped GetResult, mismatch and not found.
func testGetResult(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !e.has(tasks.CanGetResult) {
		_, err := e.task().GetResult(e.ctx, tasks.NewID())
		wantErrIs(t, "GetResult without CanGetResult", err, tasks.ErrNotSupported)
		return
	}
	res := e.enqueue(e.task(), args{Mode: modeOK, Text: "g", N: 4})
	other, err := otherTask.Using(tasks.WithBackend(e.name)).Enqueue(e.ctx, args{Mode: modeOK})
	if err != nil {
		t.Fatalf("Enqueue other: %v", err)
	}
	got, err := e.task().GetResult(e.ctx, res.ID)
	if err != nil {
		t.Fatalf("GetResult: %v", err)
	}
	if got.ID != res.ID || got.TaskName != workTask.Name() || got.Status != res.Status {
		t.Errorf("GetResult = %s %s %s, want %s %s %s", got.ID, got.TaskName, got.Status, res.ID, workTask.Name(), res.Status)
	}
	_, err = e.task().GetResult(e.ctx, other.ID)
	wantErrIs(t, "GetResult of another task's id", err, tasks.ErrResultMismatch)
	_, err = otherTask.Using(tasks.WithBackend(e.name)).GetResult(e.ctx, res.ID)
	wantErrIs(t, "other task's GetResult of this task's id", err, tasks.ErrResultMismatch)
	unknown := tasks.NewID()
	_, err = e.task().GetResult(e.ctx, unknown)
	wantErrIs(t, "typed GetResult of an unknown id", err, tasks.ErrResultNotFound)
	_, err = e.h.Backend.GetResult(e.ctx, unknown)
	wantErrIs(t, "untyped GetResult of an unknown id", err, tasks.ErrResultNotFound)
	for _, c := range []struct{ id, name string }{{res.ID, workTask.Name()}, {other.ID, otherTask.Name()}} {
		raw, err := e.h.Backend.GetResult(e.ctx, c.id)
		if err != nil {
			t.Errorf("untyped GetResult(%s): %v", c.id, err)
		} else if raw.ID != c.id || raw.TaskName != c.name || raw.Backend != e.name {
			t.Errorf("untyped GetResult = %s %s %s, want %s %s %s", raw.ID, raw.TaskName, raw.Backend, c.id, c.name, e.name)
		}
	}
	e.drain()
	got, err = e.task().GetResult(e.ctx, res.ID)
	if err != nil {
		t.Fatalf("GetResult after Drain: %v", err)
	}
	if v, err := got.Value(); err != nil || v != (out{Echo: "g", N: 8}) {
		t.Errorf("Value() = %+v, %v; want {g 8}", v, err)
	}
	if err := got.Refresh(e.ctx); err != nil {
		t.Errorf("Refresh of a GetResult handle: %v", err)
	}
}

// testCancel: cancelling needs CanCancel; a cancelled task never runs.
func testCancel(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !e.has(tasks.CanCancel) {
		res := e.enqueue(e.task(), args{Mode: modeOK})
		wantErrIs(t, "Result.Cancel without CanCancel", res.Cancel(e.ctx), tasks.ErrNotSupported)
		wantErrIs(t, "Backend.Cancel without CanCancel", e.h.Backend.Cancel(e.ctx, res.ID), tasks.ErrNotSupported)
		e.finish(res)
		if res.Status != tasks.StatusSuccessful {
			t.Errorf("Status = %s, want SUCCESSFUL", res.Status)
		}
		return
	}
	if e.inline() {
		t.Skip("the backend runs tasks inline yet claims CanCancel")
	}
	res := e.enqueue(e.task(), args{Mode: modeOK, Text: "cancel me"})
	keep := e.enqueue(e.task(), args{Mode: modeOK, Text: "keep me"})
	if err := res.Cancel(e.ctx); err != nil {
		t.Fatalf("Cancel of a READY task: %v", err)
	}
	if res.Status != tasks.StatusCancelled {
		t.Errorf("Status after Cancel = %s, want CANCELLED", res.Status)
	}
	e.drain()
	e.refresh(res)
	e.refresh(keep)
	if res.Status != tasks.StatusCancelled || res.Attempts != 0 {
		t.Errorf("cancelled task after Drain: status %s attempts %d, want CANCELLED 0", res.Status, res.Attempts)
	}
	if n := e.rec.count(sigStarted, res.ID); n != 0 {
		t.Errorf("the cancelled task was started %d times", n)
	}
	_, err := res.Value()
	wantErrIs(t, "Value() of a CANCELLED result", err, tasks.ErrTaskCancelled)
	wantErrIs(t, "cancelling again", res.Cancel(e.ctx), tasks.ErrNotCancellable)
	wantErrIs(t, "Backend.Cancel again", e.h.Backend.Cancel(e.ctx, res.ID), tasks.ErrNotCancellable)
	if keep.Status != tasks.StatusSuccessful {
		t.Errorf("the other task: status %s, want SUCCESSFUL", keep.Status)
	}
	wantErrIs(t, "cancelling a finished task", keep.Cancel(e.ctx), tasks.ErrNotCancellable)
	wantErrIs(t, "cancelling an unknown id", e.h.Backend.Cancel(e.ctx, tasks.NewID()), tasks.ErrResultNotFound)
}

// testEnqueueMany: results in order, all stored, one TaskEnqueued each.
func testEnqueueMany(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if rs, err := e.task().EnqueueMany(e.ctx, nil); err != nil || len(rs) != 0 {
		t.Errorf("EnqueueMany(nil) = %d results, %v; want none, nil", len(rs), err)
	}
	const n = 5
	in := make([]args, n)
	for i := range in {
		in[i] = args{Mode: modeOK, Text: "m", N: i}
	}
	rs, err := e.task().EnqueueMany(e.ctx, in)
	if err != nil {
		t.Fatalf("EnqueueMany: %v", err)
	}
	if len(rs) != n {
		t.Fatalf("EnqueueMany returned %d results, want %d", len(rs), n)
	}
	var ids []string
	seen := map[string]bool{}
	for i, r := range rs {
		a, err := workTask.DecodeArgs(r.Args)
		if err != nil || a.N != i {
			t.Errorf("result %d has args %s (%v), want N=%d", i, r.Args, err, i)
		}
		if seen[r.ID] {
			t.Errorf("duplicate id %s", r.ID)
		}
		seen[r.ID] = true
		ids = append(ids, r.ID)
		if !e.inline() && r.Status != tasks.StatusReady {
			t.Errorf("result %d: status %s, want READY", i, r.Status)
		}
		stored := e.mustLookup(r.ID)
		if stored.TaskName != workTask.Name() {
			t.Errorf("stored result %d: task %q", i, stored.TaskName)
		}
	}
	eventually(t, "n TaskEnqueued signals", func() bool { return e.rec.count(sigEnqueued, "") >= n })
	if d := cmp.Diff(ids, e.rec.ids(sigEnqueued)); d != "" {
		t.Errorf("TaskEnqueued ids (-want +got):\n%s", d)
	}
	e.drain()
	for i, r := range rs {
		e.refresh(r)
		if v, err := r.Value(); err != nil || v.N != 2*i {
			t.Errorf("result %d: Value() = %+v, %v; want N=%d", i, v, err, 2*i)
		}
	}
}

// testTimeout: timeouts need CanTimeout; a timed-out attempt fails with a
// TimeoutError.
func testTimeout(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !e.has(tasks.CanTimeout) {
		_, err := e.task(tasks.WithTimeout(time.Second)).Enqueue(e.ctx, args{Mode: modeOK})
		wantErrIs(t, "WithTimeout without CanTimeout", err, tasks.ErrInvalidTask)
		e.wantNoSignals()
		return
	}
	slow := e.enqueue(e.task(append(e.once(), tasks.WithTimeout(50*time.Millisecond))...), args{Mode: modeSleep})
	fast := e.enqueue(e.task(tasks.WithTimeout(10*time.Second)), args{Mode: modeOK, N: 1})
	e.finish(slow)
	e.refresh(fast)
	if slow.Status != tasks.StatusFailed {
		t.Fatalf("Status = %s, want FAILED", slow.Status)
	}
	if len(slow.Errors) != 1 || !strings.Contains(slow.Errors[0].Type, "TimeoutError") {
		t.Errorf("Errors = %+v, want one whose Type mentions TimeoutError", slow.Errors)
	}
	if slow.Timeout != 50*time.Millisecond {
		t.Errorf("Timeout = %v, want 50ms", slow.Timeout)
	}
	_, err := slow.Value()
	wantErrIs(t, "Value() of a timed-out task", err, tasks.ErrTaskFailed)
	if fast.Status != tasks.StatusSuccessful {
		t.Errorf("a task that finished within its timeout: status %s, want SUCCESSFUL", fast.Status)
	}
}

// testRetries: with CanRetry a failed attempt is retried up to
// MaxAttempts; without it, a task gets one attempt.
func testRetries(t *testing.T, f Factory) {
	e := newEnv(t, f, tasks.WithDefaultBackoff(tasks.ConstantBackoff(0)))
	if !e.has(tasks.CanRetry) {
		res := e.enqueue(e.task(tasks.WithMaxAttempts(3)), args{Mode: modeFail, Text: "r"})
		e.finish(res)
		if res.Status != tasks.StatusFailed || res.Attempts != 1 || len(res.Errors) != 1 {
			t.Errorf("without CanRetry: status %s attempts %d errors %d, want FAILED 1 1", res.Status, res.Attempts, len(res.Errors))
		}
		return
	}
	flaky := e.enqueue(e.task(tasks.WithMaxAttempts(3)), args{Mode: modeFlaky, Key: e.key(), Text: "flaky"})
	always := e.enqueue(e.task(tasks.WithMaxAttempts(2)), args{Mode: modeFail, Text: "always"})
	e.finish(flaky)
	e.finish(always)

	if flaky.Status != tasks.StatusSuccessful {
		t.Fatalf("flaky: status %s, want SUCCESSFUL (errors %+v)", flaky.Status, flaky.Errors)
	}
	if flaky.Attempts != 2 || len(flaky.WorkerIDs) != 2 {
		t.Errorf("flaky: attempts %d worker ids %q, want 2 and 2", flaky.Attempts, flaky.WorkerIDs)
	}
	if len(flaky.Errors) != 1 || flaky.Errors[0].Attempt != 1 || flaky.Errors[0].Type != failureType {
		t.Errorf("flaky: errors %+v, want one of attempt 1 with type %s", flaky.Errors, failureType)
	}
	if v, err := flaky.Value(); err != nil || v != (out{Echo: "flaky", N: 2}) {
		t.Errorf("flaky: Value() = %+v, %v; want {flaky 2}", v, err)
	}
	wantSeq := []string{
		sigEnqueued + " READY",
		sigStarted + " RUNNING", sigFinished + " READY",
		sigStarted + " RUNNING", sigFinished + " SUCCESSFUL",
	}
	eventually(t, "the flaky task's signals", func() bool { return len(e.rec.seq(flaky.ID)) >= len(wantSeq) })
	if d := cmp.Diff(wantSeq, e.rec.seq(flaky.ID)); d != "" {
		t.Errorf("flaky: signals (-want +got):\n%s", d)
	}

	if always.Status != tasks.StatusFailed || always.Attempts != 2 {
		t.Errorf("always failing: status %s attempts %d, want FAILED 2", always.Status, always.Attempts)
	}
	var attempts []int
	for _, te := range always.Errors {
		attempts = append(attempts, te.Attempt)
	}
	if d := cmp.Diff([]int{1, 2}, attempts); d != "" {
		t.Errorf("always failing: attempts of the errors (-want +got):\n%s", d)
	}
}

// testRepeat: repeating needs CanRepeat; after success the next run is
// enqueued at run-after + interval, until RepeatUntil.
func testRepeat(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !e.has(tasks.CanRepeat) {
		_, err := e.task(tasks.WithRepeat(time.Hour)).Enqueue(e.ctx, args{Mode: modeOK})
		wantErrIs(t, "WithRepeat without CanRepeat", err, tasks.ErrInvalidTask)
		e.wantNoSignals()
		return
	}
	_, err := e.task(tasks.WithRepeat(time.Millisecond)).Enqueue(e.ctx, args{Mode: modeOK})
	wantErrIs(t, "WithRepeat shorter than a second", err, tasks.ErrInvalidTask)
	res := e.enqueue(e.task(tasks.WithRepeat(time.Hour)), args{Mode: modeOK, Text: "rep"})
	ends := e.enqueue(e.task(tasks.WithRepeat(time.Hour), tasks.WithRepeatUntil(time.Now().Add(30*time.Minute))), args{Mode: modeOK, Text: "ends"})
	e.finish(res)
	e.refresh(ends)
	if res.Status != tasks.StatusSuccessful || ends.Status != tasks.StatusSuccessful {
		t.Fatalf("statuses %s %s, want SUCCESSFUL", res.Status, ends.Status)
	}
	if res.Repeat != time.Hour {
		t.Errorf("Repeat = %v, want 1h", res.Repeat)
	}
	var next *tasks.RawResult
	eventually(t, "the next run's TaskEnqueued", func() bool {
		for _, ev := range e.rec.all() {
			if ev.signal == sigEnqueued && ev.result.ID != res.ID && ev.result.ID != ends.ID {
				next = ev.result
				return true
			}
		}
		return false
	})
	if next.TaskName != workTask.Name() || next.Status != tasks.StatusReady || next.Repeat != time.Hour {
		t.Errorf("next run: task %q status %s repeat %v, want %q READY 1h", next.TaskName, next.Status, next.Repeat, workTask.Name())
	}
	if d := next.RunAfter.Sub(res.RunAfter.Add(time.Hour)).Abs(); d > time.Second {
		t.Errorf("next run's RunAfter = %v, want %v", next.RunAfter, res.RunAfter.Add(time.Hour))
	}
	if a, err := workTask.DecodeArgs(next.Args); err != nil || a.Text != "rep" {
		t.Errorf("next run's args = %s, %v", next.Args, err)
	}
	e.drain()
	if n := e.rec.count(sigStarted, next.ID); n != 0 {
		t.Errorf("the next run started %d times before it was due", n)
	}
	if n := e.rec.count(sigEnqueued, ""); n != 3 {
		t.Errorf("%d TaskEnqueued signals, want 3 (two tasks and one next run; none after RepeatUntil)", n)
	}
	if e.has(tasks.CanCancel) && e.has(tasks.CanGetResult) {
		if err := e.h.Backend.Cancel(e.ctx, next.ID); err != nil {
			t.Errorf("Cancel the next run: %v", err)
		}
	}
}

// testEnqueueOnCommit: inside a (fake) transaction, enqueue-on-commit
// defers the enqueue to the commit and drops it on rollback.
func testEnqueueOnCommit(t *testing.T, f Factory) {
	deferred := func(t *testing.T, e *env, task *tasks.Task[args, out]) (*tasks.TxHooks, *tasks.Result[out]) {
		t.Helper()
		h := tasks.NewTxHooks(nil)
		res, err := task.Enqueue(tasks.ContextWithTx(e.ctx, h), args{Mode: modeOK, Text: "tx", N: 5})
		if err != nil {
			t.Fatalf("Enqueue in a transaction: %v", err)
		}
		if res.Status != tasks.StatusReady {
			t.Errorf("deferred handle: status %s, want READY", res.Status)
		}
		if _, err := res.Value(); !errors.Is(err, tasks.ErrNotFinished) {
			t.Errorf("Value() of a deferred handle: %v, want ErrNotFinished", err)
		}
		e.drain()
		e.wantNotStored(res.ID)
		return h, res
	}
	committed := func(t *testing.T, e *env, h *tasks.TxHooks, res *tasks.Result[out]) {
		t.Helper()
		if err := h.Commit(e.ctx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		eventually(t, "TaskEnqueued after commit", func() bool { return e.rec.count(sigEnqueued, res.ID) > 0 })
		stored := e.mustLookup(res.ID)
		if stored.TaskName != workTask.Name() {
			t.Errorf("stored task %q", stored.TaskName)
		}
		e.finish(res)
		if v, err := res.Value(); err != nil || v.N != 10 {
			t.Errorf("Value() = %+v, %v; want N=10", v, err)
		}
		if n := e.rec.count(sigEnqueued, ""); n != 1 {
			t.Errorf("%d TaskEnqueued signals, want exactly 1", n)
		}
	}
	immediate := func(t *testing.T, e *env, task *tasks.Task[args, out]) {
		t.Helper()
		h := tasks.NewTxHooks(nil)
		res, err := task.Enqueue(tasks.ContextWithTx(e.ctx, h), args{Mode: modeOK, N: 1})
		if err != nil {
			t.Fatalf("Enqueue: %v", err)
		}
		if n := e.rec.count(sigEnqueued, res.ID); n != 1 {
			t.Errorf("%d TaskEnqueued signals before the commit, want 1 (enqueued at once)", n)
		}
		e.mustLookup(res.ID)
		h.Rollback()
		e.finish(res)
		if res.Status != tasks.StatusSuccessful {
			t.Errorf("status %s, want SUCCESSFUL", res.Status)
		}
	}

	t.Run("Commit", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, f)
		if !e.h.Backend.EnqueueOnCommit() {
			t.Fatal("EnqueueOnCommit() = false, want true by default")
		}
		h, res := deferred(t, e, e.task())
		committed(t, e, h, res)
	})
	t.Run("Rollback", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, f)
		h, res := deferred(t, e, e.task())
		h.Rollback()
		e.drain()
		e.wantNotStored(res.ID)
		e.wantNoSignals()
	})
	t.Run("TaskOff", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, f)
		immediate(t, e, e.task(tasks.WithEnqueueOnCommit(false)))
	})
	t.Run("BackendOff", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, f, tasks.WithDefaultEnqueueOnCommit(false))
		if e.h.Backend.EnqueueOnCommit() {
			t.Fatal("EnqueueOnCommit() = true with WithDefaultEnqueueOnCommit(false)")
		}
		immediate(t, e, e.task())
	})
	t.Run("BackendOffTaskOn", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, f, tasks.WithDefaultEnqueueOnCommit(false))
		h, res := deferred(t, e, e.task(tasks.WithEnqueueOnCommit(true)))
		committed(t, e, h, res)
	})
	t.Run("Many", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, f)
		h := tasks.NewTxHooks(nil)
		rs, err := e.task().EnqueueMany(tasks.ContextWithTx(e.ctx, h), []args{{Mode: modeOK, N: 1}, {Mode: modeOK, N: 2}, {Mode: modeOK, N: 3}})
		if err != nil || len(rs) != 3 {
			t.Fatalf("EnqueueMany in a transaction = %d results, %v", len(rs), err)
		}
		e.wantNoSignals()
		if err := h.Commit(e.ctx); err != nil {
			t.Fatalf("Commit: %v", err)
		}
		eventually(t, "3 TaskEnqueued", func() bool { return e.rec.count(sigEnqueued, "") >= 3 })
		for i, r := range rs {
			e.finish(r)
			if v, err := r.Value(); err != nil || v.N != 2*(i+1) {
				t.Errorf("result %d: Value() = %+v, %v", i, v, err)
			}
		}
		if n := e.rec.count(sigEnqueued, ""); n != 3 {
			t.Errorf("%d TaskEnqueued signals, want 3", n)
		}
	})
}

// testTransaction: with CanTransact, Enqueue inside the backend's own
// transaction is committed or rolled back with it, and TaskEnqueued is sent
// only after the commit.
func testTransaction(t *testing.T, f Factory) {
	probe := newEnv(t, f)
	if !probe.has(tasks.CanTransact) {
		t.Skip("no CanTransact")
	}
	if probe.h.BeginTx == nil {
		t.Skip("the backend claims CanTransact but the harness has no BeginTx")
	}
	for _, c := range []struct {
		name   string
		commit bool
		opts   []tasks.Option
	}{
		{"Commit", true, nil},
		{"Rollback", false, nil},
		{"CommitOnCommitOff", true, []tasks.Option{tasks.WithEnqueueOnCommit(false)}},
		{"RollbackOnCommitOff", false, []tasks.Option{tasks.WithEnqueueOnCommit(false)}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, f)
			txCtx, commit, rollback := e.h.BeginTx(e.ctx)
			if j, ok := e.h.Backend.(tasks.TxJoiner); !ok || !j.JoinsTx(txCtx) {
				t.Errorf("the backend does not join the transaction of BeginTx (TxJoiner: %v)", ok)
			}
			res, err := e.task(c.opts...).Enqueue(txCtx, args{Mode: modeOK, N: 7})
			if err != nil {
				_ = rollback()
				t.Fatalf("Enqueue in the transaction: %v", err)
			}
			if n := e.rec.count(sigEnqueued, ""); n != 0 {
				t.Errorf("%d TaskEnqueued signals before the commit, want 0", n)
			}
			if !c.commit {
				if err := rollback(); err != nil {
					t.Fatalf("rollback: %v", err)
				}
				e.drain()
				e.wantNotStored(res.ID)
				e.wantNoSignals()
				return
			}
			if err := commit(); err != nil {
				t.Fatalf("commit: %v", err)
			}
			eventually(t, "TaskEnqueued after commit", func() bool { return e.rec.count(sigEnqueued, res.ID) > 0 })
			e.mustLookup(res.ID)
			e.finish(res)
			if v, err := res.Value(); err != nil || v.N != 14 {
				t.Errorf("Value() = %+v, %v; want N=14", v, err)
			}
			if n := e.rec.count(sigEnqueued, ""); n != 1 {
				t.Errorf("%d TaskEnqueued signals, want exactly 1", n)
			}
		})
	}
}

// testCheck: a fresh, well-configured backend passes its own Check.
func testCheck(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if err := e.h.Backend.Check(e.ctx); err != nil {
		t.Errorf("Check: %v", err)
	}
	if s := e.caps.String(); s == "" {
		t.Error("Capabilities().String() is empty")
	}
}

// testConcurrentEnqueue: enqueues from many goroutines all land.
func testConcurrentEnqueue(t *testing.T, f Factory) {
	e := newEnv(t, f)
	const workers, each = 4, 4
	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				res, err := e.task().Enqueue(e.ctx, args{Mode: modeOK, N: w*each + i})
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				ids = append(ids, res.ID)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Enqueue: %v", err)
	}
	e.drain()
	for _, id := range ids {
		if r := e.mustLookup(id); r.Status != tasks.StatusSuccessful {
			t.Errorf("%s: status %s, want SUCCESSFUL", id, r.Status)
		}
	}
	if n := e.rec.count(sigEnqueued, ""); n != workers*each {
		t.Errorf("%d TaskEnqueued signals, want %d", n, workers*each)
	}
}

// testTaskContext: a running task reads its tasks.TaskContext, right on the
// first attempt and (where the backend retries) on the second.
func testTaskContext(t *testing.T, f Factory) {
	e := newEnv(t, f, tasks.WithDefaultBackoff(tasks.ConstantBackoff(0)))
	key := e.key()
	attempts, maxAttempts, opts := 1, 1, []tasks.Option(nil)
	if e.has(tasks.CanRetry) {
		attempts, maxAttempts, opts = 2, 3, []tasks.Option{tasks.WithMaxAttempts(3)}
	}
	res := e.enqueue(e.task(opts...), args{Mode: modeContext, Key: key, Text: "ctx", N: attempts})
	e.finish(res)
	if res.Status != tasks.StatusSuccessful || res.Attempts != attempts {
		t.Fatalf("status %s after %d attempts (errors %+v), want SUCCESSFUL after %d", res.Status, res.Attempts, res.Errors, attempts)
	}
	if _, ok := tasks.FromContext(e.ctx); ok {
		t.Error("FromContext outside a task: ok = true")
	}
	v, _ := seenContexts.Load(key)
	if v == nil {
		t.Fatal("the task never ran")
	}
	type view struct {
		OK, Logger, HasLogger                 bool
		ResultID, TaskName, Queue, Backend    string
		WorkerID, Running                     string
		Attempt, MaxAttempts                  int
		EnqueuedAt, StartedAt, AttemptStarted time.Time
	}
	var want, got []view
	for i, sc := range v.(*contextLog).all() {
		tc := sc.tc
		got = append(got, view{sc.ok, sc.logger, tc.Logger != nil, tc.ResultID, tc.TaskName, tc.Queue, tc.BackendName,
			tc.WorkerID, sc.running, tc.Attempt, tc.MaxAttempts, tc.EnqueuedAt, tc.StartedAt, tc.AttemptStartedAt})
		w := view{true, true, true, res.ID, workTask.Name(), res.Queue, e.name, "", e.name, i + 1, maxAttempts,
			res.EnqueuedAt, *res.StartedAt, tc.AttemptStartedAt}
		if i < len(res.WorkerIDs) {
			w.WorkerID = res.WorkerIDs[i]
		}
		switch i {
		case 0:
			w.AttemptStarted = *res.StartedAt
		case attempts - 1:
			w.AttemptStarted = *res.LastAttemptedAt
		}
		want = append(want, w)
	}
	if len(got) != attempts {
		t.Errorf("the task saw %d attempts, want %d", len(got), attempts)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("task contexts by attempt (-want +got):\n%s", d)
	}
}

// testNoRetry: a task that returns tasks.NoRetry(err) is FAILED after one
// attempt whatever attempts are left, with err recorded as itself.
func testNoRetry(t *testing.T, f Factory) {
	e := newEnv(t, f, tasks.WithDefaultBackoff(tasks.ConstantBackoff(0)))
	res := e.enqueue(e.task(tasks.WithMaxAttempts(3)), args{Mode: modeNoRetry, Text: "nr"})
	e.finish(res)
	if res.Status != tasks.StatusFailed || res.Attempts != 1 || len(res.Errors) != 1 {
		t.Fatalf("status %s, attempts %d, errors %+v; want FAILED after 1 attempt with 1 error", res.Status, res.Attempts, res.Errors)
	}
	type rec struct {
		Attempt       int
		Type, Message string
	}
	te := res.Errors[0]
	want := rec{1, failureType, "mode no-retry: backendtest: failing on purpose: nr"}
	if d := cmp.Diff(want, rec{te.Attempt, te.Type, te.Message}); d != "" {
		t.Errorf("Errors[0] (-want +got):\n%s", d)
	}
}

// testSnooze: on a backend with Defer, a task that returns tasks.Snooze(d)
// is READY again, due d later, with the attempt not counted and no error
// recorded; then it runs again. An inline backend (no Defer) records the
// snooze as a failure that says the backend cannot defer.
func testSnooze(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !e.has(tasks.CanDefer) {
		if !e.inline() {
			t.Skip("a backend that runs tasks later but cannot defer them: nothing to check")
		}
		res := e.enqueue(e.task(), args{Mode: modeSnooze, Key: e.key(), N: 60})
		e.finish(res)
		if res.Status != tasks.StatusFailed || res.Attempts != 1 || len(res.Errors) != 1 {
			t.Fatalf("status %s, attempts %d, errors %+v; want FAILED after 1 attempt with 1 error", res.Status, res.Attempts, res.Errors)
		}
		if te := res.Errors[0]; te.Type != "*tasks.SnoozeError" || !strings.Contains(te.Message, "cannot defer") {
			t.Errorf("error %+v, want a *tasks.SnoozeError saying the backend cannot defer", te)
		}
		return
	}
	t.Run("Later", func(t *testing.T) {
		res := e.enqueue(e.task(tasks.WithMaxAttempts(1)), args{Mode: modeSnooze, Key: e.key(), N: 3600})
		before := time.Now()
		e.drain()
		e.refresh(res)
		after := time.Now()
		if res.Status != tasks.StatusReady || res.Attempts != 0 || len(res.Errors) != 0 || res.FinishedAt != nil {
			t.Fatalf("status %s, attempts %d, errors %+v, finished %v; want READY, 0 attempts, no error, not finished",
				res.Status, res.Attempts, res.Errors, res.FinishedAt)
		}
		if res.RunAfter.Before(before.Add(time.Hour-time.Second)) || res.RunAfter.After(after.Add(time.Hour+time.Second)) {
			t.Errorf("RunAfter = %v, want an hour after the attempt (%v)", res.RunAfter, before)
		}
		wantSeq := []string{sigEnqueued + " READY", sigStarted + " RUNNING", sigFinished + " READY"}
		eventually(t, "the snoozed task's signals", func() bool { return len(e.rec.seq(res.ID)) >= len(wantSeq) })
		if d := cmp.Diff(wantSeq, e.rec.seq(res.ID)); d != "" {
			t.Errorf("signals (-want +got):\n%s", d)
		}
	})
	t.Run("AtOnce", func(t *testing.T) {
		// Snoozed for 0 on its only attempt (MaxAttempts 1): the snooze did
		// not use it up. Drain may leave it for its next call.
		res := e.enqueue(e.task(tasks.WithMaxAttempts(1)), args{Mode: modeSnooze, Key: e.key(), Text: "woke"})
		for i := 0; i < 3 && !res.Status.Finished(); i++ {
			e.drain()
			e.refresh(res)
		}
		if res.Status != tasks.StatusSuccessful || res.Attempts != 1 || len(res.Errors) != 0 {
			t.Fatalf("status %s, attempts %d, errors %+v; want SUCCESSFUL after 1 counted attempt, no error",
				res.Status, res.Attempts, res.Errors)
		}
		if n := e.rec.count(sigStarted, res.ID); n != 2 {
			t.Errorf("%d TaskStarted signals, want 2 (the snoozed run and the next)", n)
		}
	})
}

// testFollowUp: a task that enqueues another task without a backend of its
// own enqueues it to the backend running it (not to "default"): deferred
// where the backend can defer (a READY row of the same backend), else run
// by the same backend.
func testFollowUp(t *testing.T, f Factory) {
	e := newEnv(t, f)
	delay := 0
	if e.has(tasks.CanDefer) {
		delay = 3600 // the implicit default backend could not defer it
	}
	res := e.enqueue(e.task(), args{Mode: modeFollowUp, N: delay})
	e.finish(res)
	if res.Status != tasks.StatusSuccessful {
		t.Fatalf("status %s (errors %+v), want SUCCESSFUL", res.Status, res.Errors)
	}
	v, _ := res.Value()
	fu := e.mustLookup(v.Echo)
	if fu.TaskName != otherTask.Name() || fu.Backend != e.name {
		t.Errorf("follow-up: task %q on backend %q, want %q on %q", fu.TaskName, fu.Backend, otherTask.Name(), e.name)
	}
	switch {
	case delay > 0:
		if fu.Status != tasks.StatusReady || fu.RunAfter.Before(time.Now().Add(59*time.Minute)) {
			t.Errorf("follow-up: status %s, run-after %v; want READY, an hour from now", fu.Status, fu.RunAfter)
		}
	default: // run inline, or by the same Drain (it was due)
		if fu.Status != tasks.StatusSuccessful {
			t.Errorf("follow-up: status %s, want SUCCESSFUL", fu.Status)
		}
	}
	if n := e.rec.count(sigEnqueued, fu.ID); n != 1 {
		t.Errorf("follow-up: %d TaskEnqueued signals from the backend, want 1", n)
	}
}
