package backendtest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// The unique-task tests (tasks.WithUnique).

// withSuccessful is READY, RUNNING and SUCCESSFUL: a finished task stays a
// duplicate, so the tests hold on backends that run tasks during Enqueue.
var withSuccessful = []tasks.Status{tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful}

// uniqueOrSkip checks that a backend without CanUnique rejects WithUnique
// with ErrInvalidTask, and reports whether the backend has it.
func uniqueOrSkip(t *testing.T, e *env) bool {
	t.Helper()
	if e.has(tasks.CanUnique) {
		return true
	}
	_, err := e.task(tasks.WithUnique(tasks.UniqueOpts{Key: e.key()})).Enqueue(e.ctx, args{Mode: modeOK})
	if !errors.Is(err, tasks.ErrInvalidTask) {
		t.Errorf("WithUnique without CanUnique: err = %v, want ErrInvalidTask", err)
	}
	return false
}

// dupe describes a handle: its id and whether it is a duplicate.
type dupe struct {
	ID        string
	Duplicate bool
}

// testUnique: a unique task enqueued while one with its key is READY (or,
// on an inline backend, kept SUCCESSFUL) returns that one; the parts of
// the key (args, queue, period, explicit key) separate tasks; invalid
// statuses are ErrInvalidTask.
func testUnique(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !uniqueOrSkip(t, e) {
		return
	}
	statuses := []tasks.Status(nil) // the default: READY and RUNNING
	if e.inline() {
		statuses = withSuccessful // the first one has finished by the second
	}
	u := func(o tasks.UniqueOpts) tasks.Option { o.Statuses = statuses; return tasks.WithUnique(o) }

	// The same key: one task, the second handle a duplicate of the first.
	k := e.key()
	first := e.enqueue(e.task(u(tasks.UniqueOpts{Key: k})), args{Mode: modeOK, N: 1})
	second := e.enqueue(e.task(u(tasks.UniqueOpts{Key: k})), args{Mode: modeOK, N: 2})
	if d := cmp.Diff([]dupe{{first.ID, false}, {first.ID, true}},
		[]dupe{{first.ID, first.Duplicate}, {second.ID, second.Duplicate}}); d != "" {
		t.Errorf("the same key (-want +got):\n%s", d)
	}
	if a, err := workTask.DecodeArgs(second.Args); err != nil || second.Status != first.Status || a.N != 1 {
		t.Errorf("duplicate: status %s args %s, want the first's (%s, N 1)", second.Status, second.Args, first.Status)
	}

	// Each part separates keys: two tasks, then a duplicate of the first.
	hour := time.Now().UTC().Truncate(time.Hour)
	for _, c := range []struct {
		name       string
		o          tasks.UniqueOpts
		a, b       *tasks.Task[args, out]
		argA, argB args
	}{
		{"by args", tasks.UniqueOpts{ByArgs: true, Key: e.key()}, nil, nil, args{Mode: modeOK, N: 1}, args{Mode: modeOK, N: 2}},
		{"by queue", tasks.UniqueOpts{ByQueue: true, Key: e.key()}, e.task(tasks.WithQueue("unique-a")), e.task(tasks.WithQueue("unique-b")),
			args{Mode: modeOK}, args{Mode: modeOK}},
		{"explicit key", tasks.UniqueOpts{Key: e.key()}, nil, nil, args{Mode: modeOK}, args{Mode: modeOK}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ta, tb := c.a, c.b
			if ta == nil {
				ta, tb = e.task(), e.task()
			}
			ob := c.o
			if c.name == "explicit key" {
				ob.Key += "-other"
			}
			ra := e.enqueue(ta.Using(u(c.o)), c.argA)
			rb := e.enqueue(tb.Using(u(ob)), c.argB)
			again := e.enqueue(ta.Using(u(c.o)), c.argA)
			if d := cmp.Diff([]dupe{{ra.ID, false}, {rb.ID, false}, {ra.ID, true}},
				[]dupe{{ra.ID, ra.Duplicate}, {rb.ID, rb.Duplicate}, {again.ID, again.Duplicate}}); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
			if ra.ID == rb.ID {
				t.Errorf("different keys gave the same task %s", ra.ID)
			}
		})
	}
	t.Run("by period", func(t *testing.T) {
		o := u(tasks.UniqueOpts{ByPeriod: time.Hour, Key: e.key()})
		ra := e.enqueue(e.task(o), args{Mode: modeOK})
		rb := e.enqueue(e.task(o), args{Mode: modeOK})
		if !time.Now().UTC().Truncate(time.Hour).Equal(hour) {
			t.Skip("the hour changed during the test")
		}
		if d := cmp.Diff(dupe{ra.ID, true}, dupe{rb.ID, rb.Duplicate}); d != "" {
			t.Errorf("the same hour (-want +got):\n%s", d)
		}
	})
	t.Run("in one batch", func(t *testing.T) {
		rs, err := e.task(u(tasks.UniqueOpts{Key: e.key()})).EnqueueMany(e.ctx, []args{{Mode: modeOK, N: 1}, {Mode: modeOK, N: 2}})
		if err != nil {
			t.Fatalf("EnqueueMany: %v", err)
		}
		if d := cmp.Diff([]dupe{{rs[0].ID, false}, {rs[0].ID, true}},
			[]dupe{{rs[0].ID, rs[0].Duplicate}, {rs[1].ID, rs[1].Duplicate}}); d != "" {
			t.Errorf("(-want +got):\n%s", d)
		}
	})
	t.Run("invalid statuses", func(t *testing.T) {
		for _, ss := range [][]tasks.Status{
			{tasks.StatusReady},
			{tasks.StatusRunning, tasks.StatusSuccessful},
			{tasks.StatusReady, tasks.StatusRunning, "DONE"},
		} {
			_, err := e.task(tasks.WithUnique(tasks.UniqueOpts{Key: e.key(), Statuses: ss})).Enqueue(e.ctx, args{Mode: modeOK})
			if !errors.Is(err, tasks.ErrInvalidTask) {
				t.Errorf("statuses %v: err = %v, want ErrInvalidTask", ss, err)
			}
		}
	})
}

