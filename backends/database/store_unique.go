package database

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/gotasks/gotasks/tasks"
)

// uniqueStore holds the statements of unique tasks (tasks.WithUnique), in
// store. Tasks without a unique key never go through them: they keep
// store.insert (and COPY).
type uniqueStore interface {
	// insertUnique inserts rs as insert does, with rs[i].UniqueKey and
	// states[i] (0 where rs[i] has no key) as its unique key and statuses,
	// in one statement that skips each row whose key is held by a row of
	// the unique index (uniquePredicate) — another task, or an earlier row
	// of rs. It returns the ids it inserted, and notifies idle workers when
	// one is due (featNotify).
	insertUnique(ctx context.Context, q querier, rs []*tasks.RawResult, states []tasks.StatusMask, at time.Time) (map[string]bool, error)
	// uniqueHolders returns, by key, the rows of the backend that hold keys
	// in the unique index; a key that no row holds (any more) is absent.
	uniqueHolders(ctx context.Context, q querier, keys []string) (map[string]*row, error)
}

// holdersByKey maps rows to their unique keys.
func holdersByKey(rs []*row) map[string]*row {
	m := make(map[string]*row, len(rs))
	for _, r := range rs {
		m[r.UniqueKey] = r
	}
	return m
}

// uniqueIndex is the name of the unique index of unique tasks.
const uniqueIndex = "gotasks_task_unique"

// uniqueViolation reports a violation of the unique index of unique tasks:
// PostgreSQL's unique_violation (23505) on uniqueIndex, SQLite's
// SQLITE_CONSTRAINT_UNIQUE (statements that cannot break another unique
// constraint, as retry).
func uniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "23505" && pe.ConstraintName == uniqueIndex
	}
	var se *sqlite.Error
	return errors.As(err, &se) && se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}
