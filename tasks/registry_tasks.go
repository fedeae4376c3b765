package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Runner is the untyped view of a defined task that backends use to run a
// stored task by name.
type Runner interface {
	// TaskName is the registered name.
	TaskName() string
	// RunJSON decodes args, calls the function and encodes its return value.
	// Decoding and encoding failures are returned as errors; panics are not
	// recovered here (see Execute).
	RunJSON(ctx context.Context, args json.RawMessage) (json.RawMessage, error)
	// Defaults returns the options the task was defined with.
	Defaults() TaskDefaults
}

// TaskDefaults are the definition-time settings of a task that a worker
// needs when it runs it.
type TaskDefaults struct {
	MaxAttempts int
	Backoff     Backoff
	Timeout     time.Duration
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

// Lookup returns the task registered under name.
func Lookup(name string) (Runner, bool) {
	registry.RLock()
	defer registry.RUnlock()
	r, ok := registry.m[name]
	return r, ok
}

// TaskNames lists the registered task names, sorted.
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
