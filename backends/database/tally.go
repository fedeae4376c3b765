package database

import (
	"sync"
	"sync/atomic"
)

// tally is the bookkeeping that the worker's services share. Its fields are
// atomics and a sync.Map: several goroutines write them, none owns them.
type tally struct {
	claimed   atomic.Int64 // fetcher adds (claims), subtracts (releases): claimed and not released
	freed     atomic.Int64 // executor: slots freed (attempts that finished running)
	processed atomic.Int64 // completer: outcomes recorded (or given up)
	// inflight holds the ids claimed and not yet recorded: the heartbeat
	// keeps their lease. The fetcher adds, the fetcher (releases) and the
	// completer delete, the heartbeat reads.
	inflight sync.Map
	// capacity is signalled (without blocking, capacity 1) whenever the
	// fetcher may claim more: a slot freed, outcomes recorded, claims
	// released.
	capacity chan struct{}
}

func newTally() *tally { return &tally{capacity: make(chan struct{}, 1)} }

// pending is the number of claimed tasks whose outcome is not recorded.
func (t *tally) pending() int64 { return t.claimed.Load() - t.processed.Load() }

// signal tells the fetcher that capacity may have grown.
func (t *tally) signal() {
	select {
	case t.capacity <- struct{}{}:
	default:
	}
}

// heldIDs returns the ids under the heartbeat.
func (t *tally) heldIDs() []string {
	var ids []string
	t.inflight.Range(func(k, _ any) bool {
		ids = append(ids, k.(string))
		return true
	})
	return ids
}
