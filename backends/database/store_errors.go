package database

import (
	"errors"

	"github.com/jackc/pgx/v5/pgconn"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Error classification: by SQLSTATE on PostgreSQL (pgconn.PgError.Code) and
// by result code on SQLite (sqlite.Error.Code), never by message text,
// which depends on the server's language and version.

// SQLSTATE codes (PostgreSQL Appendix A, class 42: syntax error or access
// rule violation).
const (
	sqlstateUndefinedTable  = "42P01"
	sqlstateUndefinedColumn = "42703"
)

// pgCode returns the SQLSTATE of a PostgreSQL error, or "".
func pgCode(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// sqliteCode returns the primary result code of an SQLite error (extended
// codes reduced to their primary code), or -1.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() & 0xff
	}
	return -1
}

// schemaMissing reports an error that says the gotasks tables or columns
// are not there: PostgreSQL's undefined_table or undefined_column, or
// SQLite's SQLITE_ERROR. SQLite has no result code of its own for a
// missing table or column ("no such table", "no such column" are
// SQLITE_ERROR, its code for any error in the SQL), so SQLITE_ERROR from
// the stores' fixed statements, which SQLite accepts against the gotasks
// schema (TestStore), means that the schema is not the one they were
// written for.
func schemaMissing(err error) bool {
	switch pgCode(err) {
	case sqlstateUndefinedTable, sqlstateUndefinedColumn:
		return true
	}
	return sqliteCode(err) == sqlite3.SQLITE_ERROR
}

// busy reports SQLite's SQLITE_BUSY: another connection holds a lock that
// this one needs.
func busy(err error) bool { return sqliteCode(err) == sqlite3.SQLITE_BUSY }
