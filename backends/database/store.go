package database

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect"

	"github.com/gotasks/gotasks/tasks"
)

// The store seam. Every SQL statement the backend issues is one method of
// store, implemented once per dialect: pgStore (store_postgres*.go) and
// sqliteStore (store_sqlite*.go). The Backend decides what runs when (the
// write lock, transactions, wake-ups, the retries of its callers) and asks
// the store to run each statement; what differs between the dialects is
// asked as a feature (Backend.has), never by comparing the dialect's name.
// TestStore (store_test.go) runs every statement on both dialects.

// store runs the backend's statements on one dialect. Each method is one
// statement (a batch is one statement whatever its size) run on q, the
// database or a transaction; the store adds its own statement cache and
// per-execution planning where its dialect wants them. Errors are the
// driver's, unwrapped: the Backend wraps them (Backend.wrapErr).
type store interface {
	// scheduleStore: durable schedules (store_schedule.go).
	scheduleStore
	flowStore // flow control: queue limits and rate limits (store_flow.go)
	// features reports what the store's database offers.
	features() feature
	uniqueStore // unique tasks: store_unique.go

	// claimQuery returns the claim statement for a queue selection (every
	// queue when both are empty). Parameters: $1 backend, $2 now, $3 limit,
	// $4 worker id, then the queues to include and to exclude, each only
	// when used.
	claimQuery(include, exclude []string) string
	// claim runs query (claimQuery's, maybe with a plan-generation tag
	// appended): up to limit due READY tasks of the backend become RUNNING
	// under workerID, stamped at, and are returned in claim order. A row
	// with a column that cannot be read comes back with row.bad set; it
	// never fails the claim of the others.
	claim(ctx context.Context, q querier, query string, at time.Time, limit int, workerID string,
		include, exclude []string) ([]*row, error)
	// claimTurn waits, at most claimTurnWait, for the backend's claim
	// turn: a lock held until the end of tx's transaction (featClaimTurns).
	claimTurn(ctx context.Context, tx querier) error
	// complete records outcomes in one statement and returns the ids it
	// recorded: those still RUNNING under workerID at the outcome's
	// attempt. planTag is appended to the statement where the store has
	// featPlanGenerations.
	complete(ctx context.Context, q querier, workerID, planTag string, outs []*outcome) (map[string]bool, error)
	// heartbeat stamps at as the heartbeat of the tasks ids held by
	// workerID.
	heartbeat(ctx context.Context, q querier, at time.Time, workerID string, ids []string) error
	// release hands claimed, never started tasks back (READY, attempt not
	// counted) and returns how many it released. It notifies idle workers
	// where the store has featNotify.
	release(ctx context.Context, q querier, workerID string, refs []claimRef) (int64, error)
	// rescue puts back the RUNNING tasks of lost workers (see
	// Backend.rescue) and returns them as rescued.
	rescue(ctx context.Context, q querier, at time.Time, self string, heartbeatCutoff, runCutoff time.Time,
		orphansOf string) ([]*row, error)

	// insert inserts new READY rows enqueued at at, in one statement, and
	// notifies idle workers when one is due (featNotify).
	insert(ctx context.Context, q querier, rs []*tasks.RawResult, at time.Time) error
	// copyIn inserts rows with a bulk load in a transaction of its own
	// (featCopy). It returns errNoCopy when the connection cannot.
	copyIn(ctx context.Context, rs []*tasks.RawResult, at time.Time) error
	// insertPgx is insert in an application's pgx transaction (WithPgxTx);
	// errUnsupported where the database is not PostgreSQL.
	insertPgx(ctx context.Context, tx pgx.Tx, rs []*tasks.RawResult, at time.Time) error
	// copyInTx is copyIn in an application's pgx transaction, which it
	// neither commits nor rolls back (featCopy).
	copyInTx(ctx context.Context, tx pgx.Tx, rs []*tasks.RawResult, at time.Time) error

	// get returns the backend's row id (sql.ErrNoRows when there is none).
	get(ctx context.Context, q querier, id string) (*row, error)

	// pruneBatch deletes at most limit rows of a prune phase, oldest first,
	// skipping rows another prune holds, and counts them by status.
	pruneBatch(ctx context.Context, q querier, ph prunePhase, queues []string, limit int) (PruneReport, error)
	// pruneCount counts by status the rows pruneBatch would delete.
	pruneCount(ctx context.Context, q querier, ph prunePhase, queues []string) (PruneReport, error)

	// The admin API's statements (admin_*.go); the shared ones are
	// adminStatements (store_admin.go).

	// adminList returns one page of ListTasks: the rows matching p after
	// the cursor (nil: from the start), at most limit.
	adminList(ctx context.Context, q querier, p ListParams, after *cursor, limit int) ([]*row, error)
	// adminSelectIDs returns, in id order, at most limit ids after the id
	// after of the tasks matching f whose status is one of only.
	adminSelectIDs(ctx context.Context, q querier, f TaskFilter, only []tasks.Status, after string, limit int) ([]string, error)
	// finishedCounts counts the finished tasks by queue and status, of
	// one queue (or of every queue when queue is "") in one statement.
	finishedCounts(ctx context.Context, q querier, queue string) (map[string]map[tasks.Status]int64, error)
	// recountFinished makes finishedCounts count every finished row
	// afresh, where it reads counters (SQLite); elsewhere it does nothing.
	recountFinished(ctx context.Context, q querier) error
	// queueDepths returns, sorted by queue, one entry per queue with READY
	// or RUNNING tasks: the READY ones due at at and those due later, the
	// RUNNING ones, and the run-after time of the oldest due one.
	queueDepths(ctx context.Context, q querier, at time.Time) ([]tasks.QueueDepth, error)
	// finishedPerMinute counts the tasks finished since since, by minute
	// and status.
	finishedPerMinute(ctx context.Context, q querier, since time.Time) ([]minuteStatus, error)
	// queueNames lists the distinct queues of the tasks.
	queueNames(ctx context.Context, q querier) ([]string, error)
	// queueStates lists the queues with a pause row (paused or resumed).
	queueStates(ctx context.Context, q querier) ([]QueueInfo, error)
	// setPaused pauses queue at at (a paused queue keeps its first pause
	// time), or resumes it (at nil) and wakes idle workers where the store
	// has featNotify.
	setPaused(ctx context.Context, q querier, queue string, at *time.Time) error
	// retry makes the FAILED and CANCELLED tasks among ids READY, due at
	// at (see RetryTask), wakes idle workers (featNotify), and returns the
	// ids it retried.
	retry(ctx context.Context, q querier, ids []string, at time.Time) ([]string, error)
	// cancelMany cancels the READY tasks among ids, finished at at, and
	// returns the ids it cancelled.
	cancelMany(ctx context.Context, q querier, ids []string, at time.Time) ([]string, error)
	// deleteFinished deletes the finished tasks among ids and returns the
	// ids it deleted.
	deleteFinished(ctx context.Context, q querier, ids []string) ([]string, error)
	// registerWorker inserts (or replaces) the row of a starting worker.
	registerWorker(ctx context.Context, q querier, w WorkerInfo) error
	// touchWorker refreshes a worker's heartbeat time and running count,
	// and reports whether the worker has a row.
	touchWorker(ctx context.Context, q querier, id string, at time.Time, running int) (bool, error)
	// unregisterWorker deletes a stopping worker's row.
	unregisterWorker(ctx context.Context, q querier, id string) error
	// pruneWorkers deletes the rows of workers whose heartbeat is older
	// than cutoff and returns how many.
	pruneWorkers(ctx context.Context, q querier, cutoff time.Time) (int64, error)
	// workers lists the registered workers.
	workers(ctx context.Context, q querier) ([]WorkerInfo, error)

	// appliedMigrations returns the names of the migrations recorded as
	// applied (an error classified as schemaMissing when none ever was).
	appliedMigrations(ctx context.Context, q querier) ([]string, error)
	// advisoryLock waits for the lock key on conn and returns its release
	// (featAdvisoryLock).
	advisoryLock(ctx context.Context, conn *sql.Conn, key int64) (unlock func(context.Context), err error)
	// listen receives notifications on one connection until ctx is done or
	// the connection fails (featListen).
	listen(ctx context.Context, l listener) error

	// close releases what the store holds (prepared statements).
	close()
}

