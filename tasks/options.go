package tasks

import (
	"fmt"
	"maps"
	"strings"
	"time"
)

// Priority bounds (SPEC §2). Higher runs first.
const (
	MinPriority     = -100
	MaxPriority     = 100
	DefaultPriority = 0
)

// DefaultQueue is the queue tasks go to unless they say otherwise.
const DefaultQueue = "default"

// Option sets a task option, at definition (Define) or per call (Using).
type Option func(*options)

type options struct {
	priority    int
	queue       string
	backend     string
	runAfter    time.Time
	delay       time.Duration
	onCommit    *bool
	maxAttempts int
	backoff     Backoff
	timeout     time.Duration
	verboseName string
	creator     string
	repeat      time.Duration
	repeatUntil time.Time
	// metadata is shared by copies of the options: WithMetadata replaces
	// it with a merged copy, never changes it in place.
	metadata map[string]string
	// backoffSet records WithBackoff in Using, which cannot be honoured.
	backoffSet bool
	// unique is WithUnique's options; nil for a task that is not unique.
	unique *UniqueOpts
}

// WithPriority sets the priority, −100..100 (default 0); higher runs first.
func WithPriority(p int) Option { return func(o *options) { o.priority = p } }

// WithQueue sets the queue (default "default").
func WithQueue(q string) Option { return func(o *options) { o.queue = q } }

// WithBackend selects the configured backend by name (default "default").
func WithBackend(name string) Option { return func(o *options) { o.backend = name } }

// WithRunAfter defers the task until t. It requires a backend with
// CanDefer. The zero time clears a deferral.
func WithRunAfter(t time.Time) Option {
	return func(o *options) { o.runAfter, o.delay = t, 0 }
}

// WithDelay defers the task by d from the moment it is enqueued. It
// requires a backend with CanDefer. Zero clears a deferral.
func WithDelay(d time.Duration) Option {
	return func(o *options) { o.delay, o.runAfter = d, time.Time{} }
}

// WithEnqueueOnCommit overrides the backend's enqueue-on-commit default:
// inside a transaction (see ContextWithTx), true defers the enqueue until
// the transaction commits and drops it on rollback; false enqueues at once.
func WithEnqueueOnCommit(on bool) Option { return func(o *options) { o.onCommit = &on } }

// WithMaxAttempts sets how many attempts the task gets in all on backends
// with CanRetry (0: the backend's default, 25 unless configured).
func WithMaxAttempts(n int) Option { return func(o *options) { o.maxAttempts = n } }

// WithBackoff sets the delay before each retry. It is a function, so it
// cannot be stored with the task: it is a definition-time option, and
// Using(WithBackoff(...)) makes Enqueue fail with ErrInvalidTask.
func WithBackoff(b Backoff) Option {
	return func(o *options) { o.backoff, o.backoffSet = b, true }
}

// WithTimeout bounds each attempt: the task's context is cancelled after d
// and the attempt counts as failed. Zero means no timeout.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithVerboseName stores a human-readable name with the result.
func WithVerboseName(s string) Option { return func(o *options) { o.verboseName = s } }

// WithCreator stores a reference to whoever enqueued the task, such as
// "user:42", with the result.
func WithCreator(s string) Option { return func(o *options) { o.creator = s } }

// WithMetadata adds entries to the metadata stored with the task (see
// RawResult.Metadata), on top of those already set: at definition for
// every enqueue, or per call with Using. An entry with an empty value is
// stored as such. Metadata is limited to MaxMetadataEntries entries and
// MaxMetadataBytes bytes, in valid UTF-8.
func WithMetadata(md map[string]string) Option {
	return func(o *options) {
		merged := make(map[string]string, len(o.metadata)+len(md))
		maps.Copy(merged, o.metadata)
		maps.Copy(merged, md)
		o.metadata = merged
	}
}

// WithRepeat makes the task repeat every interval after each successful run
// (django-background-tasks' repeat), until the time set by WithRepeatUntil.
// It requires a backend with CanRepeat. Zero makes it a one-off task.
func WithRepeat(interval time.Duration) Option { return func(o *options) { o.repeat = interval } }

// WithRepeatUntil ends a repeating chain: no run is scheduled after t.
func WithRepeatUntil(t time.Time) Option { return func(o *options) { o.repeatUntil = t } }

// Common repeat intervals (django-background-tasks' Task.HOURLY and so on).
const (
	Hourly  = time.Hour
	Daily   = 24 * time.Hour
	Weekly  = 7 * Daily
	Every2W = 2 * Weekly
	Every4W = 4 * Weekly
)

// validate reports option values that are invalid whatever the backend.
func (o *options) validate() error {
	if o.priority < MinPriority || o.priority > MaxPriority {
		return invalidf("priority %d is outside %d..%d", o.priority, MinPriority, MaxPriority)
	}
	if err := validQueueName(o.queue); err != nil {
		return invalidf("%v", err)
	}
	if o.maxAttempts < 0 {
		return invalidf("max attempts %d is negative", o.maxAttempts)
	}
	if o.timeout < 0 {
		return invalidf("timeout %v is negative", o.timeout)
	}
	if o.delay < 0 {
		return invalidf("delay %v is negative", o.delay)
	}
	if o.repeat < 0 {
		return invalidf("repeat interval %v is negative", o.repeat)
	}
	if o.repeat > 0 && o.repeat < time.Second {
		return invalidf("repeat interval %v is shorter than one second", o.repeat)
	}
	if len(o.verboseName) > 255 {
		return invalidf("verbose name is longer than 255 bytes")
	}
	if len(o.creator) > 255 {
		return invalidf("creator is longer than 255 bytes")
	}
	if err := checkMetadata(o.metadata); err != nil {
		return err
	}
	return validateUnique(o.unique)
}

// Backoff returns the delay before the retry that follows failed attempt n
// (1-based).
type Backoff func(attempt int) time.Duration

// DefaultMaxAttempts is the number of attempts a task gets when neither it
// nor its backend says otherwise (django-background-tasks' MAX_ATTEMPTS).
const DefaultMaxAttempts = 25

// ConstantBackoff returns a Backoff that always waits d.
func ConstantBackoff(d time.Duration) Backoff { return func(int) time.Duration { return d } }

func validQueueName(q string) error {
	if q == "" || len(q) > 64 || strings.TrimSpace(q) != q || strings.ContainsAny(q, ",*") {
		return fmt.Errorf("queue name %q must be 1-64 characters without spaces at the ends, ',' or '*'", q)
	}
	return nil
}
