package tasks

import (
	"context"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/internal/recent"
)

// fallbackKeep is how many results the fallback keeps for GetResult, as the
// immediate backend does by default.
const fallbackKeep = 10000

// fallback is the backend GetBackend returns for "default" when nothing is
// registered under that name (SPEC §4: as django-tasks' default, it runs
// each task immediately). It behaves as package backends/immediate with its
// default options: both run tasks through RunInline.
type fallback struct {
	BackendConfig
	// results keeps the results for GetResult, and the unique keys of
	// unique tasks, each held by its latest task while that task's result
	// is kept.
	results *recent.Keys[*RawResult]
}

func newFallback() *fallback {
	return &fallback{results: recent.NewKeys[*RawResult](fallbackKeep)}
}

// Capabilities implements Backend: those of the immediate backend.
func (b *fallback) Capabilities() Capabilities {
	return CanGetResult | CanPriority | CanTimeout | CanUnique
}

// Enqueue implements Backend: it runs the task before returning.
func (b *fallback) Enqueue(ctx context.Context, req *EnqueueRequest) (*RawResult, error) {
	return b.run(ctx, req), nil
}

// run runs req, unless it is a unique task with a duplicate: then it returns
// the duplicate's result (as the immediate backend does).
func (b *fallback) run(ctx context.Context, req *EnqueueRequest) *RawResult {
	if req.UniqueKey != "" {
		// Stored READY at once, in the claim, so that a concurrent enqueue
		// sees it before RunInline stores it.
		ready := req.NewRawResult(b.Name(), time.Now().UTC())
		statuses := req.UniqueStatuses // not req: the key outlives the call
		if r, dup := b.results.Claim(req.UniqueKey, req.ID, ready,
			func(r *RawResult) bool { return statuses.Has(r.Status) }); dup {
			return r.Clone()
		}
	}
	return RunInline(ctx, b, &b.BackendConfig, req, b.store)
}

// EnqueueMany implements Backend: it runs the tasks one after the other.
func (b *fallback) EnqueueMany(ctx context.Context, reqs []*EnqueueRequest) ([]*RawResult, error) {
	out := make([]*RawResult, len(reqs))
	for i, req := range reqs {
		out[i] = b.run(ctx, req)
	}
	return out, nil
}

func (b *fallback) store(r *RawResult) { b.results.Put(r.ID, r) }

// GetResult implements Backend.
func (b *fallback) GetResult(_ context.Context, id string) (*RawResult, error) {
	r, ok := b.results.Get(id)
	if !ok {
		return nil, fmt.Errorf("backend %q: result %q: %w", b.Name(), id, ErrResultNotFound)
	}
	return r.Clone(), nil
}

// Cancel implements Backend: its tasks are finished before anyone could
// cancel them.
func (b *fallback) Cancel(context.Context, string) error {
	return fmt.Errorf("backend %q: cancel: %w", b.Name(), ErrNotSupported)
}

// Check implements Backend.
func (b *fallback) Check(context.Context) error { return b.CheckConfig() }
