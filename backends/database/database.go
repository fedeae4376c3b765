// Package database is the production backend of gotasks: task results
// stored in one table (gotasks_task) of a PostgreSQL or SQLite database
// through bun, run by the worker of this package (see Worker and
// cmd/dbworker), pruned by Prune (see cmd/prune).
//
// Open it from a DSN:
//
//	b, err := database.Open(ctx, "sqlite:///var/lib/app/tasks.db") // embedded, migrates itself
//	b, err := database.Open(ctx, "postgres://user@host/app")       // run migrations first
//	defer b.Close()
//	tasks.RegisterBackend(b)
//
// or from an existing *bun.DB with New.
//
// To enqueue in the application's own transaction, pass it in the context:
// task.Enqueue(database.WithTx(ctx, tx), args) for a bun.Tx (WithSQLTx for
// a *sql.Tx, WithPgxTx for a pgx.Tx): the task exists if and only if that
// transaction commits. TaskEnqueued is then sent at the insert, since the
// backend cannot see the commit. Inside RunInTx, Enqueue inserts in
// RunInTx's transaction and TaskEnqueued is sent after the commit.
//
// Flags: Defer, Priority, GetResult, Retry, Transact, Cancel, BulkEnqueue,
// Repeat, Timeout.
package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/tasks"
)

// TableName is the table that holds task results.
const TableName = "gotasks_task"

// Errors of this package, matched with errors.Is.
var (
	// ErrSchemaMissing reports that the gotasks tables are missing or that
	// migrations are pending. The message says how to migrate.
	ErrSchemaMissing = errors.New("gotasks schema is missing or not up to date")
	// ErrUnreachable reports a database that cannot be reached.
	ErrUnreachable = errors.New("database unreachable")
)

// Backend is the database backend. It is safe for concurrent use.
type Backend struct {
	tasks.BackendConfig
	db      *bun.DB
	dialect Dialect
	ownDB   bool // opened from a DSN: Close closes it
	log     *slog.Logger
	// flowNoneAt is when a probe last found no queue limit (Unix ns; 0:
	// probe at the next claim). Written by the fetchers of this backend's
	// workers and by SetQueueLimit/SetQueueRateLimit; see flowActive.
	flowNoneAt atomic.Int64

	autoMigrate bool
	noCreate    bool // Open: a missing SQLite file is an error
	// writeMu serialises this process's writes where the database has one
	// writer at a time anyway (featSingleWriter): goroutines queue here
	// instead of spinning in SQLite's busy handler. Other processes are
	// handled by busy_timeout.
	writeMu sync.Mutex

	store store   // the statements (store.go)
	feats feature // store.features(), asked through has

	hub   *hub       // in-process wake-ups and result waiters; PostgreSQL listener
	order startOrder // TaskStarted after the signals that precede it

	closeOnce sync.Once
	unmark    func() // ends tasks.MarkBackendOpen at Close
}

var (
	_ tasks.Backend  = (*Backend)(nil)
	_ tasks.Waiter   = (*Backend)(nil)
	_ tasks.TxJoiner = (*Backend)(nil)
)

// Option configures a Backend.
type Option func(*Backend)

// WithBackendOptions applies the shared backend options: name, allowed
// queues, enqueue-on-commit default, default max attempts and backoff.
func WithBackendOptions(opts ...tasks.BackendOption) Option {
	return func(b *Backend) { b.Apply(opts...) }
}

// WithName sets the backend's name (default "default"). Workers and prune
// select rows by this name, so several backends can share one table.
func WithName(name string) Option { return WithBackendOptions(tasks.WithName(name)) }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(b *Backend) { b.log = l } }

// WithAutoMigrate applies pending migrations when the backend is opened.
// It is on by default for SQLite (the embedded default migrates itself) and
// off for PostgreSQL, where migrations are a deployment step
// (dbworker migrate, or Migrate).
func WithAutoMigrate(on bool) Option { return func(b *Backend) { b.autoMigrate = on } }

// WithoutCreate makes Open fail, with an error wrapping ErrSchemaMissing,
// when an SQLite DSN names a file that does not exist, instead of creating
// an empty database: for tools that only read or prune (cmd/prune,
// dbworker check).
func WithoutCreate() Option { return func(b *Backend) { b.noCreate = true } }

// Open opens the database named by dsn (sqlite:///path/tasks.db,
// sqlite://relative.db, sqlite::memory:, postgres://…) and returns a backend
// that owns it: Close closes the database. It checks that the database is
// reachable, migrates SQLite (see WithAutoMigrate) and returns an error
// wrapping ErrBadDSN, ErrUnreachable or ErrSchemaMissing otherwise.
func Open(ctx context.Context, dsn string, opts ...Option) (*Backend, error) {
	var probe Backend
	for _, o := range opts {
		o(&probe)
	}
	db, err := openDSN(ctx, dsn, probe.noCreate)
	if err != nil {
		return nil, err
	}
	d := dialectOf(db)
	b, err := newBackend(ctx, db, true, append([]Option{WithAutoMigrate(featuresOf(d).has(featEmbedded))}, opts...))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	return b, nil
}

// New returns a backend on an existing *bun.DB (pgdialect with the pgx
// stdlib driver, or sqlitedialect with modernc.org/sqlite). The caller keeps
// ownership of db: Close does not close it. Pending migrations are an error
// unless WithAutoMigrate(true) is given.
func New(ctx context.Context, db *bun.DB, opts ...Option) (*Backend, error) {
	return newBackend(ctx, db, false, opts)
}

