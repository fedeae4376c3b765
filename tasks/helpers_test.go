package tasks_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/tasks"
)

var nameSeq atomic.Int64

// uniqueName returns a task or backend name no other test uses, also when
// the tests run more than once (-count).
func uniqueName(t *testing.T) string {
	return fmt.Sprintf("tasks_test.%s.%d", strings.ReplaceAll(t.Name(), "/", "."), nameSeq.Add(1))
}

// mustPanic runs fn and checks that it panics with a message containing
// want.
func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		v := recover()
		if v == nil {
			t.Errorf("no panic, want one mentioning %q", want)
			return
		}
		if !strings.Contains(fmt.Sprint(v), want) {
			t.Errorf("panic %q, want one mentioning %q", v, want)
		}
	}()
	fn()
}

// newDummy returns a registered dummy backend with a unique name.
func newDummy(t *testing.T, opts ...tasks.BackendOption) (*dummy.Backend, string) {
	t.Helper()
	name := uniqueName(t)
	b := dummy.New(append([]tasks.BackendOption{tasks.WithName(name)}, opts...)...)
	t.Cleanup(tasks.RegisterBackend(b))
	return b, name
}

// limited hides capabilities of a backend.
type limited struct {
	tasks.Backend
	caps tasks.Capabilities
}

func (l limited) Capabilities() tasks.Capabilities { return l.caps }

// recording wraps a backend and records what the core hands it.
type recording struct {
	tasks.Backend
	mu       sync.Mutex
	reqs     []*tasks.EnqueueRequest
	ctxs     []context.Context
	enqueues int // calls of Enqueue
	manys    int // calls of EnqueueMany
}

func (r *recording) Enqueue(ctx context.Context, req *tasks.EnqueueRequest) (*tasks.RawResult, error) {
	r.mu.Lock()
	r.enqueues++
	r.reqs = append(r.reqs, req)
	r.ctxs = append(r.ctxs, ctx)
	r.mu.Unlock()
	return r.Backend.Enqueue(ctx, req)
}

func (r *recording) EnqueueMany(ctx context.Context, reqs []*tasks.EnqueueRequest) ([]*tasks.RawResult, error) {
	r.mu.Lock()
	r.manys++
	r.reqs = append(r.reqs, reqs...)
	r.ctxs = append(r.ctxs, ctx)
	r.mu.Unlock()
	return r.Backend.EnqueueMany(ctx, reqs)
}

// joiner is a recording backend that claims CanTransact and joins every
// transaction whose hooks it owns.
type joiner struct {
	*recording
	caps tasks.Capabilities
}

func (j joiner) Capabilities() tasks.Capabilities { return j.caps }

func (j joiner) JoinsTx(ctx context.Context) bool {
	h := tasks.TxFromContext(ctx)
	return h != nil && h.Owner() == j.recording
}

func newDummyUnregistered(name string) *dummy.Backend { return dummy.New(tasks.WithName(name)) }
