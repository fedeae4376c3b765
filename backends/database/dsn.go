package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"
	"github.com/uptrace/bun/dialect/sqlitedialect"
	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// DSNEnv is the environment variable the commands (dbworker, prune) read
// the DSN from when no --database flag is given.
const DSNEnv = "GOTASKS_DATABASE_URL"

// DefaultDSN is the DSN used when none is given: an embedded SQLite file in
// the working directory.
const DefaultDSN = "sqlite://gotasks.db"

// ErrBadDSN reports a DSN that cannot be parsed or names an unknown scheme.
var ErrBadDSN = errors.New("bad database DSN")

// SQLite connection settings (SPEC §6): WAL so that readers never block the
// writer, a busy timeout long enough that contention waits instead of
// failing, BEGIN IMMEDIATE so that a transaction never has to upgrade its
// lock (the cause of "database is locked" that busy_timeout cannot fix), and
// synchronous=NORMAL, which is durable across application crashes in WAL
// mode.
const (
	sqliteBusyTimeout = 30 * time.Second
	sqliteMaxConns    = 8
)

var memCounter atomic.Int64

// openDSN opens a *bun.DB for dsn: sqlite://PATH (sqlite:///abs/path,
// sqlite://relative/path), sqlite::memory:, or postgres:// / postgresql://.
func openDSN(ctx context.Context, dsn string, noCreate bool) (*bun.DB, error) {
	switch {
	case dsn == "sqlite::memory:" || dsn == "sqlite://:memory:":
		// One connection: every connection to :memory: is its own database.
		name := fmt.Sprintf("file:gotasks-mem-%d-%d?mode=memory&cache=private", os.Getpid(), memCounter.Add(1))
		db, err := sql.Open("sqlite", name+"&"+sqlitePragmas())
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadDSN, err)
		}
		db.SetMaxOpenConns(1)
		db.SetMaxIdleConns(1)
		db.SetConnMaxIdleTime(0)
		db.SetConnMaxLifetime(0)
		return bun.NewDB(db, sqlitedialect.New()), nil
	case strings.HasPrefix(dsn, "sqlite://") || strings.HasPrefix(dsn, "sqlite3://"):
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, redact(dsn), err)
		}
		path := u.Host + u.Path // sqlite://rel/path → host "rel"; sqlite:///abs → path "/abs"
		if path == "" {
			return nil, fmt.Errorf("%w %q: no file path (use sqlite:///abs/path.db or sqlite://relative.db)", ErrBadDSN, dsn)
		}
		if noCreate {
			if _, err := os.Stat(path); err != nil {
				return nil, fmt.Errorf("%w: no SQLite database at %s (from %q; it is not created here): %v",
					ErrSchemaMissing, path, dsn, err)
			}
		}
		if dir := filepath.Dir(path); dir != "." {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				return nil, fmt.Errorf("%w %q: directory %q does not exist", ErrBadDSN, dsn, dir)
			}
		}
		q := u.Query()
		extra := ""
		if len(q) > 0 {
			extra = "&" + q.Encode()
		}
		db, err := sql.Open("sqlite", "file:"+path+"?"+sqlitePragmas()+extra)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, dsn, err)
		}
		db.SetMaxOpenConns(sqliteMaxConns)
		db.SetMaxIdleConns(sqliteMaxConns)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return bun.NewDB(db, sqlitedialect.New()), nil
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://"):
		cfg, err := pgx.ParseConfig(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, redact(dsn), err)
		}
		db := stdlib.OpenDB(*cfg)
		db.SetMaxOpenConns(32)
		db.SetMaxIdleConns(32)
		db.SetConnMaxIdleTime(5 * time.Minute)
		return bun.NewDB(db, pgdialect.New()), nil
	default:
		return nil, fmt.Errorf("%w %q: the scheme must be sqlite://, sqlite::memory:, postgres:// or postgresql://", ErrBadDSN, redact(dsn))
	}
}

func sqlitePragmas() string {
	return fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate",
		sqliteBusyTimeout.Milliseconds())
}

// redact hides the password of a DSN for error messages: in the user
// information and in a password query parameter, also when the DSN does
// not parse as a URL.
func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return redactUnparsed(dsn)
	}
	if u.User != nil {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		}
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

// redactUnparsed hides "user:password@" and "password=…" in a DSN that
// url.Parse rejects.
func redactUnparsed(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if at := strings.LastIndex(rest[:end], "@"); at >= 0 {
			if c := strings.Index(rest[:at], ":"); c >= 0 {
				dsn = dsn[:i+3] + rest[:c] + ":xxxxx" + rest[at:]
			}
		}
	}
	if i := strings.Index(dsn, "password="); i >= 0 {
		end := strings.IndexAny(dsn[i:], "& ")
		if end < 0 {
			end = len(dsn) - i
		}
		dsn = dsn[:i] + "password=xxxxx" + dsn[i+end:]
	}
	return dsn
}
