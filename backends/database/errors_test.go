package database_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

const dbtSecret = "hunter2-s3cret"

// dbtOneClearMessage fails unless err is one line that says what it is
// about and leaks no password.
func dbtOneClearMessage(t *testing.T, what string, err error, mustContain ...string) {
	t.Helper()
	msg := err.Error()
	if strings.ContainsAny(msg, "\n\r") {
		t.Errorf("%s: the message spans several lines:\n%s", what, msg)
	}
	if strings.Contains(msg, dbtSecret) {
		t.Errorf("%s: the message leaks the password: %s", what, msg)
	}
	for _, s := range mustContain {
		if !strings.Contains(msg, s) {
			t.Errorf("%s: message %q does not mention %q", what, msg, s)
		}
	}
}

func TestOpenBadDSN(t *testing.T) {
	t.Parallel()
	ctx := dbtCtx(t)
	for _, dsn := range []string{
		"",
		"mysql://x",
		"mysql://root:" + dbtSecret + "@db/app",
		"tasks.db",
		"sqlite://",
		"sqlite:///no/such/directory/tasks.db",
		"postgres://%zz",
		"postgres://postgres:" + dbtSecret + "@%zz/test",
		"postgresql://postgres:" + dbtSecret + "@127.0.0.1:5432,%zz/test",
		"postgres://postgres:" + dbtSecret + "@127.0.0.1:99999/test",
		"postgres://postgres:" + dbtSecret + "@127.0.0.1:5432/test?sslmode=bogus",
		"postgres://postgres@127.0.0.1:5432/test?sslmode=bogus&password=" + dbtSecret,
	} {
		b, err := database.Open(ctx, dsn)
		if err == nil {
			b.Close()
			t.Errorf("Open(%q) succeeded", dsn)
			continue
		}
		if !errors.Is(err, database.ErrBadDSN) {
			t.Errorf("Open(%q) = %v, want ErrBadDSN", dsn, err)
		}
		dbtOneClearMessage(t, fmt.Sprintf("Open(%q)", dsn), err, "bad database DSN")
	}
}

func TestOpenUnreachable(t *testing.T) {
	t.Parallel()
	ctx := dbtCtx(t)
	for _, dsn := range []string{
		"postgres://postgres@127.0.0.1:1/test?connect_timeout=2",
		"postgres://postgres:" + dbtSecret + "@127.0.0.1:1/test?connect_timeout=2",
		"postgres://postgres@127.0.0.1:1/test?connect_timeout=2&password=" + dbtSecret,
	} {
		start := time.Now()
		b, err := database.Open(ctx, dsn)
		if err == nil {
			b.Close()
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if !errors.Is(err, database.ErrUnreachable) {
			t.Errorf("Open(%q) = %v, want ErrUnreachable", dsn, err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("Open(%q) took %v", dsn, d)
		}
		dbtOneClearMessage(t, fmt.Sprintf("Open(%q)", dsn), err, "database unreachable", "127.0.0.1:1")
		t.Logf("%s", err)
	}
	// A SQLite path that cannot be opened as a database (a directory).
	dir := t.TempDir()
	b, err := database.Open(ctx, "sqlite://"+dir)
	if err == nil {
		b.Close()
		t.Fatal("Open of a directory succeeded")
	}
	if !errors.Is(err, database.ErrUnreachable) && !errors.Is(err, database.ErrBadDSN) {
		t.Errorf("Open of a directory: %v, want ErrUnreachable or ErrBadDSN", err)
	}
	dbtOneClearMessage(t, "Open of a directory", err)
}

func TestSchemaMissing(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		opts := []database.Option{database.WithName(dbtName(t))}
		if !dbtIsPostgres(dsn) {
			// SQLite migrates itself unless told not to.
			opts = append(opts, database.WithAutoMigrate(false))
		}
		b, err := database.Open(ctx, dsn, opts...)
		if err == nil {
			b.Close()
			t.Fatal("Open of an unmigrated database succeeded")
		}
		if !errors.Is(err, database.ErrSchemaMissing) {
			t.Fatalf("Open: %v, want ErrSchemaMissing", err)
		}
		dbtOneClearMessage(t, "Open of an unmigrated database", err, "dbworker migrate", "pending")
		t.Logf("%s", err)

		// Once migrated, it opens; a table dropped later is reported by
		// every operation with the same hint.
		b = dbtOpen(t, dsn)
		if _, err := b.DB().DB.ExecContext(ctx, `DROP TABLE gotasks_task`); err != nil {
			t.Fatal(err)
		}
		_, err = dbtAdd.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, dbtArgs{})
		if !errors.Is(err, database.ErrSchemaMissing) {
			t.Fatalf("Enqueue without the table: %v, want ErrSchemaMissing", err)
		}
		dbtOneClearMessage(t, "Enqueue without the table", err, "dbworker migrate")
		if _, err := b.GetResult(ctx, "x"); !errors.Is(err, database.ErrSchemaMissing) {
			t.Errorf("GetResult without the table: %v, want ErrSchemaMissing", err)
		}
		if _, err := b.List(ctx, database.Filter{}); !errors.Is(err, database.ErrSchemaMissing) {
			t.Errorf("List without the table: %v, want ErrSchemaMissing", err)
		}
	})
}

