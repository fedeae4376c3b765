// Package recent keeps the most recent values by id, up to a bound: the
// result store of the backends that run tasks as they are enqueued (the
// immediate backend and the core's implicit default), which keep results
// for GetResult without growing without end. Keys adds to a Store an index
// of unique keys, bounded by the ids the store keeps.
package recent

import "sync"

// Store maps ids to values and forgets the oldest ids beyond its bound. It
// is safe for concurrent use. Values are stored as given: store copies
// when the caller may change them later.
type Store[V any] struct {
	keep int

	mu    sync.Mutex
	m     map[string]V // guarded by mu
	order []string     // ids, oldest first; guarded by mu

	// forgot, when set, is called under mu with each id the store
	// forgets, after its value is deleted.
	forgot func(id string)
}

// New returns a store that keeps the keep most recently added ids; keep ≤ 0
// keeps every id.
func New[V any](keep int) *Store[V] {
	return &Store[V]{keep: keep, m: map[string]V{}}
}

// Put stores v under id. A new id counts as the most recent; replacing the
// value of a kept id does not change its place.
func (s *Store[V]) Put(id string, v V) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.put(id, v)
}

// put is Put with s.mu held.
func (s *Store[V]) put(id string, v V) {
	if _, ok := s.m[id]; !ok {
		s.order = append(s.order, id)
		for s.keep > 0 && len(s.order) > s.keep {
			old := s.order[0]
			delete(s.m, old)
			s.order[0] = "" // let the id be collected
			s.order = s.order[1:]
			if s.forgot != nil {
				s.forgot(old)
			}
		}
	}
	s.m[id] = v
}

// Get returns the value stored under id, and whether it is kept.
func (s *Store[V]) Get(id string) (V, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[id]
	return v, ok
}

// Len returns the number of kept ids.
func (s *Store[V]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}
