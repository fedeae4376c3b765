package dummy_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/backendtest"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
		b := dummy.New(opts...)
		return &backendtest.Harness{
			Backend: b,
			Drain: func(ctx context.Context) error {
				_, err := b.RunReady(ctx)
				return err
			},
		}
	})
}

type mailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

var sent atomic.Int64

var sendMail = tasks.Define("dummy_test.send_mail", func(_ context.Context, a mailArgs) (string, error) {
	sent.Add(1)
	return "sent to " + a.To, nil
})

var otherTask = tasks.Define("dummy_test.other", func(context.Context, int) (int, error) { return 0, nil })

// newBackend returns a registered dummy backend named after t.
func newBackend(t *testing.T, opts ...tasks.BackendOption) (*dummy.Backend, string) {
	t.Helper()
	name := "dummy-" + t.Name()
	b := dummy.New(append([]tasks.BackendOption{tasks.WithName(name)}, opts...)...)
	t.Cleanup(tasks.RegisterBackend(b))
	return b, name
}

func TestCapabilities(t *testing.T) {
	want := tasks.CanDefer | tasks.CanPriority | tasks.CanGetResult | tasks.CanCancel | tasks.CanBulkEnqueue | tasks.CanTimeout | tasks.CanUnique
	if got := dummy.New().Capabilities(); got != want {
		t.Errorf("Capabilities() = %v, want %v", got, want)
	}
}