func TestCheckReportsEveryProblem(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		if err := b.Check(ctx); err != nil {
			t.Fatalf("Check of a healthy backend: %v", err)
		}

		// A bad configuration and a schema that is not up to date.
		b.AllowedQueues = []string{"bad,queue"}
		if _, err := b.DB().DB.ExecContext(ctx, `DROP TABLE gotasks_migrations`); err != nil {
			t.Fatal(err)
		}
		err := b.Check(ctx)
		if err == nil {
			t.Fatal("Check found no problem")
		}
		for _, want := range []error{tasks.ErrInvalidBackend, database.ErrSchemaMissing} {
			if !errors.Is(err, want) {
				t.Errorf("Check: %v; does not match %v", err, want)
			}
		}
		dbtOneClearMessage(t, "Check", err, "2 problem(s)", "bad,queue", "dbworker migrate")
		t.Logf("%s", err)

		// A bad configuration and an unreachable database.
		b2, err := database.Open(ctx, dbtest.DSN(t, dbtDialect(dsn)), database.WithName(dbtName(t)),
			database.WithLogger(dbtLogger), database.WithAutoMigrate(true))
		if err != nil {
			t.Fatal(err)
		}
		b2.AllowedQueues = []string{""}
		if err := b2.Close(); err != nil {
			t.Fatal(err)
		}
		err = b2.Check(ctx)
		if !errors.Is(err, tasks.ErrInvalidBackend) || !errors.Is(err, database.ErrUnreachable) {
			t.Errorf("Check of a closed, misconfigured backend: %v; want ErrInvalidBackend and ErrUnreachable", err)
		} else {
			dbtOneClearMessage(t, "Check", err, "2 problem(s)", "database unreachable")
			t.Logf("%s", err)
		}
	})
}

func TestMigrateIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		// Several goroutines, each with its own connection pool, open (and
		// so migrate) a fresh database at once.
		const n = 8
		var wg sync.WaitGroup
		backends := make([]*database.Backend, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				backends[i], errs[i] = database.Open(ctx, dsn, database.WithAutoMigrate(true),
					database.WithName(dbtName(t)), database.WithLogger(dbtLogger))
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("concurrent Open+Migrate %d: %v", i, err)
			} else {
				t.Cleanup(func() { backends[i].Close() })
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		b := backends[0]
		// Several goroutines migrate one pool at once; then once more.
		migErrs := make([]error, n)
		for i := range n {
			wg.Go(func() { migErrs[i] = database.Migrate(ctx, b.DB()) })
		}
		wg.Wait()
		for i, err := range migErrs {
			if err != nil {
				t.Errorf("concurrent Migrate %d: %v", i, err)
			}
		}
		applied, err := database.MigrateWithReport(ctx, b.DB())
		if err != nil || len(applied) != 0 {
			t.Errorf("Migrate of a current schema applied %v (%v), want nothing", applied, err)
		}
		pending, err := database.PendingMigrations(ctx, b.DB())
		if err != nil || len(pending) != 0 {
			t.Errorf("PendingMigrations = %v, %v", pending, err)
		}
		dbtWantMigrationRows(t, b)

		// And the schema works.
		t.Cleanup(tasks.RegisterBackend(b))
		if _, err := dbtAdd.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, dbtArgs{}); err != nil {
			t.Errorf("Enqueue after concurrent migrations: %v", err)
		}
	})
}

// Several processes migrate one fresh database at once.
func TestMigrateConcurrentProcesses(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		outs := dbtRunHelpers(t, 4, "migrate", dsn, nil)
		for i, o := range outs {
			if len(o.Errors) > 0 {
				t.Errorf("process %d: %v", i, o.Errors)
			}
		}
		b := dbtOpen(t, dsn, database.WithAutoMigrate(false))
		dbtWantMigrationRows(t, b)
	})
}

