package tasks

import (
	"fmt"
	"sort"
	"sync"
)

// DefaultBackendName is the name of the backend tasks use unless they say
// otherwise.
const DefaultBackendName = "default"

var backends = struct {
	sync.RWMutex
	m        map[string]Backend
	fallback Backend
}{m: map[string]Backend{}}

// RegisterBackend configures b under b.Name(), replacing a backend of that
// name if there was one. It returns a function that restores the previous
// state (handy in tests: t.Cleanup(tasks.RegisterBackend(b))).
func RegisterBackend(b Backend) (restore func()) {
	if b == nil {
		panic("tasks: RegisterBackend(nil)")
	}
	name := b.Name()
	backends.Lock()
	prev, had := backends.m[name]
	backends.m[name] = b
	backends.Unlock()
	return func() {
		backends.Lock()
		defer backends.Unlock()
		if backends.m[name] != b {
			return // replaced since; leave the newer one
		}
		if had {
			backends.m[name] = prev
		} else {
			delete(backends.m, name)
		}
	}
}

// UnregisterBackend removes the backend configured under name.
func UnregisterBackend(name string) {
	backends.Lock()
	delete(backends.m, name)
	backends.Unlock()
}

// GetBackend returns the backend configured under name. With nothing
// configured under "default", it returns a process-wide immediate backend
// (the django-tasks default). An unknown name is an error wrapping
// ErrInvalidBackend.
func GetBackend(name string) (Backend, error) {
	if name == "" {
		name = DefaultBackendName
	}
	backends.RLock()
	b, ok := backends.m[name]
	backends.RUnlock()
	if ok {
		return b, nil
	}
	if name == DefaultBackendName {
		backends.Lock()
		defer backends.Unlock()
		if b, ok := backends.m[name]; ok {
			return b, nil
		}
		if backends.fallback == nil {
			backends.fallback = newFallback()
		}
		return backends.fallback, nil
	}
	return nil, fmt.Errorf("%w: no backend named %q is configured (configured: %v)", ErrInvalidBackend, name, BackendNames())
}

// BackendNames lists the configured backend names, sorted.
func BackendNames() []string {
	backends.RLock()
	defer backends.RUnlock()
	names := make([]string, 0, len(backends.m))
	for n := range backends.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
