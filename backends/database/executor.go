package database

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// executor runs claimed tasks, each in a goroutine of its own, at most
// Concurrency at once, and hands every outcome to the completer. It is the
// database backend's side of the one attempt path (tasks.RunAttempt): what
// happens to a failed attempt is decided there, and recorded by the
// completer.
//
// Life-cycle: it has no loop of its own. Tasks start through run once the
// fetcher took a slot; drain waits for them (graceful stop), cancel cancels
// their context and hands them back (hard stop).
type executor struct {
	b          *Backend
	log        *slog.Logger
	attemptCfg tasks.AttemptConfig // read-only
	t          *tally
	outcomes   chan<- *outcome // to the completer; room for every claimed task

	// slots has capacity Concurrency: the fetcher sends before it starts a
	// task, the task's goroutine receives when the attempt ends.
	slots   chan struct{}
	running sync.WaitGroup // task goroutines

	// taskCtx is the parent of every attempt's context; cancelled by a hard
	// stop (cancel) and at the end of the worker's stop.
	taskCtx     context.Context
	cancelTasks context.CancelFunc
	hardStopped atomic.Bool // set by cancel before it cancels taskCtx
	handedBack  atomic.Bool // a task goroutine handed its task back
}

func newExecutor(b *Backend, cfg WorkerConfig, log *slog.Logger, t *tally, outcomes chan<- *outcome) *executor {
	e := &executor{
		b: b, log: log, t: t, outcomes: outcomes,
		slots: make(chan struct{}, cfg.Concurrency),
	}
	e.taskCtx, e.cancelTasks = context.WithCancel(context.Background())
	// The task's logger is the worker's configured one (RunAttempt adds the
	// worker id and backend with the task's attributes); its follow-ups go
	// to b; a failed attempt under a hard stop is handed back.
	taskLog := cfg.Logger
	if taskLog == nil {
		taskLog = log
	}
	e.attemptCfg = tasks.AttemptConfig{Backend: &b.BackendConfig, Retries: true, MaxRunTime: cfg.MaxRunTime, Now: now,
		Logger: taskLog, Running: b, HandBack: func() bool { return e.hardStopped.Load() && e.taskCtx.Err() != nil }}
	return e
}

// running returns how many tasks hold a slot.
func (e *executor) busy() int { return len(e.slots) }

// run starts r, whose slot the caller took (e.slots <- struct{}{}).
func (e *executor) run(r *row) {
	e.running.Add(1)
	go e.runTask(r)
}

// runTask runs one attempt of a claimed task and hands its outcome to the
// completer.
func (e *executor) runTask(r *row) {
	growStack()
	rec := &r.RawResult // this goroutine owns the claimed row
	if r.bad != nil {
		// A stored column the worker cannot read (a timestamp written by
		// hand): the task cannot be run as stored. It fails alone, for good;
		// the rest of its batch runs.
		e.finish(r, e.unreadable(r))
		return
	}
	// The signals of the previous attempt (or of the rescue) go first.
	e.b.order.await(e.taskCtx, r)
	signals.TaskStarted.Send(e.taskCtx, e.b.Name(), rec) // receivers get copies
	// finish runs when the attempt returns, and also when the task calls
	// runtime.Goexit: this goroutine then ends right after it.
	tasks.RunAttempt(e.taskCtx, rec, e.attemptCfg, func(a tasks.Attempt) { e.finish(r, a) })
}

// taskStackFrame is the stack frame growStack asks for: the stack grows
// from 2 KiB straight to 16 KiB, what the attempt path of a typical task
// (argument decoding with encoding/json, the middleware chain, the task,
// result encoding) needs; deeper tasks grow it further as usual.
const taskStackFrame = 8 << 10

// growStack grows a new task goroutine's stack once, while it is shallow,
// to a size the attempt path needs. A goroutine starts with a 2 KiB stack
// and the runtime doubles it by copying whenever a call would overflow it;
// reached through the attempt path's deep calls, three or four such copies
// per task took about a sixth of the worker's CPU time in a burn-down of
// no-op tasks (issue 17). One copy of a stack a few frames deep, and the
// zeroing of the frame, cost about a third of that. (Reusing task
// goroutines does not help: the garbage collector shrinks idle
// goroutines' stacks, and they grow again.) 1,000 running tasks hold about
// 16 MiB of stacks.
//
//go:noinline
func growStack() {
	var frame [taskStackFrame]byte
	keepFrame(frame[:])
}

