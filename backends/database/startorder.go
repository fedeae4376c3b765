package database

import (
	"context"
	"sync"
)

// startOrder keeps the signals of one task in order within this process.
//
// A write that makes a row runnable again (a retry, a rescue) or inserts one
// (the next run of a repeating task) commits before its writer sends the
// TaskFinished (or TaskEnqueued) signal for it, and any worker of this
// process may claim the row in between. Without a check that worker could
// send TaskStarted for the next attempt before TaskFinished of the previous
// one. So a writer holds such rows before its write and lets them go once
// their signals are sent, and a worker that claimed a held row waits before
// it sends TaskStarted. Holding is only needed for writes whose rows can be
// claimed at once; the common case (a task finishing for good) costs one
// sync.Map lookup per started task.
type startOrder struct {
	ids sync.Map // id → chan struct{}, closed once the row's signals are sent

	mu       sync.Mutex
	rescue   chan struct{} // non-nil while rescues' signals are pending
	rescuers int
}

// hold holds the starts of ids until the returned function is called. It is
// called before the write that makes them claimable.
func (s *startOrder) hold(ids []string) (release func()) {
	sent := make(chan struct{})
	for _, id := range ids {
		s.ids.Store(id, sent)
	}
	return func() {
		for _, id := range ids {
			s.ids.CompareAndDelete(id, sent)
		}
		close(sent)
	}
}

// holdRescue holds the starts of every row whose last error is a rescue's
// (WorkerLostType) until the returned function is called: which rows a
// rescue takes is known only once it has committed.
func (s *startOrder) holdRescue() (release func()) {
	s.mu.Lock()
	if s.rescue == nil {
		s.rescue = make(chan struct{})
	}
	s.rescuers++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.rescuers--; s.rescuers == 0 {
			close(s.rescue)
			s.rescue = nil
		}
	}
}

// await returns once the signals that precede the start of claimed row r
// in this process have been sent, or ctx is done.
func (s *startOrder) await(ctx context.Context, r *row) {
	if sent, ok := s.ids.Load(r.ID); ok {
		select {
		case <-sent.(chan struct{}):
		case <-ctx.Done():
			return
		}
	}
	if n := len(r.Errors); n == 0 || r.Errors[n-1].Type != WorkerLostType {
		return // not rescued: no rescue's signal to wait for
	}
	s.mu.Lock()
	rescue := s.rescue
	s.mu.Unlock()
	if rescue != nil {
		select {
		case <-rescue:
		case <-ctx.Done():
		}
	}
}
