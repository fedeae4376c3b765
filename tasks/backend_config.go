package tasks

import (
	"fmt"
	"log/slog"
	"slices"
	"strings"
)

// BackendConfig holds the settings every backend shares. Backends embed it
// to implement Name, Queues and EnqueueOnCommit.
type BackendConfig struct {
	// BackendName defaults to "default".
	BackendName string
	// AllowedQueues restricts queue names; empty allows any.
	AllowedQueues []string
	// DeferOnCommit is the enqueue-on-commit default for tasks that do not
	// set it (true when nil, as in django-tasks).
	DeferOnCommit *bool
	// MaxAttempts is the default for tasks that do not set it (0: 25).
	MaxAttempts int
	// Backoff is the default delay before retry n (nil: DefaultBackoff).
	Backoff Backoff
	// Log is the backend's logger (see Logger); nil means slog.Default().
	Log *slog.Logger
	// Middleware wraps the enqueues and executions of the backend's tasks,
	// inside the global middleware of Use (see Middleware and
	// WithMiddleware).
	Middleware []Middleware
}

// Logger returns the backend's logger: Log, else slog.Default(). It logs
// the life-cycle of the tasks the backend runs in-process (the immediate
// and dummy backends, the default) and is the base of their
// TaskContext.Logger. The database backend has its own (database.WithLogger;
// its workers use WorkerConfig.Logger).
func (c *BackendConfig) Logger() *slog.Logger {
	if c.Log != nil {
		return c.Log
	}
	return slog.Default()
}

// Name implements Backend.
func (c *BackendConfig) Name() string {
	if c.BackendName == "" {
		return DefaultBackendName
	}
	return c.BackendName
}

// Queues implements Backend.
func (c *BackendConfig) Queues() []string { return slices.Clone(c.AllowedQueues) }

// EnqueueOnCommit implements Backend.
func (c *BackendConfig) EnqueueOnCommit() bool { return c.DeferOnCommit == nil || *c.DeferOnCommit }

// DefaultMaxAttempts returns the configured default, or DefaultMaxAttempts.
func (c *BackendConfig) DefaultMaxAttempts() int {
	if c.MaxAttempts > 0 {
		return c.MaxAttempts
	}
	return DefaultMaxAttempts
}

// DefaultBackoff returns the configured default backoff, or DefaultBackoff.
func (c *BackendConfig) DefaultBackoff() Backoff {
	if c.Backoff != nil {
		return c.Backoff
	}
	return DefaultBackoff
}

// Apply applies options to c.
func (c *BackendConfig) Apply(opts ...BackendOption) {
	for _, o := range opts {
		o(c)
	}
}

// CheckConfig validates c and returns every problem joined, or nil.
func (c *BackendConfig) CheckConfig() error {
	var probs []string
	for _, q := range c.AllowedQueues {
		if err := validQueueName(q); err != nil {
			probs = append(probs, err.Error())
		}
	}
	if c.MaxAttempts < 0 {
		probs = append(probs, fmt.Sprintf("max attempts %d is negative", c.MaxAttempts))
	}
	if len(probs) == 0 {
		return nil
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidBackend, c.Name(), strings.Join(probs, "; "))
}

// BackendOption configures the BackendConfig of any backend.
type BackendOption func(*BackendConfig)

// WithName sets the backend's name (default "default").
func WithName(name string) BackendOption { return func(c *BackendConfig) { c.BackendName = name } }

// WithAllowedQueues restricts the queue names the backend accepts.
func WithAllowedQueues(queues ...string) BackendOption {
	return func(c *BackendConfig) { c.AllowedQueues = slices.Clone(queues) }
}

// WithDefaultEnqueueOnCommit sets the backend's enqueue-on-commit default.
func WithDefaultEnqueueOnCommit(on bool) BackendOption {
	return func(c *BackendConfig) { c.DeferOnCommit = &on }
}

// WithDefaultMaxAttempts sets the backend's default MaxAttempts.
func WithDefaultMaxAttempts(n int) BackendOption { return func(c *BackendConfig) { c.MaxAttempts = n } }

// WithDefaultBackoff sets the backend's default retry backoff.
func WithDefaultBackoff(b Backoff) BackendOption { return func(c *BackendConfig) { c.Backoff = b } }

// WithLogger sets the backend's logger (see BackendConfig.Logger).
func WithLogger(l *slog.Logger) BackendOption { return func(c *BackendConfig) { c.Log = l } }
