package reliability_test

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
)

// pgDSNWith returns the test server's DSN with its user and/or database
// replaced.
func pgDSNWith(t *testing.T, user, db string) string {
	t.Helper()
	u, err := url.Parse(dbtest.BaseDSN())
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		u.User = url.User(user)
	}
	if db != "" {
		u.Path = "/" + db
	}
	return u.String()
}

// TestBadDatabase: invalid DSNs, an unreachable server, a database or role
// that does not exist, a file that is not a database, and a missing schema
// are each one clear error — from database.Open and from the worker
// command, which exits 1 with one line naming the problem (and never the
// password).
func TestBadDatabase(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(garbage, []byte(strings.Repeat("this is not a database\n", 200)), 0o644); err != nil {
		t.Fatal(err)
	}
	type tc struct {
		name     string
		dsn      func(t *testing.T) string
		postgres bool
		sentinel error
		want     string // fragment of the message
		noMigr   bool   // open without migrating (the missing-schema cases)
	}
	cases := []tc{
		{name: "unknown-scheme", dsn: func(*testing.T) string { return "mysql://user:secret@localhost/app" },
			sentinel: database.ErrBadDSN, want: "the scheme must be"},
		{name: "empty", dsn: func(*testing.T) string { return "" }, sentinel: database.ErrBadDSN, want: "the scheme must be"},
		{name: "sqlite-no-dir", dsn: func(*testing.T) string { return "sqlite:///no/such/dir/tasks.db" },
			sentinel: database.ErrBadDSN, want: "does not exist"},
		{name: "sqlite-no-path", dsn: func(*testing.T) string { return "sqlite://" }, sentinel: database.ErrBadDSN, want: "no file path"},
		{name: "sqlite-not-a-database", dsn: func(*testing.T) string { return "sqlite://" + garbage },
			want: "not a database"},
		{name: "sqlite-schema-missing", dsn: func(t *testing.T) string { return dbtest.SQLiteDSN(t) }, noMigr: true,
			sentinel: database.ErrSchemaMissing, want: "dbworker migrate"},
		{name: "postgres-bad-url", dsn: func(*testing.T) string { return "postgres://user:secret@[::1/app" },
			sentinel: database.ErrBadDSN, want: "bad database DSN"},
		{name: "postgres-refused", dsn: func(*testing.T) string {
			return "postgres://postgres:secret@127.0.0.1:1/test?sslmode=disable&connect_timeout=5"
		}, sentinel: database.ErrUnreachable, want: "connect"},
		{name: "postgres-no-such-database", postgres: true,
			dsn:      func(t *testing.T) string { return pgDSNWith(t, "", "gotasks_no_such_db") },
			sentinel: database.ErrUnreachable, want: `database "gotasks_no_such_db" does not exist`},
		{name: "postgres-no-such-role", postgres: true,
			dsn:      func(t *testing.T) string { return pgDSNWith(t, "gotasks_no_such_role", "") },
			sentinel: database.ErrUnreachable, want: `role "gotasks_no_such_role" does not exist`},
		{name: "postgres-schema-missing", postgres: true, noMigr: true,
			dsn:      func(t *testing.T) string { return dbtest.PostgresDSN(t) },
			sentinel: database.ErrSchemaMissing, want: "dbworker migrate"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if c.postgres {
				dbtest.RequirePostgres(t)
			}
			dsn := c.dsn(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var opts []database.Option
			if c.noMigr {
				opts = append(opts, database.WithAutoMigrate(false))
			}
			b, err := database.Open(ctx, dsn, opts...)
			if err == nil {
				b.Close()
				t.Fatalf("Open(%q) succeeded, want an error", dsn)
			}
			msg := err.Error()
			if c.sentinel != nil && !errors.Is(err, c.sentinel) {
				t.Errorf("Open: %v; want an error wrapping %v", err, c.sentinel)
			}
			if !strings.Contains(msg, c.want) {
				t.Errorf("Open: %q; want it to contain %q", msg, c.want)
			}
			if strings.Contains(msg, "secret") {
				t.Errorf("Open: the error shows the password: %q", msg)
			}
			if strings.Count(msg, "\n") > 0 {
				t.Errorf("Open: a multi-line error: %q", msg)
			}
			t.Logf("Open: %v", err)

			if c.noMigr {
				// The command runs `check` (no auto-migration on either
				// database) to show the missing schema.
				checkCommand(t, []string{"check", "--database", dsn}, 1, c.want)
				return
			}
			checkCommand(t, []string{"--database", dsn, "--batch"}, 1, c.want)
		})
	}
	t.Run("usage", func(t *testing.T) {
		t.Parallel()
		checkCommand(t, []string{"--concurrency", "many"}, 2, "invalid value")
		checkCommand(t, []string{"--no-such-flag"}, 2, "flag provided but not defined")
	})
}

// checkCommand runs relworker with args and checks its exit code and that
// its output says want, on one "dbworker" line, without a stack trace or
// the password.
func checkCommand(t *testing.T, args []string, code int, want string) {
	t.Helper()
	cmd := exec.Command(workerBin(t), args...)
	cmd.Env = append(os.Environ(), database.DSNEnv+"=")
	out, err := cmd.CombinedOutput()
	got := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		got = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("relworker %v: %v", args, err)
	}
	s := string(out)
	if got != code {
		t.Errorf("relworker %v: exit code %d, want %d; output:\n%s", args, got, code, s)
	}
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, want) {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 {
		t.Errorf("relworker %v: %d lines say %q, want 1; output:\n%s", args, len(lines), want, s)
	}
	if strings.Contains(s, "secret") || strings.Contains(s, "goroutine ") {
		t.Errorf("relworker %v: output shows a password or a stack trace:\n%s", args, s)
	}
}
