package database

import (
	"context"
	"sync"
	"time"
)

// hub delivers wake-ups to this process's workers and completion notices
// to result waiters. Without featNotify (SQLite) they come from this
// process only; with it (PostgreSQL) listener connections (store.listen)
// bring those of every process: LISTEN gotasks_wake, started when the
// first worker subscribes, and LISTEN gotasks_done, started when the first
// result waiter does; both are stopped by Backend.Close.
//
// The two are apart so that a worker process, which waits for no result,
// does not receive a notice of every finished task of every worker: with
// eight worker processes that delivery cost the workers 4–7 µs of CPU a
// task (docs/performance.md, issue 17).
type hub struct {
	b *Backend

	mu      sync.Mutex
	nextID  int
	wakers  map[int]chan struct{}
	waiters map[string]map[int]chan struct{}

	wakeL, doneL hubListener
	// connected is closed when the wake-up listener first listens (tests,
	// latency benchmarks).
	connected     chan struct{}
	connectedOnce sync.Once
}

// hubListener is one listener connection's goroutine (hub.listen).
type hubListener struct {
	wakes  bool // read-only: listens for wake-ups, else for finished results
	once   sync.Once
	cancel context.CancelFunc // guarded by hub.mu
	done   chan struct{}      // guarded by hub.mu; closed when listen returns
}

func newHub(b *Backend) *hub {
	return &hub{b: b, wakers: map[int]chan struct{}{}, waiters: map[string]map[int]chan struct{}{},
		wakeL: hubListener{wakes: true}, connected: make(chan struct{})}
}

// subscribeWake returns a channel that receives (coalesced) wake-ups.
func (h *hub) subscribeWake() (<-chan struct{}, func()) {
	h.startListener(&h.wakeL)
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.nextID++
	id := h.nextID
	h.wakers[id] = ch
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.wakers, id)
		h.mu.Unlock()
	}
}

// wake signals every subscribed worker.
func (h *hub) wake() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ch := range h.wakers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// waitFor returns a channel signalled when result id may have finished.
func (h *hub) waitFor(id string) (<-chan struct{}, func()) {
	h.startListener(&h.doneL)
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	h.nextID++
	key := h.nextID
	if h.waiters[id] == nil {
		h.waiters[id] = map[int]chan struct{}{}
	}
	h.waiters[id][key] = ch
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(h.waiters[id], key)
		if len(h.waiters[id]) == 0 {
			delete(h.waiters, id)
		}
		h.mu.Unlock()
	}
}

// hasWaiters reports whether anyone in this process waits for a result.
func (h *hub) hasWaiters() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.waiters) > 0
}

// finished signals the waiters of ids.
func (h *hub) finished(ids ...string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.waiters) == 0 {
		return
	}
	for _, id := range ids {
		for _, ch := range h.waiters[id] {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// wakeWaiters signals every result waiter (after the listener
// reconnects, when notifications may have been missed).
func (h *hub) wakeWaiters() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, ws := range h.waiters {
		for _, ch := range ws {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// startListener starts l's goroutine, once.
func (h *hub) startListener(l *hubListener) {
	if !h.b.has(featNotify) {
		return // nothing comes from other processes: in-process signals only
	}
	l.once.Do(func() {
		if !h.b.has(featListen) {
			h.b.log.Info("gotasks: LISTEN/NOTIFY needs the pgx stdlib driver; workers and waiters will poll",
				"backend", h.b.Name())
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		h.mu.Lock()
		l.cancel, l.done = cancel, make(chan struct{})
		h.mu.Unlock()
		go h.listen(ctx, l)
	})
}

func (h *hub) close() {
	for _, l := range []*hubListener{&h.wakeL, &h.doneL} {
		h.mu.Lock()
		cancel, done := l.cancel, l.done
		h.mu.Unlock()
		if cancel != nil {
			cancel()
			<-done
		}
	}
}

// listen keeps a LISTEN connection open until ctx is done, reconnecting
// with backoff when it is lost.
func (h *hub) listen(ctx context.Context, l *hubListener) {
	defer close(l.done)
	delay := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := h.listenOnceConn(ctx, l.wakes)
		if ctx.Err() != nil {
			return
		}
		h.b.log.Warn("gotasks: notification listener lost its connection; reconnecting",
			"backend", h.b.Name(), "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 5*time.Second)
	}
}

// listenOnceConn listens on one connection until it fails or ctx is done:
// for wake-ups (wakes) or for finished results.
func (h *hub) listenOnceConn(ctx context.Context, wakes bool) error {
	if wakes {
		return h.b.store.listen(ctx, listener{
			listening: func() {
				h.connectedOnce.Do(func() { close(h.connected) })
				h.wake() // anything sent while we were not listening
			},
			wake: h.wake,
		})
	}
	return h.b.store.listen(ctx, listener{
		listening: h.wakeWaiters, // anything sent while we were not listening
		finished:  func(ids []string) { h.finished(ids...) },
	})
}
