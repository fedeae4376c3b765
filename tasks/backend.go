package tasks

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"time"
)

// Capabilities is a bit set of what a backend supports (SPEC §4). Code can
// branch on it at run time and Enqueue validates against it.
type Capabilities uint32

// The capability flags.
const (
	// CanDefer: the backend honours RunAfter (tasks wait until then).
	CanDefer Capabilities = 1 << iota
	// CanPriority: the backend runs higher-priority tasks first.
	CanPriority
	// CanGetResult: results can be fetched by id after Enqueue returned.
	CanGetResult
	// CanRetry: failed attempts are retried up to MaxAttempts with backoff.
	CanRetry
	// CanTransact: Enqueue inside a transaction of the backend's own database
	// inserts in that transaction (committed or rolled back with it).
	CanTransact
	// CanCancel: READY tasks can be cancelled.
	CanCancel
	// CanBulkEnqueue: EnqueueMany stores a batch in one round trip.
	CanBulkEnqueue
	// CanRepeat: repeating tasks (WithRepeat) are re-enqueued after success.
	CanRepeat
	// CanTimeout: per-attempt timeouts cancel the task's context.
	CanTimeout
	// CanUnique: unique tasks (WithUnique) are deduplicated at enqueue.
	CanUnique
)

var capNames = []struct {
	c    Capabilities
	name string
}{
	{CanDefer, "Defer"}, {CanPriority, "Priority"}, {CanGetResult, "GetResult"},
	{CanRetry, "Retry"}, {CanTransact, "Transact"}, {CanCancel, "Cancel"},
	{CanBulkEnqueue, "BulkEnqueue"}, {CanRepeat, "Repeat"}, {CanTimeout, "Timeout"},
	{CanUnique, "Unique"},
}

// Has reports whether every flag of f is set in c.
func (c Capabilities) Has(f Capabilities) bool { return c&f == f }

