package database

import (
	"context"
	"database/sql"
	"time"
)

// Dialect names the SQL dialect of a backend's database.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// sqliteTime is the fixed-width text form of times where they are stored as
// text (featTextTimes, SQLite): it sorts and compares as text, and SQLite's
// date functions read it.
const sqliteTime = "2006-01-02 15:04:05.000000"

// now returns the current time in UTC at the precision both databases store
// (microseconds), so that what a backend returns equals what it stored.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// ts encodes t as a query argument of dialect d.
func (d Dialect) ts(t time.Time) any {
	if featuresOf(d).has(featTextTimes) {
		return textTime(t)
	}
	return t.UTC()
}

// textTime is t in the text form of sqliteTime, in UTC.
func textTime(t time.Time) string { return t.UTC().Format(sqliteTime) }

// querier is what *sql.DB, *sql.Tx and *sql.Conn have in common. Queries go
// to database/sql directly, with native placeholders ($1 works on both
// PostgreSQL and SQLite), so that arguments are sent as parameters and
// statements are prepared and cached by the driver.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}