// testUniqueFinished: once the task with a key has finished SUCCESSFUL (not
// in the default statuses), the key makes a new task; with SUCCESSFUL among
// the statuses, the finished one is returned.
func testUniqueFinished(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !uniqueOrSkip(t, e) {
		return
	}
	k := e.key()
	task := e.task(tasks.WithUnique(tasks.UniqueOpts{Key: k}))
	first := e.enqueue(task, args{Mode: modeOK})
	e.finish(first)
	second := e.enqueue(task, args{Mode: modeOK})
	if second.Duplicate || second.ID == first.ID {
		t.Errorf("after SUCCESSFUL: id %s duplicate %v, want a new task (not %s)", second.ID, second.Duplicate, first.ID)
	}
	e.finish(second)

	kept := e.task(tasks.WithUnique(tasks.UniqueOpts{Key: e.key(), Statuses: withSuccessful}))
	done := e.enqueue(kept, args{Mode: modeOK})
	e.finish(done)
	again := e.enqueue(kept, args{Mode: modeOK})
	if d := cmp.Diff(dupe{done.ID, true}, dupe{again.ID, again.Duplicate}); d != "" {
		t.Errorf("SUCCESSFUL among the statuses (-want +got):\n%s", d)
	}
	if again.Status != tasks.StatusSuccessful {
		t.Errorf("duplicate status %s, want SUCCESSFUL", again.Status)
	}
}

// testUniqueConcurrent: 16 goroutines enqueue the same key at once; one
// task is stored, every handle has its id, all but one are duplicates, and
// one TaskEnqueued signal is sent.
func testUniqueConcurrent(t *testing.T, f Factory) {
	e := newEnv(t, f)
	if !uniqueOrSkip(t, e) {
		return
	}
	const n = 16
	task := e.task(tasks.WithUnique(tasks.UniqueOpts{Key: e.key(), Statuses: withSuccessful}))
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		res   [n]*tasks.Result[out]
		errs  [n]error
	)
	for i := range n {
		wg.Go(func() {
			<-start
			res[i], errs[i] = task.Enqueue(e.ctx, args{Mode: modeOK, N: i})
		})
	}
	close(start)
	wg.Wait()
	ids, dups := map[string]bool{}, 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Enqueue %d: %v", i, errs[i])
		}
		ids[res[i].ID] = true
		if res[i].Duplicate {
			dups++
		}
	}
	if len(ids) != 1 || dups != n-1 {
		t.Errorf("%d distinct ids and %d duplicates, want 1 and %d", len(ids), dups, n-1)
	}
	if c := e.rec.count(sigEnqueued, ""); c != 1 {
		t.Errorf("%d TaskEnqueued signals, want 1", c)
	}
}