// String lists the flags, e.g. "Defer|Priority".
func (c Capabilities) String() string {
	var parts []string
	for _, n := range capNames {
		if c.Has(n.c) {
			parts = append(parts, n.name)
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "|")
}

// EnqueueRequest is what the core hands a backend to store or run: a fully
// validated task with its arguments already encoded to JSON.
type EnqueueRequest struct {
	// ID is assigned by the core before the backend sees the request, so
	// that a deferred (enqueue-on-commit) enqueue can return a handle at
	// once.
	ID string
	// TaskName is the registered name of the task.
	TaskName string
	// Args is the JSON encoding of the arguments; it survives a round trip
	// to the task's argument type.
	Args json.RawMessage
	// Priority is within MinPriority..MaxPriority.
	Priority int
	// Queue is a valid queue name allowed by the backend.
	Queue string
	// RunAfter is zero when the task is due at once; backends store the
	// enqueue time then.
	RunAfter time.Time
	// MaxAttempts is the task's WithMaxAttempts; 0 for the backend's
	// default.
	MaxAttempts int
	// Timeout is the task's WithTimeout; 0 for none.
	Timeout time.Duration
	// VerboseName is the task's WithVerboseName.
	VerboseName string
	// Creator is the task's WithCreator.
	Creator string
	// Repeat is the interval of a repeating task (WithRepeat); 0 for a
	// one-off task.
	Repeat time.Duration
	// RepeatUntil ends a repeating chain (WithRepeatUntil); zero for never.
	RepeatUntil time.Time
	// Metadata is the task's metadata (WithMetadata, and what enqueue
	// middleware set with SetMetadata); nil for none. It is stored with
	// the task and returned with its result.
	Metadata map[string]string
	// UniqueKey is the key of a unique task (WithUnique, see UniqueKey);
	// empty for a task that is not unique. While a task of the backend with
	// the same key is in one of UniqueStatuses, the backend returns that
	// task instead of storing this one (backends with CanUnique).
	UniqueKey string
	// UniqueStatuses is the statuses of a unique task; it always has READY
	// and RUNNING. Zero when UniqueKey is empty.
	UniqueStatuses StatusMask
}

// NewRawResult returns the READY result a backend stores for req, enqueued at
// now (which should be UTC).
func (req *EnqueueRequest) NewRawResult(backend string, now time.Time) *RawResult {
	runAfter := req.RunAfter
	if runAfter.IsZero() {
		runAfter = now
	}
	r := &RawResult{
		ID:          req.ID,
		TaskName:    req.TaskName,
		Status:      StatusReady,
		Args:        slices.Clone(req.Args),
		Priority:    req.Priority,
		Queue:       req.Queue,
		Backend:     backend,
		RunAfter:    runAfter.UTC(),
		EnqueuedAt:  now,
		MaxAttempts: req.MaxAttempts,
		Timeout:     req.Timeout,
		VerboseName: req.VerboseName,
		Creator:     req.Creator,
		Repeat:      req.Repeat,
		UniqueKey:   req.UniqueKey,
	}
	if len(req.Metadata) > 0 {
		r.Metadata = maps.Clone(req.Metadata)
	}
	if !req.RepeatUntil.IsZero() {
		u := req.RepeatUntil.UTC()
		r.RepeatUntil = &u
	}
	return r
}

// Backend stores and runs tasks. Implementations must be safe for concurrent
// use. Most of their configuration comes from an embedded BackendConfig.
type Backend interface {
	// Name is the name the backend is configured under; it is the sender of
	// its signals and the backend field of its results.
	Name() string
	// Capabilities reports what the backend supports.
	Capabilities() Capabilities
	// Queues lists the allowed queue names; empty allows any.
	Queues() []string
	// EnqueueOnCommit is the default for tasks that do not set it.
	EnqueueOnCommit() bool
	// Enqueue stores (or runs) one validated task.
	Enqueue(ctx context.Context, req *EnqueueRequest) (*RawResult, error)
	// EnqueueMany stores a batch; in one round trip when the backend has
	// CanBulkEnqueue. The results are in the order of reqs.
	EnqueueMany(ctx context.Context, reqs []*EnqueueRequest) ([]*RawResult, error)
	// GetResult returns any task's result by id, or an error wrapping
	// ErrResultNotFound.
	GetResult(ctx context.Context, id string) (*RawResult, error)
	// Cancel sets a READY task CANCELLED. Errors: ErrResultNotFound,
	// ErrNotCancellable, ErrNotSupported.
	Cancel(ctx context.Context, id string) error
	// Check reports every configuration or connectivity problem in one
	// error, or nil.
	Check(ctx context.Context) error
}

// Waiter is implemented by backends that can wait for a result more cheaply
// than polling (for example with LISTEN/NOTIFY).
type Waiter interface {
	// WaitResult blocks until the result is finished or ctx is done.
	WaitResult(ctx context.Context, id string) (*RawResult, error)
}

// TxJoiner is implemented by backends with CanTransact. JoinsTx reports
// whether ctx carries a transaction of the backend's own database, in which
// case Enqueue inserts inside it instead of being deferred to commit.
type TxJoiner interface {
	JoinsTx(ctx context.Context) bool
}

// QueueDepth is how much work waits in one queue of a backend.
type QueueDepth struct {
	// Queue is the queue's name.
	Queue string
	// Ready counts the READY tasks that are due (waiting for a worker).
	Ready int64
	// Scheduled counts the READY tasks deferred into the future (retries
	// waiting for their backoff included).
	Scheduled int64
	// Running counts the RUNNING tasks.
	Running int64
	// OldestDue is when the longest-waiting due READY task became due;
	// zero when Ready is 0. Now minus OldestDue is the queue's age.
	OldestDue time.Time
}

// DepthReader is implemented by backends that can count the waiting tasks
// of each queue cheaply enough to be read at every metrics scrape (the
// database and dummy backends).
type DepthReader interface {
	// QueueDepths returns one entry per queue that has READY or RUNNING
	// tasks, sorted by queue name.
	QueueDepths(ctx context.Context) ([]QueueDepth, error)
}
