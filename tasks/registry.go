package tasks

import (
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
)

// DefaultBackendName is the name of the backend tasks use unless they say
// otherwise.
const DefaultBackendName = "default"

var backends = struct {
	sync.RWMutex
	m map[string]Backend
	// stacks holds, per name, the registrations not yet restored, oldest
	// first; m[name] is the newest. A restore removes its own
	// registration wherever it is, so registrations whose lifetimes
	// overlap without nesting (two workers of one process) leave nothing
	// stale behind.
	stacks   map[string][]*registration
	fallback Backend
	// open counts, per backend name, the backends (and the workers of
	// backends) in use in this process; see MarkBackendOpen.
	open map[string]int
	// warned is set once the implicit default's warning was logged.
	warned bool
}{m: map[string]Backend{}, stacks: map[string][]*registration{}, open: map[string]int{}}

// registration is one configuration of a backend under a name.
type registration struct{ b Backend }

// RegisterBackend configures b under b.Name(), replacing a backend of that
// name if there was one. It returns a function that removes this
// registration again (handy in tests: t.Cleanup(tasks.RegisterBackend(b))):
// the name then goes back to the newest registration not yet removed, or
// to nothing, whatever order the removals come in.
//
// Tasks that name no backend (WithBackend) enqueue to the one registered
// under "default" (DefaultBackendName). Register the backend meant to run
// them under that name: give it the name "default" (the database backend's
// default name), or register it a second time with RegisterBackendAs.
func RegisterBackend(b Backend) (restore func()) {
	if b == nil {
		panic("tasks: RegisterBackend(nil)")
	}
	return registerBackend(b.Name(), b)
}

// RegisterBackendAs configures b under name as well, replacing a backend
// configured under that name if there was one: typically
// RegisterBackendAs("default", b) to make b, registered under its own name,
// the backend of the tasks that name none. b keeps its own Name(): it
// stores the tasks enqueued through name as its own, and its workers run
// them. It returns a function that removes this registration again (see
// RegisterBackend).
func RegisterBackendAs(name string, b Backend) (restore func()) {
	if b == nil {
		panic("tasks: RegisterBackendAs(nil)")
	}
	if name == "" {
		name = DefaultBackendName
	}
	return registerBackend(name, b)
}

// RegisterBackendIfAbsent configures b under name only when nothing is
// configured under that name, in one step (a LookupBackend followed by
// RegisterBackendAs races with another caller doing the same, and their
// restores can then leave a stale backend configured). It reports whether
// it did; restore removes b again if it is still the one under name.
func RegisterBackendIfAbsent(name string, b Backend) (restore func(), registered bool) {
	if b == nil {
		panic("tasks: RegisterBackendIfAbsent(nil)")
	}
	if name == "" {
		name = DefaultBackendName
	}
	backends.Lock()
	defer backends.Unlock()
	if _, ok := backends.m[name]; ok {
		return func() {}, false
	}
	return pushLocked(name, b), true
}

func registerBackend(name string, b Backend) (restore func()) {
	backends.Lock()
	defer backends.Unlock()
	return pushLocked(name, b)
}

// pushLocked configures b under name on top of the earlier registrations
// and returns the restore that removes it. backends is locked.
func pushLocked(name string, b Backend) (restore func()) {
	r := &registration{b: b}
	backends.stacks[name] = append(backends.stacks[name], r)
	backends.m[name] = b
	return func() {
		backends.Lock()
		defer backends.Unlock()
		st := backends.stacks[name]
		i := slices.Index(st, r)
		if i < 0 {
			return // unregistered meanwhile
		}
		st = slices.Delete(st, i, i+1)
		if len(st) == 0 {
			delete(backends.stacks, name)
			delete(backends.m, name)
			return
		}
		backends.stacks[name] = st
		backends.m[name] = st[len(st)-1].b
	}
}

// UnregisterBackend removes the backend configured under name.
func UnregisterBackend(name string) {
	backends.Lock()
	delete(backends.m, name)
	delete(backends.stacks, name)
	backends.Unlock()
}

// LookupBackend returns the backend configured under name ("" means
// "default"), and false when there is none. Unlike GetBackend, it never
// returns the implicit default.
func LookupBackend(name string) (Backend, bool) {
	if name == "" {
		name = DefaultBackendName
	}
	backends.RLock()
	defer backends.RUnlock()
	b, ok := backends.m[name]
	return b, ok
}

// GetBackend returns the backend configured under name. An unknown name is
// an error wrapping ErrInvalidBackend.
//
// With nothing configured under "default", GetBackend("default") returns
// the implicit default: a process-wide immediate backend that runs each
// task in the caller's goroutine as it is enqueued (the django-tasks
// default), which is what a script or a first try wants. In a process that
// has a real backend, it is almost always a mistake: a forgotten
// RegisterBackend, or a backend registered under another name only, and
// tasks then run inline in a web request instead of in a worker. So the
// first time the implicit default is used while any backend is registered
// (under another name) or marked open with MarkBackendOpen (the database
// backend's workers do), GetBackend logs a warning, once per process,
// through slog.Default(), naming the backends and the fix:
// RegisterBackend(b) for a backend named "default", or
// RegisterBackendAs("default", b). It is not an error: a process may use
// the implicit default on purpose next to other backends. Tasks run by a
// worker enqueue their follow-ups to that worker's backend, not to
// "default" (see TaskContext).
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
		return implicitDefault()
	}
	return nil, fmt.Errorf("%w: no backend named %q is configured (configured: %v)", ErrInvalidBackend, name, BackendNames())
}

// implicitDefault returns the backend registered under "default" if one
// was registered meanwhile, else the fallback, logging the warning of
// GetBackend the first time it is due.
func implicitDefault() (Backend, error) {
	backends.Lock()
	if b, ok := backends.m[DefaultBackendName]; ok {
		backends.Unlock()
		return b, nil
	}
	if backends.fallback == nil {
		backends.fallback = newFallback()
	}
	fb := backends.fallback
	var registered, open []string
	warn := !backends.warned && (len(backends.m) > 0 || len(backends.open) > 0)
	if warn {
		backends.warned = true
		registered = sortedKeys(backends.m)
		open = sortedKeys(backends.open)
	}
	backends.Unlock()
	if warn {
		// Logged outside the lock: a handler may enqueue or look up
		// backends.
		slog.Default().Warn(`gotasks: a task was enqueued to the implicit "default" backend, which runs it inline in the caller: `+
			`no backend is registered under "default" although this process has other backends. `+
			`Register the backend that should run these tasks: tasks.RegisterBackend(b) for a backend named "default", `+
			`or tasks.RegisterBackendAs("default", b). This warning is logged once per process.`,
			"registered", registered, "open", open)
	}
	return fb, nil
}

// MarkBackendOpen records that a backend named name is in use in this
// process (open, or running a worker) until done is called: while any is,
// the first use of the implicit default logs the warning described at
// GetBackend even if nothing is registered. It is for backend and worker
// authors; database.Worker calls it while it runs. done may be called more
// than once.
func MarkBackendOpen(name string) (done func()) {
	backends.Lock()
	backends.open[name]++
	backends.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			backends.Lock()
			defer backends.Unlock()
			if backends.open[name]--; backends.open[name] <= 0 {
				delete(backends.open, name)
			}
		})
	}
}

// BackendNames lists the configured backend names, sorted.
func BackendNames() []string {
	backends.RLock()
	defer backends.RUnlock()
	return sortedKeys(backends.m)
}

func sortedKeys[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
