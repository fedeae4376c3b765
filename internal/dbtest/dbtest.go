// Package dbtest gives each test its own database: a fresh PostgreSQL
// schema (dropped at cleanup) or a SQLite file in t.TempDir(). Tests that
// use it run on both dialects with ForEachDialect.
//
// PostgreSQL is reached through GOTASKS_TEST_POSTGRES_DSN (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable). When it is
// unreachable, PostgreSQL tests fail under CI=true and are skipped
// otherwise.
package dbtest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx" driver for the admin connection

	"github.com/gotasks/gotasks/tasks"
)

// EnvPostgresDSN names the variable with the PostgreSQL server for tests.
const EnvPostgresDSN = "GOTASKS_TEST_POSTGRES_DSN"

// DefaultPostgresDSN is used when EnvPostgresDSN is unset.
const DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Dialects are the names ForEachDialect uses for its subtests.
var Dialects = []string{"postgres", "sqlite"}

var (
	pgOnce sync.Once
	pgErr  error
	pgDB   *sql.DB
)

// BaseDSN returns the PostgreSQL DSN tests use.
func BaseDSN() string {
	if v := os.Getenv(EnvPostgresDSN); v != "" {
		return v
	}
	return DefaultPostgresDSN
}

func admin() (*sql.DB, error) {
	pgOnce.Do(func() {
		pgDB, pgErr = sql.Open("pgx", BaseDSN())
		if pgErr == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			pgErr = pgDB.PingContext(ctx)
		}
	})
	return pgDB, pgErr
}

// RequirePostgres fails (under CI=true) or skips the test when the test
// PostgreSQL server is unreachable.
func RequirePostgres(t testing.TB) {
	t.Helper()
	if _, err := admin(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("PostgreSQL is required under CI=true but unreachable at %s: %v", BaseDSN(), err)
		}
		t.Skipf("PostgreSQL unreachable at %s (set %s): %v", BaseDSN(), EnvPostgresDSN, err)
	}
}

// PostgresDSN creates a fresh schema and returns a DSN whose search_path is
// that schema. The schema is dropped when the test ends.
func PostgresDSN(t testing.TB) string {
	t.Helper()
	RequirePostgres(t)
	db, _ := admin()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "gotasks_test_" + hex.EncodeToString(b[:])
	if _, err := db.Exec("CREATE SCHEMA " + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := db.Exec("DROP SCHEMA " + schema + " CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	u, err := url.Parse(BaseDSN())
	if err != nil {
		t.Fatalf("parse %s: %v", EnvPostgresDSN, err)
	}
	q := u.Query()
	q.Set("search_path", schema)
	u.RawQuery = q.Encode()
	return u.String()
}

// SQLiteDSN returns the DSN of a new SQLite file in t.TempDir().
func SQLiteDSN(t testing.TB) string {
	t.Helper()
	return "sqlite://" + filepath.Join(t.TempDir(), "tasks.db")
}

// DSN returns a fresh database of the named dialect ("postgres" or
// "sqlite").
func DSN(t testing.TB, dialect string) string {
	t.Helper()
	switch dialect {
	case "postgres":
		return PostgresDSN(t)
	case "sqlite":
		return SQLiteDSN(t)
	}
	t.Fatalf("dbtest: unknown dialect %q", dialect)
	return ""
}

// ForEachDialect runs f as a parallel subtest per dialect, each with its
// own fresh database.
func ForEachDialect(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) {
			t.Parallel()
			f(t, DSN(t, d))
		})
	}
}

// ForEachDialectSerial runs f as a subtest per dialect, one after the
// other, each with its own fresh database: for tests that change what the
// process shares (the default slog logger, the backend registry).
func ForEachDialectSerial(t *testing.T, f func(t *testing.T, dsn string)) {
	t.Helper()
	for _, d := range Dialects {
		t.Run(d, func(t *testing.T) { f(t, DSN(t, d)) })
	}
}

// WaitUntil polls cond every 5 ms until it holds, failing the test after
// timeout: the poll-with-deadline the tests use instead of sleeps.
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// StatusCounts returns the number of backend's rows in db per status.
func StatusCounts(ctx context.Context, db *sql.DB, backend string) (map[tasks.Status]int, error) {
	rows, err := db.QueryContext(ctx, `SELECT status, count(*) FROM gotasks_task WHERE backend = $1 GROUP BY status`, backend)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[tasks.Status]int{}
	for rows.Next() {
		var s string
		var n int
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[tasks.Status(s)] = n
	}
	return out, rows.Err()
}
