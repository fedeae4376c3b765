package dummy_test

import (
	"context"
	"errors"
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
	want := tasks.CanDefer | tasks.CanPriority | tasks.CanGetResult | tasks.CanCancel | tasks.CanBulkEnqueue | tasks.CanTimeout
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