// listener receives what a store's listen brings.
type listener struct {
	listening func()             // the connection listens now
	wake      func()             // due tasks were enqueued for this backend (nil: not listened for)
	finished  func(ids []string) // these results finished (nil: not listened for)
}

// feature is a set of capabilities of a store's database. Code outside the
// store implementations asks for a capability (Backend.has) instead of
// comparing dialect names.
type feature uint32

// The features.
const (
	// featCopy: a bulk load (COPY) inserts large batches (copyIn).
	featCopy feature = 1 << iota
	// featNotify: statements notify other processes through the database
	// (wake-ups, finished results); result waiters poll less often.
	featNotify
	// featListen: a connection can listen for those notifications (listen).
	featListen
	// featSingleWriter: one writer at a time for the whole database. The
	// backend serialises its process's writers (Backend.writeLock) and
	// prune pauses between batches for the writers of other processes.
	featSingleWriter
	// featPlanGenerations: statements are planned once per prepared
	// statement and kept; the worker appends a plan-generation comment to
	// the claim and completion statements (see plan.go) so that they are
	// planned afresh as the table grows.
	featPlanGenerations
	// featAdvisoryLock: migrations wait for each other on an advisory lock
	// (advisoryLock); without it, on bun's lock table.
	featAdvisoryLock
	// featTextTimes: times are stored as fixed-width UTC text (sqliteTime)
	// and sent as such; otherwise as timestamptz.
	featTextTimes
	// featEmbedded: an embedded database file: opened from a DSN, it
	// migrates itself unless told otherwise.
	featEmbedded
	// featClaimTurns: large claims of concurrent workers take turns on a
	// lock held for the claim's transaction (claimTurn) rather than all
	// walking the head of the claim index at once and skipping each
	// other's locked rows (see Backend.claim).
	featClaimTurns
)

