package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Worker claims due tasks of one database backend and runs them: claims
// in batches in SPEC order, runs up to Concurrency at once, records
// outcomes in batches, retries with backoff, keeps a heartbeat on what it
// runs, rescues tasks of workers that vanished, re-enqueues repeating
// tasks, and wakes on LISTEN/NOTIFY (PostgreSQL) or in-process enqueues.
//
// It wires five services, each in a file of its own: the fetcher (claims),
// the executor (runs attempts), the completer (records outcomes), the
// heartbeat (keeps leases) and the rescuer (rescues tasks of vanished
// workers). docs/worker.md has a code map.
//
// A Worker runs once: Start (or Run), then Stop or StopAndCancel.
//
// A Worker does not register its backend (tasks.RegisterBackend): the
// tasks it runs enqueue their follow-ups to its backend through their
// context, but other code of the process enqueues to the backend
// registered under "default". While a worker runs, the first use of the
// implicit inline default in its process logs a warning (see
// tasks.GetBackend). WorkerConfig.TaskContext hands the tasks the
// application's dependencies.
type Worker struct {
	b   *Backend
	cfg WorkerConfig
	log *slog.Logger

	t         *tally
	fetcher   *fetcher
	exec      *executor
	completer *completer
	heartbeat *heartbeat
	rescuer   *rescuer
	scheduler *scheduler // durable schedules (scheduler.go)

	startOnce sync.Once
	started   atomic.Bool
	// stopping is set when the worker stops claiming for good (Stop,
	// StopAndCancel, or by itself), by whichever goroutine asks; Ready
	// reads it.
	stopping  atomic.Bool
	startedAt time.Time
	// unmark ends the worker's mark on its backend's name (see
	// tasks.MarkBackendOpen), set by Start, called by finish.
	unmark func()

	// bgCancel stops the Duration timer goroutine; bgDone waits for it.
	bgCancel context.CancelFunc
	bgDone   sync.WaitGroup

	stopMu   sync.Mutex    // serialises the stop of the services (Stop, StopAndCancel)
	done     chan struct{} // closed when fully stopped
	stopErr  error         // set before done is closed
	selfStop chan struct{} // closed when the worker decided to stop
	selfOnce sync.Once
	reason   atomic.Value // string: why the worker stopped by itself
}

// NewWorker returns a worker for b. Invalid settings are an error wrapping
// tasks.ErrInvalidBackend.
func NewWorker(b *Backend, cfg WorkerConfig) (*Worker, error) {
	if err := cfg.normalize(b); err != nil {
		return nil, err
	}
	w := &Worker{
		b: b, cfg: cfg, log: cfg.Logger.With("worker_id", cfg.WorkerID, "backend", b.Name()),
		t:        newTally(),
		done:     make(chan struct{}),
		selfStop: make(chan struct{}),
	}
	// Room for every claimed task's outcome (the backlog bound), so a
	// finished task's goroutine never waits for the completer.
	outcomes := make(chan *outcome, cfg.Concurrency+cfg.recordBacklog())
	w.exec = newExecutor(b, cfg, w.log, w.t, outcomes)
	if cfg.TaskContext != nil {
		// The parent of every attempt's context carries the application's
		// values (WorkerConfig.TaskContext); the executor still cancels it.
		w.exec.cancelTasks()
		w.exec.taskCtx, w.exec.cancelTasks = context.WithCancel(taskBase(cfg.TaskContext))
	}
	w.fetcher = newFetcher(b, cfg, w.log, w.t, w.exec, func() { w.stopByItself("queue empty") })
	w.completer = newCompleter(b, cfg, w.log, w.t, outcomes, func() { w.stopByItself("max tasks reached") })
	w.heartbeat = &heartbeat{b: b, log: w.log, workerID: cfg.WorkerID, interval: cfg.HeartbeatInterval,
		rescueAfter: cfg.RescueAfter, t: w.t}
	w.rescuer = &rescuer{b: b, log: w.log, workerID: cfg.WorkerID, rescueAfter: cfg.RescueAfter, maxRunTime: cfg.MaxRunTime}
	w.scheduler = &scheduler{b: b, log: w.log, disabled: cfg.NoScheduler}
	return w, nil
}