// dbtWantMigrationRows checks that every embedded migration is recorded
// exactly once.
func dbtWantMigrationRows(t *testing.T, b *database.Backend) {
	t.Helper()
	rows, err := b.DB().DB.QueryContext(context.Background(), `SELECT name FROM gotasks_migrations ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	sqlText, err := database.MigrationSQL(b.Dialect())
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, line := range strings.Split(sqlText, "\n") {
		if name, ok := strings.CutPrefix(line, "-- migration "); ok {
			// bun records the version part of 20261101000001_name.tx.
			version, _, _ := strings.Cut(name, "_")
			want = append(want, version)
		}
	}
	if len(want) == 0 {
		t.Fatal("MigrationSQL names no migration")
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("recorded migrations (-want +got):\n%s", diff)
	}
}

func TestMigrationSQL(t *testing.T) {
	t.Parallel()
	for _, d := range []database.Dialect{database.Postgres, database.SQLite} {
		s, err := database.MigrationSQL(d)
		if err != nil {
			t.Fatalf("MigrationSQL(%s): %v", d, err)
		}
		for _, want := range []string{"-- migration ", "CREATE TABLE gotasks_task", "run_after", "CHECK (priority BETWEEN -100 AND 100)", "gotasks_task_claim_idx"} {
			if !strings.Contains(s, want) {
				t.Errorf("MigrationSQL(%s) lacks %q", d, want)
			}
		}
		if strings.Contains(s, "--bun:split") {
			t.Errorf("MigrationSQL(%s) contains bun directives", d)
		}
	}
	if _, err := database.MigrationSQL(database.Dialect("mysql")); err == nil {
		t.Error("MigrationSQL(mysql) succeeded")
	}

}

// The text of MigrationSQL applies by hand to a fresh database.
func TestMigrationSQLByHand(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		db := applyMigrationSQLByHand(t, ctx, dsn)
		var n int
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM gotasks_task`).Scan(&n); err != nil || n != 0 {
			t.Errorf("gotasks_task after applying by hand: %d rows, %v", n, err)
		}
		_, err := db.ExecContext(ctx, `INSERT INTO gotasks_task (id, task_name, status, args, priority, run_after, enqueued_at)
			VALUES ('x', 'y', 'READY', '{}', 101, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)`)
		if err == nil {
			t.Error("priority 101 passed the CHECK constraint")
		}
	})
}

// The pool size and lifetimes can be set in the DSN with pgxpool's
// parameter names, on both dialects; a bad or unknown pool parameter is
// ErrBadDSN.
func TestOpenPoolSettings(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		sep := "?"
		if strings.Contains(dsn, "?") {
			sep = "&"
		}
		wantDefault := 8
		if dbtIsPostgres(dsn) {
			wantDefault = 32
		}
		for _, c := range []struct {
			params string
			want   int
		}{
			{"", wantDefault},
			{"pool_max_conns=5", 5},
			{"pool_max_conns=3&pool_max_conn_idle_time=1m&pool_max_conn_lifetime=1h", 3},
		} {
			full := dsn
			if c.params != "" {
				full += sep + c.params
			}
			b, err := database.Open(ctx, full, database.WithAutoMigrate(true), database.WithName(dbtName(t)))
			if err != nil {
				t.Errorf("Open with %q: %v", c.params, err)
				continue
			}
			if got := b.DB().DB.Stats().MaxOpenConnections; got != c.want {
				t.Errorf("Open with %q: pool of %d, want %d", c.params, got, c.want)
			}
			// The connections work (the parameters were not sent to the
			// server as settings).
			if _, err := dbtEnqueueOn(ctx, b); err != nil {
				t.Errorf("Open with %q: Enqueue: %v", c.params, err)
			}
			b.Close()
		}
		for _, bad := range []string{"pool_max_conns=0", "pool_max_conns=five", "pool_min_conns=2", "pool_max_conn_lifetime=forever"} {
			b, err := database.Open(ctx, dsn+sep+bad, database.WithName(dbtName(t)))
			if err == nil {
				b.Close()
				t.Errorf("Open with %q succeeded", bad)
				continue
			}
			if !errors.Is(err, database.ErrBadDSN) {
				t.Errorf("Open with %q = %v, want ErrBadDSN", bad, err)
			}
			dbtOneClearMessage(t, bad, err, strings.SplitN(bad, "=", 2)[0])
		}
	})
}

