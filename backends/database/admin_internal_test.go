package database

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// TestCountFinishedSplit: where Stats splits its count over connections by
// queue and status (SQLite), the counts are those of the one statement it
// replaces.
func TestCountFinishedSplit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := Open(ctx, dbtest.SQLiteDSN(t), WithName("split"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	if !b.has(featSerialScans) {
		t.Fatal("SQLite should split its counts")
	}
	var reqs []*tasks.EnqueueRequest
	for i := range 300 {
		reqs = append(reqs, &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: "t", Args: json.RawMessage(`1`),
			Queue: fmt.Sprintf("q%d", i%3), RunAfter: time.Now(), MaxAttempts: 1})
	}
	if _, err := b.EnqueueMany(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	// Some of them finished, in every status: counts per (queue, status)
	// differ.
	if _, err := b.db.DB.ExecContext(ctx, `UPDATE gotasks_task SET status = CASE rowid % 5
		WHEN 0 THEN 'SUCCESSFUL' WHEN 1 THEN 'FAILED' WHEN 2 THEN 'CANCELLED' WHEN 3 THEN 'RUNNING' ELSE 'READY' END,
		finished_at = CASE WHEN rowid % 5 < 3 THEN enqueued_at END WHERE rowid % 7 <> 0`); err != nil {
		t.Fatal(err)
	}
	want, err := b.store.finishedCounts(ctx, b.db.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.countFinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("split counts (-one statement +split):\n%s", diff)
	}
}
