package database_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// A database/sql driver wrapper that counts what reaches the database:
// statements (each a round trip), transactions begun and committed.

type dbtCounts struct{ stmts, begins, commits atomic.Int64 }

func (c *dbtCounts) reset() { c.stmts.Store(0); c.begins.Store(0); c.commits.Store(0) }

type dbtSnapshot struct{ Stmts, Begins, Commits int64 }

func (c *dbtCounts) snapshot() dbtSnapshot {
	return dbtSnapshot{c.stmts.Load(), c.begins.Load(), c.commits.Load()}
}

type dbtConnector struct {
	connect func(ctx context.Context) (driver.Conn, error)
	drv     driver.Driver
	c       *dbtCounts
}

func (k *dbtConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := k.connect(ctx)
	if err != nil {
		return nil, err
	}
	return &dbtConn{Conn: conn, c: k.c}, nil
}

func (k *dbtConnector) Driver() driver.Driver { return k.drv }

type dbtConn struct {
	driver.Conn
	c *dbtCounts
}

var (
	_ driver.ExecerContext      = (*dbtConn)(nil)
	_ driver.QueryerContext     = (*dbtConn)(nil)
	_ driver.ConnBeginTx        = (*dbtConn)(nil)
	_ driver.ConnPrepareContext = (*dbtConn)(nil)
	_ driver.NamedValueChecker  = (*dbtConn)(nil)
	_ driver.SessionResetter    = (*dbtConn)(nil)
	_ driver.Validator          = (*dbtConn)(nil)
	_ driver.Pinger             = (*dbtConn)(nil)
)

func (c *dbtConn) ExecContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	r, err := e.ExecContext(ctx, q, args)
	if !errors.Is(err, driver.ErrSkip) {
		c.c.stmts.Add(1)
	}
	return r, err
}

func (c *dbtConn) QueryContext(ctx context.Context, q string, args []driver.NamedValue) (driver.Rows, error) {
	e, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	r, err := e.QueryContext(ctx, q, args)
	if !errors.Is(err, driver.ErrSkip) {
		c.c.stmts.Add(1)
	}
	return r, err
}

func (c *dbtConn) PrepareContext(ctx context.Context, q string) (driver.Stmt, error) {
	var (
		s   driver.Stmt
		err error
	)
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		s, err = p.PrepareContext(ctx, q)
	} else {
		s, err = c.Conn.Prepare(q)
	}
	if err != nil {
		return nil, err
	}
	return &dbtStmt{Stmt: s, c: c.c}, nil
}

func (c *dbtConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var (
		tx  driver.Tx
		err error
	)
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		tx, err = c.Conn.Begin() //nolint:staticcheck // fallback of database/sql itself
	}
	if err != nil {
		return nil, err
	}
	c.c.begins.Add(1)
	return &dbtTx{Tx: tx, c: c.c}, nil
}

func (c *dbtConn) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := c.Conn.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

func (c *dbtConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *dbtConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

func (c *dbtConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

type dbtStmt struct {
	driver.Stmt
	c *dbtCounts
}

func (s *dbtStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.stmts.Add(1)
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	return nil, errors.New("dbtStmt: the driver's statement has no ExecContext")
}

func (s *dbtStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.stmts.Add(1)
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	return nil, errors.New("dbtStmt: the driver's statement has no QueryContext")
}

func (s *dbtStmt) CheckNamedValue(nv *driver.NamedValue) error {
	if ch, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return ch.CheckNamedValue(nv)
	}
	return driver.ErrSkip
}

type dbtTx struct {
	driver.Tx
	c *dbtCounts
}

func (t *dbtTx) Commit() error {
	err := t.Tx.Commit()
	if err == nil {
		t.c.commits.Add(1)
	}
	return err
}

// dbtOpenCounting opens a backend on dsn through the counting driver
// (database.New on a *bun.DB of our own, with the settings of Open).
func dbtOpenCounting(t testing.TB, dsn string) (*database.Backend, *dbtCounts) {
	t.Helper()
	c := &dbtCounts{}
	var db *bun.DB
	if dbtIsPostgres(dsn) {
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			t.Fatal(err)
		}
		inner := stdlib.GetConnector(*cfg)
		db = bun.NewDB(sql.OpenDB(&dbtConnector{connect: inner.Connect, drv: inner.Driver(), c: c}), pgdialect.New())
	} else {
		probe, err := sql.Open("sqlite", "")
		if err != nil {
			t.Fatal(err)
		}
		drv := probe.Driver()
		probe.Close()
		name := "file:" + strings.TrimPrefix(dsn, "sqlite://") +
			"?_pragma=busy_timeout(30000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate"
		sqldb := sql.OpenDB(&dbtConnector{connect: func(context.Context) (driver.Conn, error) { return drv.Open(name) }, drv: drv, c: c})
		sqldb.SetMaxOpenConns(8)
		db = bun.NewDB(sqldb, sqlitedialect.New())
	}
	t.Cleanup(func() { db.Close() })
	b, err := database.New(context.Background(), db, database.WithAutoMigrate(true), database.WithName(dbtName(t)),
		database.WithLogger(dbtLogger))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	t.Cleanup(tasks.RegisterBackend(b))
	return b, c
}