func newBackend(ctx context.Context, db *bun.DB, own bool, opts []Option) (*Backend, error) {
	d := dialectOf(db)
	if d == "" {
		return nil, fmt.Errorf("%w: unsupported bun dialect %s (want pg or sqlite)", tasks.ErrInvalidBackend, db.Dialect().Name())
	}
	b := &Backend{db: db, dialect: d, ownDB: own, log: slog.Default()}
	for _, o := range opts {
		o(b)
	}
	if err := b.CheckConfig(); err != nil {
		return nil, err
	}
	_, pgx := db.DB.Driver().(*stdlib.Driver)
	b.store = newStore(d, storeConfig{db: db.DB, backend: b.Name, log: b.log, pgx: pgx})
	b.feats = b.store.features()
	b.hub = newHub(b)
	if b.has(featSingleWriter) {
		installTxGuard(db)
	}
	if err := b.ping(ctx); err != nil {
		return nil, err
	}
	if b.autoMigrate {
		if err := Migrate(ctx, db); err != nil {
			return nil, err
		}
	}
	if err := b.checkSchema(ctx); err != nil {
		return nil, err
	}
	// While the backend is open, enqueueing to the implicit inline
	// "default" is most likely a forgotten RegisterBackend: tasks warns.
	b.unmark = tasks.MarkBackendOpen(b.Name())
	return b, nil
}

// BackendLogger returns the backend's logger (WithLogger): the core logs
// this backend's enqueues on it, at DEBUG.
func (b *Backend) BackendLogger() *slog.Logger { return b.log }

// DB returns the backend's database.
func (b *Backend) DB() *bun.DB { return b.db }

// Dialect returns the backend's SQL dialect.
func (b *Backend) Dialect() Dialect { return b.dialect }

// Close stops the backend's listener and, when the backend opened the
// database itself (Open), closes it. Workers must be stopped first.
func (b *Backend) Close() error {
	var err error
	b.closeOnce.Do(func() {
		if b.unmark != nil {
			b.unmark()
		}
		b.hub.close()
		b.store.close()
		if b.ownDB {
			err = b.db.Close()
		}
	})
	return err
}

// Capabilities implements tasks.Backend.
func (b *Backend) Capabilities() tasks.Capabilities {
	return tasks.CanDefer | tasks.CanPriority | tasks.CanGetResult | tasks.CanRetry | tasks.CanTransact |
		tasks.CanCancel | tasks.CanBulkEnqueue | tasks.CanRepeat | tasks.CanTimeout | tasks.CanUnique
}

// Check implements tasks.Backend: the configuration is valid, the database
// is reachable and the schema is current. Every problem found is reported
// in the one error.
func (b *Backend) Check(ctx context.Context) error {
	var errs []error
	if err := b.CheckConfig(); err != nil {
		errs = append(errs, err)
	}
	if err := b.ping(ctx); err != nil {
		errs = append(errs, err)
	} else if err := b.checkSchema(ctx); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil
	}
	// One line naming each problem once; errors.Is matches every one.
	format := "gotasks backend %q: %d problem(s): " + strings.TrimSuffix(strings.Repeat("%w; ", len(errs)), "; ")
	args := []any{b.Name(), len(errs)}
	for _, e := range errs {
		args = append(args, e)
	}
	return fmt.Errorf(format, args...)
}

func (b *Backend) ping(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		err := b.db.PingContext(pctx)
		if err == nil {
			return nil
		}
		// A new SQLite connection switches the file to WAL. When several
		// processes open a fresh file at once, that switch can fail with
		// SQLITE_BUSY at once, without waiting for busy_timeout (seen in
		// TestMigrateConcurrentProcesses): wait a little and connect again.
		if busy(err) && pctx.Err() == nil {
			select {
			case <-pctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		return fmt.Errorf("%w: %s database: %s", ErrUnreachable, b.dialect, oneLine(err.Error()))
	}
}

// oneLine joins the lines of a driver's multi-line message (pgx lists one
// line per connection attempt, often the same twice) into one line,
// dropping repeated lines.
func oneLine(msg string) string {
	var parts []string
	seen := map[string]bool{}
	for _, l := range strings.Split(msg, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || seen[l] {
			continue
		}
		seen[l] = true
		parts = append(parts, l)
	}
	return strings.Join(parts, " ")
}

// writeLock serialises this process's writers where the database has one
// writer at a time (featSingleWriter); elsewhere it is a no-op.
func (b *Backend) writeLock() func() {
	if !b.has(featSingleWriter) {
		return func() {}
	}
	b.writeMu.Lock()
	return b.writeMu.Unlock
}

// wrapErr turns driver errors into the package's sentinel errors where it
// can tell (by error code, see schemaMissing): a missing table or column
// into ErrSchemaMissing.
func (b *Backend) wrapErr(op string, err error) error {
	if err == nil {
		return nil
	}
	if schemaMissing(err) {
		return fmt.Errorf("gotasks %s: %w: %v; %s", op, ErrSchemaMissing, err, migrateHint)
	}
	return fmt.Errorf("gotasks %s: %w", op, err)
}

const migrateHint = "run `dbworker migrate --database DSN` (or database.Migrate) to create or update it"
