package database

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"sort"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/migrate"
)

//go:embed migrations
var migrationFiles embed.FS

// The bookkeeping tables of bun's migrator, named for gotasks so that they
// do not collide with the application's own migrations.
const (
	migrationsTable     = "gotasks_migrations"
	migrationLocksTable = "gotasks_migration_locks"
)

func migrationsFor(d Dialect) (*migrate.Migrations, error) {
	sub, err := fs.Sub(migrationFiles, "migrations/"+string(d))
	if err != nil {
		return nil, err
	}
	m := migrate.NewMigrations()
	if err := m.Discover(sub); err != nil {
		return nil, fmt.Errorf("gotasks: embedded migrations: %w", err)
	}
	return m, nil
}

func newMigrator(db *bun.DB) (*migrate.Migrator, error) {
	d := dialectOf(db)
	if d == "" {
		return nil, fmt.Errorf("gotasks: unsupported dialect %s", db.Dialect().Name())
	}
	ms, err := migrationsFor(d)
	if err != nil {
		return nil, err
	}
	return migrate.NewMigrator(db, ms,
		migrate.WithTableName(migrationsTable),
		migrate.WithLocksTableName(migrationLocksTable),
		migrate.WithMarkAppliedOnSuccess(true)), nil
}

// Migrate applies the pending gotasks migrations to db. It is safe to run
// from several processes at once: on PostgreSQL they wait for each other on
// an advisory lock; on SQLite on bun's lock table (and SQLite's own write
// lock). Migrations already applied are skipped, so running it again is a
// no-op. MigrateWithReport also returns the names of the migrations applied.
func Migrate(ctx context.Context, db *bun.DB) error {
	_, err := MigrateWithReport(ctx, db)
	return err
}

// MigrateWithReport is Migrate that also returns the names of the
// migrations it applied.
func MigrateWithReport(ctx context.Context, db *bun.DB) ([]string, error) {
	m, err := newMigrator(db)
	if err != nil {
		return nil, err
	}
	unlock, err := lockMigrations(ctx, db, m)
	if err != nil {
		return nil, err
	}
	defer unlock()
	group, err := m.Migrate(ctx)
	if err != nil {
		return nil, fmt.Errorf("gotasks: migrate: %w", err)
	}
	var names []string
	if group != nil {
		for _, mg := range group.Migrations {
			names = append(names, mg.Name)
		}
	}
	return names, nil
}

