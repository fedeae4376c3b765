package database

import (
	"context"
	"time"
)

// Releasing tasks claimed ahead (see aheadEstimator) that never started.
// Everything here runs on the fetcher's goroutine and owns f.unreleased and
// f.releaseRetryAt.

// release hands claimed tasks that never started back to the queue (see
// Backend.release). If that fails (the database is away), the tasks stay
// RUNNING under this worker, still under its heartbeat, and the fetcher
// tries again before its next claim (retryRelease) and when it exits; if
// the last try fails too, they are rescued after RescueAfter (by another
// worker, or by the next one started with this worker id).
func (f *fetcher) release(ctx context.Context, rows []*row, why string) {
	refs := make([]claimRef, len(rows))
	for i, r := range rows {
		refs[i] = claimRef{id: r.ID, attempts: r.Attempts}
	}
	f.releaseRefs(ctx, refs, why)
}

func (f *fetcher) releaseRefs(ctx context.Context, refs []claimRef, why string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	n, err := f.b.release(rctx, f.cfg.WorkerID, refs)
	if err != nil {
		f.unreleased = append(f.unreleased, refs...)
		f.releaseRetryAt = time.Now().Add(time.Second)
		f.log.Error("gotasks: releasing tasks claimed ahead failed; will try again",
			"tasks", len(refs), "why", why, "err", err)
		return
	}
	// Rows not released were rescued meanwhile (a retried release): they
	// are no longer this claim's either.
	f.forget(refs)
	f.log.Debug("gotasks: released tasks claimed ahead", "tasks", n, "why", why)
	f.t.signal() // the backlog shrank
}

// forget takes claims that will not start off the heartbeat and the
// claimed count.
func (f *fetcher) forget(refs []claimRef) {
	for _, c := range refs {
		f.t.inflight.Delete(c.id)
	}
	f.t.claimed.Add(-int64(len(refs)))
}

// retryRelease tries again, at most once a second, to release the tasks
// whose release failed. When final (the fetcher exits), it tries once more
// unless the last failure is under a second old, and tasks it cannot
// release are given up to rescue.
func (f *fetcher) retryRelease(ctx context.Context, final bool) {
	if len(f.unreleased) == 0 {
		return
	}
	if due := !time.Now().Before(f.releaseRetryAt); due {
		refs := f.unreleased
		f.unreleased = nil
		f.releaseRefs(ctx, refs, "retry")
	} else if !final {
		return
	}
	if final && len(f.unreleased) > 0 {
		f.log.Error("gotasks: gave up releasing tasks claimed ahead at shutdown; they stay RUNNING until rescued",
			"tasks", len(f.unreleased))
		f.forget(f.unreleased)
		f.unreleased = nil
	}
}

// releaseDue fires when failed releases are due for another try; nil when
// there are none. The fetcher's waits select on it so that a retry is not
// held up until a slot frees or the next poll.
func (f *fetcher) releaseDue() <-chan time.Time {
	if len(f.unreleased) == 0 {
		return nil
	}
	return time.After(max(0, time.Until(f.releaseRetryAt)))
}

// dropReclaimed forgets the unreleased claims of rows claimed again: their
// release failed, they were rescued meanwhile, and rows holds the live
// claim (same id, so the heartbeat entry stays).
func (f *fetcher) dropReclaimed(rows []*row) {
	ids := make(map[string]bool, len(rows))
	for _, r := range rows {
		ids[r.ID] = true
	}
	kept := f.unreleased[:0]
	for _, c := range f.unreleased {
		if ids[c.id] {
			f.t.claimed.Add(-1)
			continue
		}
		kept = append(kept, c)
	}
	clear(f.unreleased[len(kept):])
	f.unreleased = kept
}
