package database

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Worker defaults.
const (
	// DefaultConcurrency is how many tasks a worker runs at once, one
	// goroutine each. It is high because goroutines are cheap and because
	// the claim batch follows it (min(Concurrency, 1000)): with short tasks
	// a worker of 100 spends its time waiting for claims of 100 rows, one
	// round trip and one WAL flush each, and drains a third slower than one
	// of 1,000 (docs/performance.md, issue 17). A worker of 1,000 no-op
	// tasks peaks at about 30 MiB; memory grows with the tasks' arguments
	// and results (docs/worker.md says what the change from 100 means).
	// Set Concurrency (or --concurrency) lower for long tasks spread over
	// several workers and for tasks that each hold a scarce resource, or
	// cap single queues with QueueConcurrency.
	DefaultConcurrency       = 1000
	DefaultPollInterval      = time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	// DefaultRescueAfter is how long a RUNNING task may go without a
	// heartbeat from its worker before another worker puts it back to READY
	// (or FAILED when it has no attempt left): six missed heartbeats.
	DefaultRescueAfter = 30 * time.Second
	// DefaultMaxRunTime bounds one attempt (django-background-tasks'
	// MAX_RUN_TIME): the attempt's context is cancelled then, and a task
	// RUNNING for longer is rescued even if its worker still heartbeats.
	DefaultMaxRunTime = time.Hour
)

// ErrHardStop is returned by Run and Stop when running tasks had to be
// cancelled and handed back for retry.
var ErrHardStop = errors.New("worker stopped hard: running tasks were cancelled and handed back")

// ErrOutcomesLost is returned by Run and Stop when the worker gave up
// recording the outcomes of tasks it ran (the database stayed unreachable
// past the stop's deadline). Nothing is lost for good: those tasks stay
// RUNNING until they are rescued and run again.
var ErrOutcomesLost = errors.New("worker stopped without recording the outcomes of tasks it ran; they will be rescued and run again")

// recordBacklog is how many finished tasks may wait for their outcome to be
// recorded (beyond the Concurrency running ones) before the worker stops
// claiming: room for one completion statement in flight and a full batch
// gathering behind it, so the claim → run → record pipeline never waits on
// the completer's round trip and commit. The wait is bounded (memory stays
// flat); it only holds outcomes of tasks that already ran.
func (c WorkerConfig) recordBacklog() int { return max(c.Concurrency, 2*maxRecordBatch) }

// WorkerConfig configures a Worker. The zero value works: all queues,
// DefaultConcurrency, DefaultPollInterval, and so on.
type WorkerConfig struct {
	// Queues to claim from; empty or ["*"] means all.
	Queues []string
	// ExcludeQueues are never claimed from.
	ExcludeQueues []string
	// Concurrency is how many tasks run at once (goroutines).
	Concurrency int
	// QueueConcurrency caps, per queue, how many of this worker's slots its
	// tasks may take (claimed and not yet recorded), e.g. {"emails": 5}:
	// workercmd's --queues emails=5,default=20. Queues not in it share the
	// slots as usual. A worker with caps claims through the limited claim
	// (see flow.go and docs/scheduling.md). Read-only once the worker runs.
	QueueConcurrency map[string]int
	// BatchSize caps the tasks claimed per statement (default: Concurrency,
	// at most 1000).
	BatchSize int
	// PollInterval is how often an idle worker looks for due tasks when no
	// notification woke it (the backstop; the only mechanism across
	// processes on SQLite).
	PollInterval time.Duration
	// WorkerID identifies the worker in results and holds its claims
	// (default host:pid:random). It must be unique among running workers;
	// a new process may reuse the id of a dead one (its tasks are rescued at
	// start-up).
	WorkerID string
	// HeartbeatInterval is how often the worker refreshes the lease of the
	// tasks it runs.
	HeartbeatInterval time.Duration
	// RescueAfter: see DefaultRescueAfter. Must exceed HeartbeatInterval.
	RescueAfter time.Duration
	// MaxRunTime: see DefaultMaxRunTime.
	MaxRunTime time.Duration
	// MaxTasks stops the worker after it recorded that many outcomes
	// (0: no limit).
	MaxTasks int
	// Duration stops the worker (gracefully) after it ran that long
	// (0: forever).
	Duration time.Duration
	// ExitWhenEmpty stops the worker when no task is due and none is
	// running (django-tasks' --batch).
	ExitWhenEmpty bool
	// GracePeriod bounds the graceful stop of Run: running tasks get this
	// long to finish after ctx is cancelled before they are cancelled and
	// handed back (default 30 s).
	GracePeriod time.Duration
	// Logger defaults to the backend's logger.
	Logger *slog.Logger
	// TaskContext, if set, gives the worker's tasks the application's
	// dependencies without package globals. It is called once, by
	// NewWorker, with a background context, and the context it returns is
	// the parent of every attempt's context: put the application's values
	// in it (context.WithValue), and read them in the tasks through a typed
	// accessor of the application:
	//
	//	type appKey struct{}
	//	func AppFrom(ctx context.Context) *App { return ctx.Value(appKey{}).(*App) }
	//
	//	database.WorkerConfig{TaskContext: func(ctx context.Context) context.Context {
	//		return context.WithValue(ctx, appKey{}, app)
	//	}}
	//
	// Only its values are used: its cancellation and deadline are not
	// (the worker cancels its tasks itself, at a hard stop). workercmd's
	// Command.Setup is the same hook for a worker binary.
	TaskContext func(ctx context.Context) context.Context
	// NoScheduler turns off the worker's scheduler, which enqueues the
	// tasks of durable schedules (Backend.SetSchedule) when they are due.
	// Every worker runs one by default; a tick enqueues once however many
	// run.
	NoScheduler bool
}

