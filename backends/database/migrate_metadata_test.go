package database

import (
	"context"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// metadataMigration is the version of the migration that added the
// metadata column.
const metadataMigration = "20261204000001"

// TestMetadataMigration: the metadata migration upgrades a schema that has
// rows: they read back without metadata, and new rows store theirs; its
// down migration removes the column, and it applies again after.
func TestMetadataMigration(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		db, err := openDSN(ctx, dsn, false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = db.Close() })
		d := dialectOf(db)

		// The schema as it was before the migration, with a row in it.
		before := migratorWithout(t, db, d, metadataMigration)
		if _, err := before.Migrate(ctx); err != nil {
			t.Fatalf("migrate to the schema before %s: %v", metadataMigration, err)
		}
		at := d.ts(now().Add(-time.Minute))
		if _, err := db.DB.ExecContext(ctx, `INSERT INTO gotasks_task (id, task_name, status, args, backend, run_after, enqueued_at)
			VALUES ('old', 'm.task', 'READY', '{}', 'mig', $1, $1)`, at); err != nil {
			t.Fatal(err)
		}

		applied, err := MigrateWithReport(ctx, db)
		if err != nil {
			t.Fatal(err)
		}
		// The metadata migration first, then any later ones.
		if len(applied) == 0 || applied[0] != metadataMigration {
			t.Fatalf("applied over the old schema: %v; want %s first", applied, metadataMigration)
		}
		b, err := New(ctx, db, WithName("mig"), WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		old, err := b.GetResult(ctx, "old")
		if err != nil || old.Metadata != nil {
			t.Fatalf("row written before the migration: metadata %v, err %v; want none", old, err)
		}
		md := map[string]string{"k": "v"}
		if _, err := b.Enqueue(ctx, &tasks.EnqueueRequest{ID: "new", TaskName: "m.task", Args: []byte(`{}`),
			Queue: tasks.DefaultQueue, MaxAttempts: 1, Metadata: md}); err != nil {
			t.Fatal(err)
		}
		if r, err := b.GetResult(ctx, "new"); err != nil || !cmp.Equal(md, r.Metadata) {
			t.Fatalf("row written after the migration: %v, err %v; want metadata %v", r, err, md)
		}

		// Down, then up again.
		full, err := newMigrator(db)
		if err != nil {
			t.Fatal(err)
		}
		group, err := full.Rollback(ctx)
		if err != nil {
			t.Fatalf("rollback: %v", err)
		}
		var rolledBack []string
		for _, m := range group.Migrations {
			rolledBack = append(rolledBack, m.Name)
		}
		if diff := cmp.Diff(applied, rolledBack, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
			t.Fatalf("rolled back (-want +got):\n%s", diff)
		}
		if _, err := db.DB.ExecContext(ctx, `SELECT metadata FROM gotasks_task`); err == nil {
			t.Error("the metadata column is still there after the down migration")
		}
		if again, err := MigrateWithReport(ctx, db); err != nil || !cmp.Equal(applied, again) {
			t.Errorf("migrate after the rollback: applied %v, %v; want %v", again, err, applied)
		}
	})
}

// migratorWithout returns a migrator of dialect d's embedded migrations
// but those from version skip on, recording in gotasks' bookkeeping tables.
func migratorWithout(t *testing.T, db *bun.DB, d Dialect, skip string) *migrate.Migrator {
	t.Helper()
	sub, err := fs.Sub(migrationFiles, "migrations/"+string(d))
	if err != nil {
		t.Fatal(err)
	}
	files := fstest.MapFS{}
	err = fs.WalkDir(sub, ".", func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || strings.Split(path, "_")[0] >= skip {
			return err
		}
		body, err := fs.ReadFile(sub, path)
		files[path] = &fstest.MapFile{Data: body}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	ms := migrate.NewMigrations()
	if err := ms.Discover(files); err != nil {
		t.Fatal(err)
	}
	m := migrate.NewMigrator(db, ms, migrate.WithTableName(migrationsTable),
		migrate.WithLocksTableName(migrationLocksTable), migrate.WithMarkAppliedOnSuccess(true))
	if err := m.Init(context.Background()); err != nil {
		t.Fatal(err)
	}
	return m
}