// keepFrame keeps growStack's frame from being optimised away (it does not
// keep b, so the frame stays on the stack).
//
//go:noinline
func keepFrame(b []byte) {
	if len(b) == 0 {
		panic("unreachable")
	}
}

// unreadable is the failed attempt of a row that cannot be read.
func (e *executor) unreadable(r *row) tasks.Attempt {
	end := now()
	te := tasks.NewTaskError(r.Attempts, end, r.bad)
	e.log.Error("gotasks: task failed: its row cannot be read", "task", r.TaskName, "task_id", r.ID, "err", r.bad)
	return tasks.Attempt{Number: r.Attempts, Status: tasks.StatusFailed, Err: r.bad, Record: &te, End: end}
}

// finish turns the attempt a of r into an outcome for the completer and
// frees the slot. tasks.RunAttempt logged the attempt.
func (e *executor) finish(r *row, a tasks.Attempt) {
	defer e.running.Done()
	rec := &r.RawResult
	o := &outcome{rec: rec, attempt: a.Number, newErr: a.Record}
	a.Apply(rec)
	switch {
	case a.HandedBack:
		// Stopped under the task: handed back without using up the attempt,
		// keeping its run_after (its place in the queue and, for a repeating
		// task, its schedule).
		o.handBack = true
		e.handedBack.Store(true)
	case a.Snoozed:
		// Back to READY at the new run_after, the attempt not counted: the
		// completion stores it as a hand-back does (attempts - 1), with the
		// run_after of the outcome.
		o.handBack = true
	case a.Status == tasks.StatusSuccessful:
		o.next = nextRun(rec, a.End)
	}
	<-e.slots
	e.t.freed.Add(1)
	e.t.signal()
	e.outcomes <- o
}

// drain waits for the running tasks to return; false if ctx ends first.
func (e *executor) drain(ctx context.Context) bool {
	drained := make(chan struct{})
	go func() { e.running.Wait(); close(drained) }()
	select {
	case <-drained:
		return true
	case <-ctx.Done():
		return false
	}
}

// errIgnoredCancel reports tasks that went on after their context was
// cancelled by a hard stop.
var errIgnoredCancel = errors.New("some tasks ignored their cancelled context; they stay RUNNING until rescued")

// cancel cancels the running tasks' contexts so that they are handed back,
// and waits for them (at most 10 s, or until ctx ends). It reports whether
// any task was handed back, and errIgnoredCancel when some did not return.
func (e *executor) cancel(ctx context.Context) (handedBack bool, err error) {
	e.hardStopped.Store(true)
	e.cancelTasks()
	wctx, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	if !e.drain(wctx) {
		err = errIgnoredCancel
	}
	return e.handedBack.Load(), err
}

// nextRun returns the next run of a repeating task that just succeeded:
// scheduled time + interval, stepped forward past now, unless past the end.
// It carries the metadata of the run that succeeded.
func nextRun(rec *tasks.RawResult, t time.Time) *tasks.RawResult {
	if rec.Repeat <= 0 {
		return nil
	}
	next := rec.RunAfter.Add(rec.Repeat)
	if !next.After(t) {
		steps := t.Sub(next)/rec.Repeat + 1
		next = next.Add(steps * rec.Repeat)
	}
	if rec.RepeatUntil != nil && next.After(*rec.RepeatUntil) {
		return nil
	}
	return &tasks.RawResult{
		ID: tasks.NewID(), TaskName: rec.TaskName, Status: tasks.StatusReady, Args: rec.Args,
		Priority: rec.Priority, Queue: rec.Queue, Backend: rec.Backend, RunAfter: next.Truncate(time.Microsecond),
		EnqueuedAt: t, MaxAttempts: rec.MaxAttempts, Timeout: rec.Timeout, VerboseName: rec.VerboseName,
		Creator: rec.Creator, Repeat: rec.Repeat, RepeatUntil: rec.RepeatUntil, Metadata: maps.Clone(rec.Metadata),
	}
}