// has reports whether every feature of want is in f.
func (f feature) has(want feature) bool { return f&want == want }

// has reports whether the backend's store has every feature of f.
func (b *Backend) has(f feature) bool { return b.feats.has(f) }

// storeConfig is what a store is made from.
type storeConfig struct {
	db      *sql.DB
	backend func() string // the backend's name, selecting its rows
	log     *slog.Logger
	pgx     bool // PostgreSQL through the pgx stdlib driver (COPY, LISTEN, exec mode)
}

// dialectOf returns the dialect of db, or "" when gotasks does not support
// it.
func dialectOf(db *bun.DB) Dialect {
	switch db.Dialect().Name() {
	case dialect.PG:
		return Postgres
	case dialect.SQLite:
		return SQLite
	}
	return ""
}

// newStore returns the store of dialect d: the one place that picks an
// implementation by the dialect's name.
func newStore(d Dialect, cfg storeConfig) store {
	if cfg.backend == nil {
		cfg.backend = func() string { return tasks.DefaultBackendName }
	}
	if cfg.log == nil {
		cfg.log = slog.Default()
	}
	switch d {
	case Postgres:
		return newPGStore(cfg)
	case SQLite:
		return newSQLiteStore(cfg)
	}
	return nil
}

// featuresOf returns the features of dialect d that do not depend on the
// driver (for code that has a *bun.DB but no backend).
func featuresOf(d Dialect) feature {
	switch d {
	case Postgres:
		return pgFeatures
	case SQLite:
		return sqliteFeatures
	}
	return 0
}
