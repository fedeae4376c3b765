package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// This file is for backend authors: the registry of task functions by name.

// Runner is the untyped view of a defined task, registered by Define under
// its name. Backends run stored tasks through RunAttempt, which looks them
// up; Lookup is for code that needs a definition itself.
type Runner interface {
	// TaskName is the registered name.
	TaskName() string
	// RunJSON decodes args (an *ArgsError when they do not decode), calls the
	// function and encodes its return value (a *ReturnValueError when it
	// does not encode). Panics are not recovered here: RunAttempt recovers
	// them.
	RunJSON(ctx context.Context, args json.RawMessage) (json.RawMessage, error)
	// Defaults returns the options the task was defined with.
	Defaults() TaskDefaults
}

// TaskDefaults are the definition-time settings of a task that a worker
// needs when it runs it (see AttemptConfig.ResolvePolicy).
type TaskDefaults struct {
	// MaxAttempts is WithMaxAttempts; 0 when the task did not set it.
	MaxAttempts int
	// Backoff is WithBackoff; nil when the task did not set it.
	Backoff Backoff
	// Timeout is WithTimeout; 0 when the task did not set it.
	Timeout time.Duration
}

var registry = struct {
	sync.RWMutex
	m map[string]Runner
}{m: map[string]Runner{}}

func register(r Runner) {
	name := r.TaskName()
	registry.Lock()
	defer registry.Unlock()
	if _, dup := registry.m[name]; dup {
		panic(fmt.Sprintf("tasks: a task named %q is already defined", name))
	}
	registry.m[name] = r
}

// Lookup returns the task registered under name, and whether there is one.
func Lookup(name string) (Runner, bool) {
	registry.RLock()
	defer registry.RUnlock()
	r, ok := registry.m[name]
	return r, ok
}

// TaskNames lists the registered task names, sorted: what this binary can
// run.
func TaskNames() []string {
	registry.RLock()
	defer registry.RUnlock()
	names := make([]string, 0, len(registry.m))
	for n := range registry.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