// TestNeverRunsByItself: enqueueing stores READY results and runs nothing.
func TestNeverRunsByItself(t *testing.T) {
	b, name := newBackend(t)
	before := sent.Load()
	res, err := sendMail.Using(tasks.WithBackend(name)).Enqueue(t.Context(), mailArgs{To: "a@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != tasks.StatusReady {
		t.Errorf("Status = %s, want READY", res.Status)
	}
	if got := sent.Load(); got != before {
		t.Errorf("the task body ran %d times on Enqueue", got-before)
	}
	if n := len(b.Results()); n != 1 {
		t.Errorf("Results() has %d entries, want 1", n)
	}
}

// TestResultsAndClear: Results lists copies in enqueue order; Clear empties.
func TestResultsAndClear(t *testing.T) {
	b, name := newBackend(t)
	ctx := t.Context()
	task := sendMail.Using(tasks.WithBackend(name))
	var ids []string
	for _, to := range []string{"a", "b", "c"} {
		res, err := task.Enqueue(ctx, mailArgs{To: to})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}
	rs := b.Results()
	var got []string
	for _, r := range rs {
		got = append(got, r.ID)
	}
	if d := cmp.Diff(ids, got); d != "" {
		t.Errorf("Results() ids (-want +got):\n%s", d)
	}
	// Results returns copies.
	rs[0].Status = tasks.StatusFailed
	rs[0].Args[0] = 'X'
	if r, _ := b.GetResult(ctx, ids[0]); r.Status != tasks.StatusReady || r.Args[0] != '{' {
		t.Errorf("mutating Results() changed the store: %s %s", r.Status, r.Args)
	}
	b.Clear()
	if n := len(b.Results()); n != 0 {
		t.Errorf("Results() after Clear has %d entries", n)
	}
	if _, err := b.GetResult(ctx, ids[0]); !errors.Is(err, tasks.ErrResultNotFound) {
		t.Errorf("GetResult after Clear: %v, want ErrResultNotFound", err)
	}
	if n, err := b.RunAll(ctx); n != 0 || err != nil {
		t.Errorf("RunAll after Clear = %d, %v; want 0, nil", n, err)
	}
	// The backend is usable after Clear.
	if _, err := task.Enqueue(ctx, mailArgs{To: "d"}); err != nil {
		t.Fatal(err)
	}
	if n := len(b.Results()); n != 1 {
		t.Errorf("Results() after Clear and Enqueue has %d entries, want 1", n)
	}
}

// TestEnqueued: the typed helper returns this task's jobs with decoded args.
func TestEnqueued(t *testing.T) {
	b, name := newBackend(t)
	ctx := t.Context()
	in := []mailArgs{{To: "a@example.com", Subject: "hi"}, {To: "b@example.com", Subject: "yo"}}
	if _, err := sendMail.Using(tasks.WithBackend(name)).Enqueue(ctx, in[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := otherTask.Using(tasks.WithBackend(name)).Enqueue(ctx, 7); err != nil {
		t.Fatal(err)
	}
	if _, err := sendMail.Using(tasks.WithBackend(name), tasks.WithPriority(3)).Enqueue(ctx, in[1]); err != nil {
		t.Fatal(err)
	}
	jobs, err := dummy.Enqueued(ctx, b, sendMail)
	if err != nil {
		t.Fatal(err)
	}
	var got []mailArgs
	for _, j := range jobs {
		got = append(got, j.Args)
		if j.Result.TaskName != sendMail.Name() || j.Result.Status != tasks.StatusReady {
			t.Errorf("job result: %s %s", j.Result.TaskName, j.Result.Status)
		}
	}
	if d := cmp.Diff(in, got); d != "" {
		t.Errorf("Enqueued args (-want +got):\n%s", d)
	}
	if len(jobs) == 2 && jobs[1].Result.Priority != 3 {
		t.Errorf("second job priority = %d, want 3", jobs[1].Result.Priority)
	}
	others, err := dummy.Enqueued(ctx, b, otherTask)
	if err != nil || len(others) != 1 || others[0].Args != 7 {
		t.Errorf("Enqueued(otherTask) = %+v, %v; want one job with args 7", others, err)
	}
	// After running, the typed results carry the value.
	if _, err := b.RunReady(ctx); err != nil {
		t.Fatal(err)
	}
	jobs, err = dummy.Enqueued(ctx, b, sendMail)
	if err != nil || len(jobs) != 2 {
		t.Fatalf("Enqueued after RunReady = %d jobs, %v", len(jobs), err)
	}
	if v, err := jobs[0].Result.Value(); err != nil || v != "sent to a@example.com" {
		t.Errorf("Value() = %q, %v", v, err)
	}
}

// TestRunReadyAndRunAll: RunReady leaves deferred tasks, RunAll runs them.
func TestRunReadyAndRunAll(t *testing.T) {
	b, name := newBackend(t)
	ctx := t.Context()
	task := sendMail.Using(tasks.WithBackend(name))
	now, err := task.Enqueue(ctx, mailArgs{To: "now"})
	if err != nil {
		t.Fatal(err)
	}
	later, err := task.Using(tasks.WithDelay(time.Hour)).Enqueue(ctx, mailArgs{To: "later"})
	if err != nil {
		t.Fatal(err)
	}
	muchLater, err := task.Using(tasks.WithRunAfter(time.Now().Add(48*time.Hour)), tasks.WithPriority(50)).Enqueue(ctx, mailArgs{To: "much later"})
	if err != nil {
		t.Fatal(err)
	}
	var started []string
	t.Cleanup(signals.TaskStarted.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if sender == name {
			started = append(started, r.ID)
		}
	}))
	if n, err := b.RunReady(ctx); n != 1 || err != nil {
		t.Fatalf("RunReady = %d, %v; want 1, nil", n, err)
	}
	status := func() []tasks.Status {
		var s []tasks.Status
		for _, id := range []string{now.ID, later.ID, muchLater.ID} {
			r, err := b.GetResult(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			s = append(s, r.Status)
		}
		return s
	}
	if d := cmp.Diff([]tasks.Status{tasks.StatusSuccessful, tasks.StatusReady, tasks.StatusReady}, status()); d != "" {
		t.Errorf("after RunReady (-want +got):\n%s", d)
	}
	if n, err := b.RunReady(ctx); n != 0 || err != nil {
		t.Errorf("second RunReady = %d, %v; want 0, nil", n, err)
	}
	if n, err := b.RunAll(ctx); n != 2 || err != nil {
		t.Fatalf("RunAll = %d, %v; want 2, nil", n, err)
	}
	if d := cmp.Diff([]tasks.Status{tasks.StatusSuccessful, tasks.StatusSuccessful, tasks.StatusSuccessful}, status()); d != "" {
		t.Errorf("after RunAll (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{now.ID, muchLater.ID, later.ID}, started); d != "" {
		t.Errorf("start order: now, then priority 50, then priority 0 (-want +got):\n%s", d)
	}
}

// TestRunReadyStopsOnCancelledContext returns the context's error.
func TestRunReadyStopsOnCancelledContext(t *testing.T) {
	b, name := newBackend(t)
	if _, err := sendMail.Using(tasks.WithBackend(name)).Enqueue(t.Context(), mailArgs{To: "x"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if n, err := b.RunReady(ctx); n != 0 || !errors.Is(err, context.Canceled) {
		t.Errorf("RunReady with a cancelled context = %d, %v; want 0, context.Canceled", n, err)
	}
	if r := b.Results()[0]; r.Status != tasks.StatusReady {
		t.Errorf("status %s, want READY", r.Status)
	}
}

// TestConcurrentUse exercises every method from many goroutines (run with
// -race).
func TestConcurrentUse(t *testing.T) {
	b, name := newBackend(t)
	ctx := t.Context()
	task := sendMail.Using(tasks.WithBackend(name))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				res, err := task.Enqueue(ctx, mailArgs{To: "c"})
				if err != nil {
					t.Error(err)
					return
				}
				switch (g + i) % 5 {
				case 0:
					_ = res.Cancel(ctx)
				case 1:
					_, _ = b.RunReady(ctx)
				case 2:
					_ = b.Results()
				case 3:
					_, _ = dummy.Enqueued(ctx, b, sendMail)
				case 4:
					_, _ = b.GetResult(ctx, res.ID)
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			_, _ = b.EnqueueMany(ctx, nil)
			_ = b.Check(ctx)
		}
	})
	wg.Wait()
	if _, err := b.RunAll(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(b.Results()); n != 8*20 {
		t.Errorf("%d results, want %d", n, 8*20)
	}
	for _, r := range b.Results() {
		if r.Status != tasks.StatusSuccessful && r.Status != tasks.StatusCancelled {
			t.Errorf("%s: status %s", r.ID, r.Status)
		}
	}
	b.Clear()
}

// TestAllowedQueuesCheck: Check reports a bad queue name.
func TestAllowedQueuesCheck(t *testing.T) {
	b := dummy.New(tasks.WithName("dummy-check"), tasks.WithAllowedQueues("ok", "bad,name"))
	if err := b.Check(t.Context()); !errors.Is(err, tasks.ErrInvalidBackend) {
		t.Errorf("Check: %v, want ErrInvalidBackend", err)
	}
}

// gates lets a gatedTask block until the test releases it.
var gates sync.Map // key → chan struct{}

var gatedTask = tasks.Define("dummy_test.gated", func(ctx context.Context, key string) (int, error) {
	ch, _ := gates.Load(key)
	select {
	case <-ch.(chan struct{}):
		return 1, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})

// TestClearWhileRunning: a task that finishes after Clear is not stored
// again.
func TestClearWhileRunning(t *testing.T) {
	b, name := newBackend(t)
	ctx := t.Context()
	release := make(chan struct{})
	gates.Store(name, release)
	started := make(chan struct{})
	t.Cleanup(signals.TaskStarted.Connect(func(_ context.Context, sender string, _ *tasks.RawResult) {
		if sender == name {
			close(started)
		}
	}))
	res, err := gatedTask.Using(tasks.WithBackend(name)).Enqueue(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := b.RunReady(ctx); done <- err }()
	<-started
	b.Clear()
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := b.GetResult(ctx, res.ID); !errors.Is(err, tasks.ErrResultNotFound) {
		t.Errorf("GetResult of a result cleared while it ran: %v, want ErrResultNotFound", err)
	}
	if n := len(b.Results()); n != 0 {
		t.Errorf("Results() has %d entries after Clear", n)
	}
}

// myErr has a pointer receiver: a nil *myErr is not a nil error.
type myErr struct{ msg string }

func (e *myErr) Error() string { return e.msg }

var misbehave = tasks.Define("dummy_test.misbehave", func(_ context.Context, mode string) (int, error) {
	switch mode {
	case "typed-nil":
		var e *myErr
		return 0, e
	case "panic":
		panic("dummy_test panic")
	case "goexit":
		runtime.Goexit()
	}
	return 1, nil
})

// TestMisbehavingTasks: RunReady records a task that returns a typed nil
// error, panics or calls runtime.Goexit as FAILED, with its TaskFinished
// signal, and never returns or raises the failure.
func TestMisbehavingTasks(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		mode     string
		wantType string
		wantMsg  string
	}{
		{"typed-nil", "*tasks.BadErrorValue", "a nil *dummy_test.myErr is not a nil error"},
		{"panic", "panic", "dummy_test panic"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			t.Parallel()
			b, name := newBackend(t)
			finished := finishedSignals(t, name)
			res, err := misbehave.Using(tasks.WithBackend(name)).Enqueue(t.Context(), c.mode)
			if err != nil {
				t.Fatal(err)
			}
			if n, err := b.RunReady(t.Context()); n != 1 || err != nil {
				t.Fatalf("RunReady = %d, %v; want 1, nil", n, err)
			}
			if err := res.Refresh(t.Context()); err != nil {
				t.Fatal(err)
			}
			if res.Status != tasks.StatusFailed || len(res.Errors) != 1 {
				t.Fatalf("result %s with errors %+v, want FAILED with one error", res.Status, res.Errors)
			}
			if te := res.Errors[0]; te.Type != c.wantType || !strings.Contains(te.Message, c.wantMsg) {
				t.Errorf("Errors[0] = %s: %q, want %s saying %q", te.Type, te.Message, c.wantType, c.wantMsg)
			}
			if c.mode == "panic" && !strings.Contains(res.Errors[0].Stack, "dummy_test") {
				t.Errorf("the stack of the panic does not show the task:\n%s", res.Errors[0].Stack)
			}
			if d := cmp.Diff([]string{res.ID + " FAILED"}, finished()); d != "" {
				t.Errorf("TaskFinished signals (-want +got):\n%s", d)
			}
		})
	}

	// The task's runtime.Goexit ends the goroutine that called RunReady,
	// as it would without a backend; the result is recorded first, and the
	// tasks after it wait for the next RunReady.
	t.Run("runtime.Goexit", func(t *testing.T) {
		t.Parallel()
		b, name := newBackend(t)
		finished := finishedSignals(t, name)
		task := misbehave.Using(tasks.WithBackend(name))
		goexit, err := task.Using(tasks.WithPriority(10)).Enqueue(t.Context(), "goexit")
		if err != nil {
			t.Fatal(err)
		}
		next, err := task.Enqueue(t.Context(), "ok")
		if err != nil {
			t.Fatal(err)
		}
		returned := false
		done := make(chan struct{})
		go func() {
			defer close(done) // also when the goroutine exits by runtime.Goexit
			_, _ = b.RunReady(t.Context())
			returned = true
		}()
		<-done
		if returned {
			t.Error("RunReady returned after a task called runtime.Goexit")
		}
		if err := goexit.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if goexit.Status != tasks.StatusFailed || len(goexit.Errors) != 1 || !strings.Contains(goexit.Errors[0].Message, "runtime.Goexit") {
			t.Errorf("result %s with errors %+v, want FAILED with an error naming runtime.Goexit", goexit.Status, goexit.Errors)
		}
		if d := cmp.Diff([]string{goexit.ID + " FAILED"}, finished()); d != "" {
			t.Errorf("TaskFinished signals (-want +got):\n%s", d)
		}
		if n, err := b.RunReady(t.Context()); n != 1 || err != nil {
			t.Fatalf("the next RunReady = %d, %v; want 1, nil", n, err)
		}
		if err := next.Refresh(t.Context()); err != nil || next.Status != tasks.StatusSuccessful {
			t.Errorf("the task after it: %s, %v; want SUCCESSFUL", next.Status, err)
		}
	})
}

// finishedSignals records the TaskFinished signals of the backend name as
// "id STATUS"; the returned function reads them.
func finishedSignals(t *testing.T, name string) func() []string {
	var mu sync.Mutex
	var got []string
	t.Cleanup(signals.TaskFinished.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if sender == name {
			mu.Lock()
			got = append(got, r.ID+" "+string(r.Status))
			mu.Unlock()
		}
	}))
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
}

var snoozeRuns atomic.Int64

// alwaysSnoozes snoozes every attempt: RunAll must not loop on it.
var alwaysSnoozes = tasks.Define("dummy_test.always_snoozes", func(context.Context, int) (int, error) {
	snoozeRuns.Add(1)
	return 0, tasks.Snooze(0)
})

// chain enqueues sendMail (no backend of its own) while it runs.
var chain = tasks.Define("dummy_test.chain", func(ctx context.Context, to string) (string, error) {
	res, err := sendMail.Enqueue(ctx, mailArgs{To: to})
	if err != nil {
		return "", err
	}
	return res.ID, nil
})

// TestSnoozeAndFollowUps: RunReady and RunAll run each task at most once
// per call, so a task that keeps snoozing stays READY (its attempt not
// counted) instead of looping; tasks enqueued during the call run in it.
func TestSnoozeAndFollowUps(t *testing.T) {
	t.Run("Snooze", func(t *testing.T) {
		b, name := newBackend(t)
		res, err := alwaysSnoozes.Using(tasks.WithBackend(name)).Enqueue(t.Context(), 1)
		if err != nil {
			t.Fatal(err)
		}
		before := snoozeRuns.Load()
		for _, run := range []func(context.Context) (int, error){b.RunReady, b.RunAll, b.RunAll} {
			if n, err := run(t.Context()); n != 1 || err != nil {
				t.Fatalf("run: %d, %v; want 1 attempt", n, err)
			}
		}
		if got := snoozeRuns.Load() - before; got != 3 {
			t.Errorf("the task ran %d times in three calls, want 3", got)
		}
		if err := res.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		if res.Status != tasks.StatusReady || res.Attempts != 0 || len(res.Errors) != 0 || len(res.WorkerIDs) != 3 {
			t.Errorf("status %s, attempts %d, errors %v, worker ids %d; want READY, 0, none, 3",
				res.Status, res.Attempts, res.Errors, len(res.WorkerIDs))
		}
	})
	t.Run("FollowUp", func(t *testing.T) {
		b, name := newBackend(t) // not "default": the follow-up goes to b all the same
		res, err := chain.Using(tasks.WithBackend(name)).Enqueue(t.Context(), "x@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if n, err := b.RunReady(t.Context()); n != 2 || err != nil {
			t.Fatalf("RunReady: %d, %v; want 2 (the task and its follow-up)", n, err)
		}
		if err := res.Refresh(t.Context()); err != nil {
			t.Fatal(err)
		}
		id, err := res.Value()
		if err != nil {
			t.Fatal(err)
		}
		fu, err := b.GetResult(t.Context(), id)
		if err != nil {
			t.Fatalf("the follow-up is not in the backend that ran its parent: %v", err)
		}
		if fu.Status != tasks.StatusSuccessful || fu.Backend != name {
			t.Errorf("follow-up: %s on %q, want SUCCESSFUL on %q", fu.Status, fu.Backend, name)
		}
	})
}

// TestQueueDepths: per queue, the READY tasks due and deferred, the RUNNING
// ones and the oldest due; finished tasks are left out.
func TestQueueDepths(t *testing.T) {
	b, name := newBackend(t)
	ctx := t.Context()
	if ds, err := b.QueueDepths(ctx); err != nil || ds != nil {
		t.Fatalf("QueueDepths of an empty backend = %v, %v; want none", ds, err)
	}
	var dr tasks.DepthReader = b
	now := time.Now().UTC()
	older, old := now.Add(-2*time.Hour), now.Add(-time.Hour)
	enqueue := func(queue string, opts ...tasks.Option) *tasks.Result[string] {
		t.Helper()
		res, err := sendMail.Using(append([]tasks.Option{tasks.WithBackend(name), tasks.WithQueue(queue)}, opts...)...).
			Enqueue(ctx, mailArgs{To: queue})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	enqueue("mail", tasks.WithRunAfter(old))
	enqueue("mail", tasks.WithRunAfter(older))
	enqueue("mail") // due now
	enqueue("mail", tasks.WithRunAfter(now.Add(time.Hour)))
	enqueue("reports", tasks.WithRunAfter(now.Add(time.Hour)))
	if err := enqueue("cancelled").Cancel(ctx); err != nil {
		t.Fatal(err)
	}

	// A task held RUNNING: claimed first (highest priority), it blocks the
	// RunReady call until released.
	release := make(chan struct{})
	gates.Store(name, release)
	started := make(chan struct{})
	t.Cleanup(signals.TaskStarted.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if sender == name && r.TaskName == gatedTask.Name() {
			close(started)
		}
	}))
	if _, err := gatedTask.Using(tasks.WithBackend(name), tasks.WithQueue("slow"), tasks.WithPriority(100)).
		Enqueue(ctx, name); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := b.RunReady(ctx); done <- err }()
	<-started
	got, err := dr.QueueDepths(ctx)
	close(release)
	if err != nil {
		t.Fatal(err)
	}
	want := []tasks.QueueDepth{
		{Queue: "mail", Ready: 3, Scheduled: 1, OldestDue: older},
		{Queue: "reports", Scheduled: 1},
		{Queue: "slow", Running: 1},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("QueueDepths while a task runs (-want +got):\n%s", d)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err = b.QueueDepths(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want = []tasks.QueueDepth{{Queue: "mail", Scheduled: 1}, {Queue: "reports", Scheduled: 1}}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("QueueDepths after RunReady (-want +got):\n%s", d)
	}
}