// EnqueueMany of 10,000 tasks: one statement (one round trip) on
// PostgreSQL, one transaction on SQLite.
func TestEnqueueMany10000OneRoundTrip(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b, counts := dbtOpenCounting(t, dsn)
		enq := dbtRecord(t, signals.TaskEnqueued, b.Name())
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		const n = 10000
		args := make([]dbtArgs, n)
		for i := range args {
			args[i] = dbtArgs{A: i, B: 1}
		}

		counts.reset()
		rs, err := task.EnqueueMany(ctx, args)
		got := counts.snapshot()
		if err != nil {
			t.Fatalf("EnqueueMany: %v", err)
		}
		t.Logf("%s: EnqueueMany(%d): %+v", dbtDialect(dsn), n, got)
		if dbtIsPostgres(dsn) {
			if diff := cmp.Diff(dbtSnapshot{Stmts: 1}, got); diff != "" {
				t.Errorf("statements and transactions of EnqueueMany (-want +got):\n%s", diff)
			}
		} else if got.Begins == 0 {
			// One statement in autocommit is one transaction.
			if got.Stmts != 1 {
				t.Errorf("%d statements outside a transaction, want one statement or one transaction", got.Stmts)
			}
		} else if got.Begins != 1 || got.Commits != 1 {
			t.Errorf("%d transactions begun, %d committed; want 1", got.Begins, got.Commits)
		}

		if len(rs) != n {
			t.Fatalf("%d results, want %d", len(rs), n)
		}
		// The counter sees every statement: one GetResult is one.
		counts.reset()
		if _, err := b.GetResult(ctx, rs[0].ID); err != nil {
			t.Fatal(err)
		}
		if got := counts.snapshot(); got.Stmts != 1 {
			t.Errorf("the counting driver saw %d statements for one GetResult, want 1", got.Stmts)
		}
		for _, i := range []int{0, 1, n / 2, n - 1} {
			if a, err := task.DecodeArgs(rs[i].Args); err != nil || a.A != i {
				t.Errorf("result %d has args %s", i, rs[i].Args)
			}
			stored, err := b.GetResult(ctx, rs[i].ID)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(rs[i].Raw(), stored); diff != "" {
				t.Errorf("result %d (-want +got):\n%s", i, diff)
			}
		}
		if c := enq.count(); c != n {
			t.Errorf("%d TaskEnqueued signals, want %d", c, n)
		}

		// What the table says: every row, one enqueue time, and on
		// PostgreSQL one inserting transaction.
		q := `SELECT count(*), count(DISTINCT enqueued_at) FROM gotasks_task WHERE backend = $1`
		var rows, times int
		if err := b.DB().DB.QueryRowContext(ctx, q, b.Name()).Scan(&rows, &times); err != nil {
			t.Fatal(err)
		}
		if rows != n || times != 1 {
			t.Errorf("%d rows with %d distinct enqueue times; want %d and 1", rows, times, n)
		}
		if dbtIsPostgres(dsn) {
			var xids int
			if err := b.DB().DB.QueryRowContext(ctx, `SELECT count(DISTINCT xmin::text) FROM gotasks_task WHERE backend = $1`, b.Name()).Scan(&xids); err != nil {
				t.Fatal(err)
			}
			if xids != 1 {
				t.Errorf("the rows were inserted by %d transactions, want 1", xids)
			}
		}
	})
}

// dbtBenchDialects runs f as a sub-benchmark per dialect on a fresh,
// migrated database.
func dbtBenchDialects(b *testing.B, f func(b *testing.B, be *database.Backend)) {
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			be := dbtOpen(b, dbtest.DSN(b, d))
			f(b, be)
		})
	}
}

func BenchmarkEnqueueMany10000(b *testing.B) {
	dbtBenchDialects(b, func(b *testing.B, be *database.Backend) {
		ctx := context.Background()
		task := dbtAdd.Using(tasks.WithBackend(be.Name()))
		args := make([]dbtArgs, 10000)
		for i := range args {
			args[i] = dbtArgs{A: i}
		}
		iters := 0
		for b.Loop() {
			if _, err := task.EnqueueMany(ctx, args); err != nil {
				b.Fatal(err)
			}
			iters++
		}
		b.ReportMetric(float64(iters*len(args))/b.Elapsed().Seconds(), "tasks/s")
	})
}

func BenchmarkEnqueue(b *testing.B) {
	dbtBenchDialects(b, func(b *testing.B, be *database.Backend) {
		ctx := context.Background()
		task := dbtAdd.Using(tasks.WithBackend(be.Name()))
		iters := 0
		for b.Loop() {
			if _, err := task.Enqueue(ctx, dbtArgs{A: iters}); err != nil {
				b.Fatal(err)
			}
			iters++
		}
		b.ReportMetric(float64(iters)/b.Elapsed().Seconds(), "tasks/s")
	})
}