func (c *WorkerConfig) normalize(b *Backend) error {
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.BatchSize == 0 {
		c.BatchSize = min(c.Concurrency, 1000)
	}
	if c.PollInterval == 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.RescueAfter == 0 {
		c.RescueAfter = max(DefaultRescueAfter, 3*c.HeartbeatInterval)
	}
	if c.MaxRunTime == 0 {
		c.MaxRunTime = DefaultMaxRunTime
	}
	if c.GracePeriod == 0 {
		c.GracePeriod = 30 * time.Second
	}
	if c.WorkerID == "" {
		host, _ := os.Hostname()
		var rb [3]byte
		_, _ = rand.Read(rb[:])
		c.WorkerID = host + ":" + strconv.Itoa(os.Getpid()) + ":" + hex.EncodeToString(rb[:])
	}
	if c.Logger == nil {
		c.Logger = b.log
	}
	if len(c.Queues) == 1 && c.Queues[0] == "*" {
		c.Queues = nil
	}
	var probs []string
	if c.Concurrency < 0 || c.BatchSize < 0 || c.MaxTasks < 0 || c.Duration < 0 {
		probs = append(probs, "concurrency, batch size, max tasks and duration must not be negative")
	}
	if c.PollInterval < 0 || c.HeartbeatInterval < 0 || c.MaxRunTime < 0 {
		probs = append(probs, "intervals must be positive")
	}
	if c.RescueAfter <= c.HeartbeatInterval {
		probs = append(probs, fmt.Sprintf("rescue delay %v must exceed the heartbeat interval %v", c.RescueAfter, c.HeartbeatInterval))
	}
	if len(c.WorkerID) > 255 {
		probs = append(probs, "worker id is longer than 255 bytes")
	}
	for q, n := range c.QueueConcurrency {
		if q == "" || q == "*" || n <= 0 {
			probs = append(probs, fmt.Sprintf("queue concurrency %q=%d: a queue name and at least 1", q, n))
		}
	}
	for _, q := range append(slices.Clone(c.Queues), c.ExcludeQueues...) {
		if q == "" || q == "*" {
			probs = append(probs, fmt.Sprintf("queue name %q is not valid in a list", q))
		}
	}
	if qs := b.Queues(); len(qs) > 0 {
		for _, q := range c.Queues {
			if !slices.Contains(qs, q) {
				probs = append(probs, fmt.Sprintf("queue %q is not allowed on backend %q (allowed: %v)", q, b.Name(), qs))
			}
		}
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: worker: %v", tasks.ErrInvalidBackend, probs)
	}
	return nil
}