// libpq's key=value DSNs open PostgreSQL, pool parameters included.
func TestOpenKeyValueDSN(t *testing.T) {
	t.Parallel()
	ctx := dbtCtx(t)
	u, err := url.Parse(dbtest.PostgresDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	kv := []string{"host=" + u.Hostname(), "dbname=" + strings.TrimPrefix(u.Path, "/")}
	if p := u.Port(); p != "" {
		kv = append(kv, "port = "+p)
	}
	if u.User != nil {
		kv = append(kv, "user='"+u.User.Username()+"'")
		if pw, ok := u.User.Password(); ok {
			kv = append(kv, "password='"+pw+"'")
		}
	}
	for k, vs := range u.Query() {
		kv = append(kv, k+"="+vs[0])
	}
	kv = append(kv, "pool_max_conns=4")
	dsn := strings.Join(kv, " ")
	b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithName(dbtName(t)))
	if err != nil {
		t.Fatalf("Open(%q): %v", dsn, err)
	}
	defer b.Close()
	if b.Dialect() != database.Postgres {
		t.Errorf("dialect %s, want postgres", b.Dialect())
	}
	if got := b.DB().DB.Stats().MaxOpenConnections; got != 4 {
		t.Errorf("pool of %d, want 4", got)
	}
	if _, err := dbtEnqueueOn(ctx, b); err != nil {
		t.Errorf("Enqueue: %v", err)
	}
	// A key=value DSN's password is masked in errors.
	_, err = database.Open(ctx, "host=127.0.0.1 port=1 user=postgres password="+dbtSecret+" connect_timeout=2 pool_max_conns=x")
	if !errors.Is(err, database.ErrBadDSN) {
		t.Errorf("bad pool_max_conns in a key=value DSN: %v, want ErrBadDSN", err)
	} else {
		dbtOneClearMessage(t, "key=value DSN", err, "pool_max_conns")
	}
}

// MigrationSQL applied by an outside tool records the migrations: the
// backend then opens without migrating, PendingMigrations is empty and
// Migrate does nothing.
func TestMigrationSQLByHandIsRecorded(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		applyMigrationSQLByHand(t, ctx, dsn)
		b, err := database.Open(ctx, dsn, database.WithAutoMigrate(false), database.WithName(dbtName(t)))
		if err != nil {
			t.Fatalf("Open after applying the SQL by hand: %v", err)
		}
		defer b.Close()
		pending, err := database.PendingMigrations(ctx, b.DB())
		if err != nil || len(pending) != 0 {
			t.Errorf("PendingMigrations = %v, %v; want none", pending, err)
		}
		applied, err := database.MigrateWithReport(ctx, b.DB())
		if err != nil || len(applied) != 0 {
			t.Errorf("Migrate after applying by hand: applied %v, %v; want nothing", applied, err)
		}
		dbtWantMigrationRows(t, b)
		if _, err := dbtEnqueueOn(ctx, b); err != nil {
			t.Errorf("Enqueue: %v", err)
		}
	})
}

// dbtEnqueueOn enqueues one dbtAdd on b, registered for the call.
func dbtEnqueueOn(ctx context.Context, b *database.Backend) (*tasks.Result[dbtSum], error) {
	defer tasks.RegisterBackend(b)()
	return dbtAdd.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, dbtArgs{})
}

// applyMigrationSQLByHand applies the text of MigrationSQL to the fresh
// database of dsn through a plain database/sql connection, as an outside
// migration tool would, and returns that connection (closed at cleanup).
func applyMigrationSQLByHand(t *testing.T, ctx context.Context, dsn string) *sql.DB {
	t.Helper()
	d, driver, conn := database.SQLite, "sqlite", "file:"+strings.TrimPrefix(dsn, "sqlite://")
	if dbtIsPostgres(dsn) {
		d, driver, conn = database.Postgres, "pgx", dsn
	}
	s, err := database.MigrationSQL(d)
	if err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open(driver, conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.ExecContext(ctx, s); err != nil {
		t.Fatalf("apply MigrationSQL(%s): %v", d, err)
	}
	return db
}

// TestRedactDSN: a DSN shown in a log or a message never carries its
// password, in any of the forms a DSN takes.
func TestRedactDSN(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://app:s3cret@db:5432/app?sslmode=disable": "postgres://app:xxxxx@db:5432/app?sslmode=disable",
		"postgres://app@db/app?password=s3cret&x=1":         "postgres://app@db/app?password=xxxxx&x=1",
		"host=db user=app password=s3cret dbname=app":       "host=db user=app password=xxxxx dbname=app",
		"sqlite:///var/lib/tasks.db":                        "sqlite:///var/lib/tasks.db",
	} {
		if got := database.RedactDSN(in); got != want {
			t.Errorf("RedactDSN(%q) = %q, want %q", in, got, want)
		}
	}
}