// ID returns the worker's id.
func (w *Worker) ID() string { return w.cfg.WorkerID }

// Processed returns how many outcomes the worker has recorded.
func (w *Worker) Processed() int64 { return w.t.processed.Load() }

// Done is closed when the worker has stopped completely.
func (w *Worker) Done() <-chan struct{} { return w.done }

// StoppedByItself is closed when the worker decided to stop (MaxTasks,
// Duration, ExitWhenEmpty); Run then stops it gracefully.
func (w *Worker) StoppedByItself() <-chan struct{} { return w.selfStop }

// Run starts the worker and blocks until it stops: by itself (MaxTasks,
// Duration, ExitWhenEmpty), or when ctx is done, after which running tasks
// get GracePeriod to finish before they are cancelled and handed back. It
// returns nil after a graceful stop, an error wrapping ErrHardStop when
// tasks had to be handed back, and one wrapping ErrOutcomesLost when it
// gave up recording outcomes.
func (w *Worker) Run(ctx context.Context) error {
	if err := w.Start(ctx); err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-w.selfStop:
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), w.cfg.GracePeriod)
	defer cancel()
	return w.Stop(sctx)
}

// Start checks the schema, rescues what it can before the first claim, and
// starts the worker's services; then it returns. ctx only bounds the
// start-up; stop the worker with Stop or StopAndCancel.
func (w *Worker) Start(ctx context.Context) error {
	first := false
	w.startOnce.Do(func() { first = true })
	if !first {
		return errors.New("gotasks: worker already started")
	}
	if err := w.b.checkSchema(ctx); err != nil {
		close(w.done)
		return err
	}
	// Tasks still RUNNING under this worker id belong to an earlier process
	// that used the same id: rescue them before claiming anything.
	if _, err := w.rescuer.rescueOrphans(ctx); err != nil {
		close(w.done)
		return err
	}
	// So do tasks whose lease expired: a one-shot worker (ExitWhenEmpty)
	// would otherwise find nothing to claim and exit before they are READY.
	if _, err := w.rescuer.rescueExpired(ctx); err != nil {
		w.log.Warn("gotasks: rescue failed", "err", err)
	}
	// Operators see the worker (Backend.Workers) from now until it stops.
	w.startedAt = time.Now()
	w.heartbeat.self = workerRow(w.cfg, w.startedAt)
	if err := w.b.registerWorker(ctx, w.heartbeat.self); err != nil {
		w.log.Warn("gotasks: could not register the worker in gotasks_worker; it runs, and its heartbeat will try again", "err", err)
	}
	// While the worker runs, a use of the implicit inline default in this
	// process is logged as the likely mistake it is (tasks.GetBackend).
	w.unmark = tasks.MarkBackendOpen(w.b.Name())
	w.fetcher.startedAt, w.completer.startedAt = w.startedAt, w.startedAt
	w.started.Store(true)
	// The services run until stopped, not until ctx ends.
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w.bgCancel = cancel
	for _, s := range []interface{ Start(context.Context) error }{w.completer, w.heartbeat, w.rescuer, w.fetcher, w.scheduler} {
		if err := s.Start(bg); err != nil {
			return err
		}
	}
	if w.cfg.Duration > 0 {
		w.bgDone.Add(1)
		go func() {
			defer w.bgDone.Done()
			t := time.NewTimer(w.cfg.Duration)
			defer t.Stop()
			select {
			case <-t.C:
				w.stopByItself("duration elapsed")
			case <-bg.Done():
			}
		}()
	}
	w.log.Info("gotasks: worker started", "queues", queuesLabel(w.cfg.Queues), "exclude", w.cfg.ExcludeQueues,
		"concurrency", w.cfg.Concurrency, "dialect", w.b.dialect)
	return nil
}

