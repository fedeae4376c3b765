package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the admin connection

	"github.com/gotasks/gotasks/backends/database"
)

// backendName is the name of the benchmark's backend (WithName).
const backendName = "taskbench"

// target is the database the benchmark was pointed at.
type target struct {
	dialect database.Dialect
	base    string  // PostgreSQL: the DSN given; SQLite: the directory for temp dirs ("" = os.TempDir)
	admin   *sql.DB // PostgreSQL: creates and drops schemas
	keep    bool
}

func newTarget(ctx context.Context, dsn string, keep bool) (*target, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", database.ErrBadDSN, err)
		}
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := db.PingContext(pctx); err != nil {
			_ = db.Close()
			return nil, fmt.Errorf("%w: postgres: %v", database.ErrUnreachable, err)
		}
		db.SetMaxOpenConns(2)
		return &target{dialect: database.Postgres, base: dsn, admin: db, keep: keep}, nil
	case dsn == "sqlite" || dsn == "sqlite:" || dsn == "":
		return &target{dialect: database.SQLite, keep: keep}, nil
	case strings.HasPrefix(dsn, "sqlite://") || strings.HasPrefix(dsn, "sqlite3://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", database.ErrBadDSN, dsn, err)
		}
		dir := filepath.Dir(u.Host + u.Path)
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return nil, fmt.Errorf("%w %q: directory %q does not exist", database.ErrBadDSN, dsn, dir)
		}
		return &target{dialect: database.SQLite, base: dir, keep: keep}, nil
	}
	return nil, fmt.Errorf("%w %q: want postgres://…, sqlite, or sqlite:///dir/file.db (in-memory SQLite cannot be shared with the worker process)", database.ErrBadDSN, dsn)
}

func (t *target) close() {
	if t.admin != nil {
		_ = t.admin.Close()
	}
}

// fresh is one fresh database: a schema or a SQLite file.
type fresh struct {
	dsn     string
	label   string // schema name or file path
	schema  string // PostgreSQL only
	cleanup func() error
}

// withParam returns dsn with a query parameter set.
func withParam(dsn, key, value string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return "", err
	}
	q := u.Query()
	q.Set(key, value)
	// Spaces as %20: libpq-style parsers (pgx among them) do not read '+'
	// as a space (options=-c%20name%3Dvalue). A literal '+' is %2B here.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "+", "%20")
	return u.String(), nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// fresh creates a fresh database.
func (t *target) fresh(ctx context.Context) (*fresh, error) {
	if t.dialect == database.Postgres {
		schema := "taskbench_" + randomHex(6)
		if _, err := t.admin.ExecContext(ctx, "CREATE SCHEMA "+schema); err != nil {
			return nil, fmt.Errorf("create schema %s: %w", schema, err)
		}
		dsn, err := withParam(t.base, "search_path", schema)
		if err != nil {
			return nil, err
		}
		f := &fresh{dsn: dsn, label: "schema " + schema, schema: schema}
		f.cleanup = func() error {
			if t.keep {
				return nil
			}
			// Not ctx: the schema must go even after an interrupt.
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := t.admin.ExecContext(cctx, "DROP SCHEMA "+schema+" CASCADE")
			return err
		}
		return f, nil
	}
	dir, err := os.MkdirTemp(t.base, "taskbench-")
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "tasks.db")
	f := &fresh{dsn: "sqlite://" + path, label: "file " + path}
	f.cleanup = func() error {
		if t.keep {
			return nil
		}
		return os.RemoveAll(dir)
	}
	return f, nil
}

// open opens a backend on f named backendName, migrating the schema.
// appName (PostgreSQL) sets application_name on its connections.
func (t *target) open(ctx context.Context, f *fresh, appName string) (*database.Backend, error) {
	dsn := f.dsn
	if t.dialect == database.Postgres && appName != "" {
		var err error
		if dsn, err = withParam(dsn, "application_name", appName); err != nil {
			return nil, err
		}
	}
	return database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithName(backendName),
		database.WithLogger(quietLogger(os.Stderr)))
}

// settings returns the server settings that matter for the figures.
func (t *target) settings(ctx context.Context) []string {
	if t.dialect != database.Postgres {
		return nil
	}
	var out []string
	for _, name := range []string{"server_version", "shared_buffers", "synchronous_commit", "fsync",
		"max_connections", "wal_level", "full_page_writes", "commit_delay", "work_mem", "effective_io_concurrency",
		"autovacuum"} {
		var v string
		if err := t.admin.QueryRowContext(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			v = "?"
		}
		out = append(out, name+"="+v)
	}
	return out
}
