package main

import (
	"context"
	"fmt"

	"github.com/gotasks/gotasks/backends/database"
)

// applyGlobalLimit sets --global-limit on the benchmark's queue (the no-op
// task's): with a limit high enough never to bind (1000 at concurrency
// 100), every claim takes the limited path (flow.go in backends/database),
// so a burn-down with and without it measures what a global limit costs at
// claim time.
func (bn *bench) applyGlobalLimit(ctx context.Context, b *database.Backend) error {
	if bn.o.globalLimit <= 0 {
		return nil
	}
	if err := b.SetQueueLimit(ctx, noop.Queue(), bn.o.globalLimit); err != nil {
		return fmt.Errorf("--global-limit: %w", err)
	}
	bn.logf("  global limit: at most %d RUNNING in queue %q (the limited claim)", bn.o.globalLimit, noop.Queue())
	return nil
}