// taskBase calls hook once and keeps the values of the context it returns,
// not its cancellation or deadline. A hook that returns nil keeps the
// background context.
func taskBase(hook func(context.Context) context.Context) context.Context {
	ctx := hook(context.Background())
	if ctx == nil {
		return context.Background()
	}
	return context.WithoutCancel(ctx)
}

func queuesLabel(q []string) any {
	if len(q) == 0 {
		return "*"
	}
	return q
}

// stopByItself records why the worker stops and stops claiming; Run (or
// the owner watching StoppedByItself) then stops it. It may be called from
// the services' goroutines: it does not wait for them.
func (w *Worker) stopByItself(reason string) {
	w.selfOnce.Do(func() {
		w.reason.Store(reason)
		w.log.Info("gotasks: worker stopping", "reason", reason)
		w.stopping.Store(true) // before selfStop: whoever sees it closed sees Ready fail
		close(w.selfStop)
		w.fetcher.Cancel() // claim no more
	})
}

// Stop stops claiming and waits for running tasks to finish and their
// outcomes to be recorded. If ctx is done first, the remaining tasks are
// cancelled and handed back for retry (StopAndCancel) and the error wraps
// ErrHardStop. If the outcomes cannot be recorded before ctx is done (the
// database is away), the error wraps ErrOutcomesLost.
func (w *Worker) Stop(ctx context.Context) error {
	if !w.started.Load() {
		return nil
	}
	w.stopping.Store(true)
	w.fetcher.Stop()
	if !w.exec.drain(ctx) {
		return w.StopAndCancel(context.WithoutCancel(ctx))
	}
	return w.finish(ctx, nil)
}

// StopAndCancel stops claiming, cancels the contexts of running tasks and
// hands them back: they return to READY without using up an attempt. It
// waits for the tasks to return (a task that ignores its context is left
// RUNNING after 10 s, to be rescued) and returns an error wrapping
// ErrHardStop if any was running.
func (w *Worker) StopAndCancel(ctx context.Context) error {
	if !w.started.Load() {
		return nil
	}
	w.stopping.Store(true)
	w.fetcher.Stop()
	handedBack, err := w.exec.cancel(ctx)
	if err == nil && !handedBack {
		return w.finish(ctx, nil) // nothing was running: not a hard stop
	}
	return w.finish(ctx, errors.Join(ErrHardStop, err))
}

// finish records the queued outcomes (giving up when ctx ends with the
// database away), stops the remaining services and closes done.
func (w *Worker) finish(ctx context.Context, stopErr error) error {
	w.stopMu.Lock()
	defer w.stopMu.Unlock()
	select {
	case <-w.done:
		return w.stopErr
	default:
	}
	w.completer.flush(ctx)
	if lost := w.completer.lost.Load(); lost > 0 {
		stopErr = errors.Join(stopErr, fmt.Errorf("%w (%d tasks)", ErrOutcomesLost, lost))
	}
	w.heartbeat.Stop()
	w.rescuer.Stop()
	w.scheduler.Stop()
	w.bgCancel()
	w.bgDone.Wait()
	w.exec.cancelTasks()
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	if err := w.b.unregisterWorker(uctx, w.cfg.WorkerID); err != nil {
		w.log.Warn("gotasks: could not delete the worker's row in gotasks_worker; another worker's rescuer will", "err", err)
	}
	cancel()
	w.unmark()
	w.stopErr = stopErr
	w.log.Info("gotasks: worker stopped", "processed", w.t.processed.Load(), "hard", w.exec.hardStopped.Load(),
		"claim_statements", w.fetcher.claims.Load(), "complete_statements", w.completer.records.Load())
	close(w.done)
	return stopErr
}
