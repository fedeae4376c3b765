package database

import (
	"context"
	"log/slog"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// countsMigration is the version of SQLite's migration that counts
// finished tasks in gotasks_count instead of indexing them by queue.
const countsMigration = "20261206000001"

// TestCountsMigration: on SQLite, the counts migration counts the finished
// rows already there, per backend, queue and status; its down migration
// puts the index back and drops the counters.
func TestCountsMigration(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := openDSN(ctx, dbtest.SQLiteDSN(t), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	d := dialectOf(db)
	before := migratorWithout(t, db, d, countsMigration)
	if _, err := before.Migrate(ctx); err != nil {
		t.Fatalf("migrate to the schema before %s: %v", countsMigration, err)
	}
	at := d.ts(now())
	for i, c := range []struct{ backend, queue, status string }{
		{"mig", "a", "SUCCESSFUL"}, {"mig", "a", "SUCCESSFUL"}, {"mig", "a", "FAILED"}, {"mig", "b", "CANCELLED"},
		{"mig", "b", "READY"}, {"mig", "b", "RUNNING"}, {"other", "a", "SUCCESSFUL"},
	} {
		if _, err := db.DB.ExecContext(ctx, `INSERT INTO gotasks_task (id, task_name, status, args, queue, backend,
			run_after, enqueued_at, finished_at) VALUES ($1, 'm.task', $2, '{}', $3, $4, $5, $5,
			CASE WHEN $2 IN `+finishedStatuses+` THEN $5 END)`,
			string(rune('a'+i)), c.status, c.queue, c.backend, at); err != nil {
			t.Fatal(err)
		}
	}
	applied, err := MigrateWithReport(ctx, db)
	if err != nil || len(applied) == 0 || applied[0] != countsMigration {
		t.Fatalf("applied over the old schema: %v (err %v); want %s first", applied, err, countsMigration)
	}
	b, err := New(ctx, db, WithName("mig"), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	got, err := b.countFinished(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[tasks.Status]int64{
		"a": {tasks.StatusSuccessful: 2, tasks.StatusFailed: 1},
		"b": {tasks.StatusCancelled: 1},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("counts after the migration (-want +got):\n%s", diff)
	}

	full, err := newMigrator(db)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := full.Rollback(ctx); err != nil {
		t.Fatalf("rollback: %v", err)
	}
	var n int
	if err := db.DB.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master
		WHERE name = 'gotasks_task_queue_idx' OR name = 'gotasks_count'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("after the down migration: %d of the queue index and the counters (err %v), want the index alone", n, err)
	}
}
