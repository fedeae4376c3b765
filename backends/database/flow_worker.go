package database

import (
	"context"
)

// The fetcher's side of flow control (see flow.go).

// claimRound runs one claim: the plain claim statement when neither this
// worker (cfg.QueueConcurrency) nor the backend (gotasks_queue) limits a
// queue, claimFlow otherwise. planTag is the plan-generation comment.
// Called by the fetcher's goroutine.
func (f *fetcher) claimRound(ctx context.Context, planTag string, limit int) ([]*row, error) {
	local := f.localRoom()
	global, err := f.b.flowActive(ctx)
	if err != nil {
		return nil, err
	}
	f.flowOn = global || local != nil
	if !f.flowOn {
		return f.b.claim(ctx, f.query+planTag, limit, f.cfg.WorkerID, f.cfg.Queues, f.cfg.ExcludeQueues, f.backlog)
	}
	rows, err := f.b.claimFlow(ctx, planTag, limit, f.cfg.WorkerID, f.cfg.Queues, f.cfg.ExcludeQueues, local, global)
	if err != nil || local == nil {
		return rows, err
	}
	for _, r := range rows {
		if ids, ok := f.held[r.Queue]; ok {
			ids[r.ID] = struct{}{}
		}
	}
	return rows, nil
}

// localRoom returns, for each queue of cfg.QueueConcurrency, how many more
// of its tasks this worker may claim: its cap minus the tasks of the queue
// it holds (claimed, not yet recorded or released); nil when the worker
// caps no queue. Called by the fetcher's goroutine.
func (f *fetcher) localRoom() map[string]int {
	if len(f.cfg.QueueConcurrency) == 0 {
		return nil
	}
	if f.held == nil {
		f.held = make(map[string]map[string]struct{}, len(f.cfg.QueueConcurrency))
		for q := range f.cfg.QueueConcurrency {
			f.held[q] = map[string]struct{}{}
		}
	}
	room := make(map[string]int, len(f.cfg.QueueConcurrency))
	for q, n := range f.cfg.QueueConcurrency {
		ids := f.held[q]
		for id := range ids {
			if _, ok := f.t.inflight.Load(id); !ok { // recorded or released
				delete(ids, id)
			}
		}
		room[q] = max(0, n-len(ids))
	}
	return room
}