// lockMigrations takes the cross-process migration lock and initialises
// bun's tables: an advisory lock where the database has one
// (featAdvisoryLock), else bun's lock table.
func lockMigrations(ctx context.Context, db *bun.DB, m *migrate.Migrator) (func(), error) {
	d := dialectOf(db)
	if featuresOf(d).has(featAdvisoryLock) {
		conn, err := db.DB.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnreachable, err)
		}
		h := fnv.New64a()
		h.Write([]byte("gotasks migrations"))
		key := int64(h.Sum64())
		release, err := newStore(d, storeConfig{db: db.DB}).advisoryLock(ctx, conn, key)
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("gotasks: migrate: advisory lock: %w", err)
		}
		unlock := func() {
			release(context.WithoutCancel(ctx))
			conn.Close()
		}
		if err := m.Init(ctx); err != nil {
			unlock()
			return nil, fmt.Errorf("gotasks: migrate: init: %w", err)
		}
		return unlock, nil
	}
	if err := m.Init(ctx); err != nil {
		return nil, fmt.Errorf("gotasks: migrate: init: %w", err)
	}
	// bun's lock table; wait (poll) while another process holds it.
	delay := 10 * time.Millisecond
	for {
		err := m.Lock(ctx)
		if err == nil {
			return func() { _ = m.Unlock(context.WithoutCancel(ctx)) }, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("gotasks: migrate: waiting for the migration lock: %w", errors.Join(ctx.Err(), err))
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

// MigrationSQL returns the SQL of every embedded migration of dialect d, in
// order, each preceded by a comment with its name, for review or for an
// outside migration tool. The text also creates bun's bookkeeping tables
// (gotasks_migrations, gotasks_migration_locks, as Migrate does) and records
// each migration in gotasks_migrations after its statements, so that once
// it is applied, Open, PendingMigrations and Migrate see the migrations as
// applied. Apply it in one transaction where the tool can.
func MigrationSQL(d Dialect) (string, error) {
	dir := "migrations/" + string(d)
	entries, err := fs.ReadDir(migrationFiles, dir)
	if err != nil {
		return "", fmt.Errorf("gotasks: no migrations for dialect %q", d)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".up.sql") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("-- bookkeeping of applied migrations (bun's migrator tables)\n")
	b.WriteString(bookkeepingSQL[d])
	for _, n := range names {
		body, err := fs.ReadFile(migrationFiles, dir+"/"+n)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "-- migration %s\n", strings.TrimSuffix(n, ".up.sql"))
		b.WriteString(strings.ReplaceAll(string(body), "--bun:split", ""))
		// bun records the version part of 20261101000001_name.
		version, _, _ := strings.Cut(n, "_")
		fmt.Fprintf(&b, "\n-- record the migration as applied\n"+
			"INSERT INTO %[1]s (name, group_id)\n"+
			"SELECT '%[2]s', m.g FROM (SELECT COALESCE(MAX(group_id), 0) + 1 AS g FROM %[1]s) AS m\n"+
			"WHERE NOT EXISTS (SELECT 1 FROM %[1]s WHERE name = '%[2]s');\n", migrationsTable, version)
	}
	return b.String(), nil
}

// bookkeepingSQL creates bun's migrator tables as its Init does (the
// statements bun generates for migrate.Migration and its lock row).
var bookkeepingSQL = map[Dialect]string{
	Postgres: `CREATE TABLE IF NOT EXISTS ` + migrationsTable + ` ("id" BIGSERIAL NOT NULL, "name" VARCHAR, "group_id" BIGINT, "migrated_at" TIMESTAMPTZ NOT NULL DEFAULT current_timestamp, PRIMARY KEY ("id"));
CREATE TABLE IF NOT EXISTS ` + migrationLocksTable + ` ("id" BIGSERIAL NOT NULL, "table_name" VARCHAR, PRIMARY KEY ("id"), UNIQUE ("table_name"));
`,
	SQLite: `CREATE TABLE IF NOT EXISTS ` + migrationsTable + ` ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "name" VARCHAR, "group_id" INTEGER, "migrated_at" TIMESTAMP NOT NULL DEFAULT current_timestamp);
CREATE TABLE IF NOT EXISTS ` + migrationLocksTable + ` ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "table_name" VARCHAR, UNIQUE ("table_name"));
`,
}

// PendingMigrations returns the names of the embedded migrations not yet
// applied to db.
func PendingMigrations(ctx context.Context, db *bun.DB) ([]string, error) {
	d := dialectOf(db)
	if d == "" {
		return nil, fmt.Errorf("gotasks: unsupported dialect %s", db.Dialect().Name())
	}
	return pendingMigrations(ctx, d, newStore(d, storeConfig{db: db.DB}), db.DB)
}

// pendingMigrations returns the embedded migrations of d that st does not
// list as applied on q.
func pendingMigrations(ctx context.Context, d Dialect, st store, q querier) ([]string, error) {
	ms, err := migrationsFor(d)
	if err != nil {
		return nil, err
	}
	all := ms.Sorted()
	applied, err := st.appliedMigrations(ctx, q)
	if err != nil {
		if schemaMissing(err) {
			names := make([]string, len(all))
			for i, m := range all {
				names[i] = m.Name
			}
			return names, nil
		}
		return nil, err
	}
	done := map[string]bool{}
	for _, n := range applied {
		done[n] = true
	}
	var pending []string
	for _, m := range all {
		if !done[m.Name] {
			pending = append(pending, m.Name)
		}
	}
	return pending, nil
}

// checkSchema returns an error wrapping ErrSchemaMissing when migrations are
// pending.
func (b *Backend) checkSchema(ctx context.Context) error {
	pending, err := pendingMigrations(ctx, b.dialect, b.store, b.db.DB)
	if err != nil {
		return fmt.Errorf("gotasks: check schema: %w", err)
	}
	if len(pending) > 0 {
		return fmt.Errorf("%w: %d migration(s) pending (%s) on the %s database; %s",
			ErrSchemaMissing, len(pending), strings.Join(pending, ", "), b.dialect, migrateHint)
	}
	return nil
}
