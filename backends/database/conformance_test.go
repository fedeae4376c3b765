package database_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/backendtest"
	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// errDbtHarnessRollback is what the harness's transaction function returns
// to make RunInTx roll back.
var errDbtHarnessRollback = errors.New("conformance harness: roll back")

// TestConformance runs the backend conformance suite on both dialects, each
// subtest with a fresh database.
func TestConformance(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		dialect := dbtDialect(dsn)
		backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
			return dbtHarness(t, dbtest.DSN(t, dialect), opts...)
		})
	})
}

// TestConformanceQueryExecModes runs the conformance suite on PostgreSQL
// with pgx's query modes that use no named prepared statements, as set in
// the DSN behind PgBouncer's transaction pooling: every statement of the
// backend (COPY, LISTEN, the jsonb and array parameters of the batch
// statements) must work in them too.
func TestConformanceQueryExecModes(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"simple_protocol", "exec"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			dbtest.RequirePostgres(t)
			backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
				return dbtHarness(t, dbtest.PostgresDSN(t)+"&default_query_exec_mode="+mode, opts...)
			})
		})
	}
}

// dbtHarness opens a migrated backend on dsn configured with opts and
// returns its conformance harness.
func dbtHarness(t *testing.T, dsn string, opts ...tasks.BackendOption) *backendtest.Harness {
	t.Helper()
	b, err := database.Open(context.Background(), dsn, database.WithAutoMigrate(true),
		database.WithBackendOptions(opts...), database.WithLogger(dbtLogger))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return &backendtest.Harness{
		Backend: b,
		Drain: func(ctx context.Context) error {
			// Concurrency 1: tasks run one at a time in claim order.
			w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true,
				PollInterval: 10 * time.Millisecond, Concurrency: 1})
			if err != nil {
				return err
			}
			return w.Run(ctx)
		},
		BeginTx: func(ctx context.Context) (context.Context, func() error, func() error) {
			return dbtBeginTx(ctx, t, b)
		},
	}
}

// dbtBeginTx starts a real transaction with b.RunInTx in a goroutine whose
// function hands its context out and then waits to be told to commit
// (return nil) or roll back (return an error). Commit returns once the
// transaction committed and its commit hooks ran. A transaction the test
// leaves open is rolled back at cleanup.
func dbtBeginTx(ctx context.Context, t *testing.T, b *database.Backend) (context.Context, func() error, func() error) {
	t.Helper()
	txCtxs := make(chan context.Context, 1)
	decide := make(chan bool, 1) // true: commit
	done := make(chan error, 1)
	go func() {
		done <- b.RunInTx(ctx, func(txCtx context.Context, _ bun.Tx) error {
			txCtxs <- txCtx
			if <-decide {
				return nil
			}
			return errDbtHarnessRollback
		})
	}()
	var txCtx context.Context
	select {
	case txCtx = <-txCtxs:
	case err := <-done:
		t.Fatalf("BeginTx: %v", err)
	}
	var (
		once   sync.Once
		result error
	)
	end := func(commit bool) error {
		once.Do(func() {
			decide <- commit
			result = <-done
			if !commit && errors.Is(result, errDbtHarnessRollback) {
				result = nil
			}
		})
		return result
	}
	t.Cleanup(func() { _ = end(false) })
	return txCtx, func() error { return end(true) }, func() error { return end(false) }
}
