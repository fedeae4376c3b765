package database

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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
		pool := poolSettings{maxConns: sqliteMaxConns, maxIdleTime: 5 * time.Minute}
		for k := range q {
			if strings.HasPrefix(k, "pool_") {
				if err := pool.set(k, q.Get(k)); err != nil {
					return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, redact(dsn), err)
				}
				q.Del(k)
			}
		}
		extra := ""
		if len(q) > 0 {
			extra = "&" + q.Encode()
		}
		db, err := sql.Open("sqlite", "file:"+path+"?"+sqlitePragmas()+extra)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, dsn, err)
		}
		pool.apply(db)
		return bun.NewDB(db, sqlitedialect.New()), nil
	case strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") || isKeyValueDSN(dsn):
		pool := poolSettings{maxConns: pgMaxConns, maxIdleTime: 5 * time.Minute}
		connDSN, err := pool.takeFrom(dsn)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, redact(dsn), err)
		}
		cfg, err := pgx.ParseConfig(connDSN)
		if err != nil {
			return nil, fmt.Errorf("%w %q: %v", ErrBadDSN, redact(dsn), err)
		}
		db := stdlib.OpenDB(*cfg)
		pool.apply(db)
		return bun.NewDB(db, pgdialect.New()), nil
	default:
		return nil, fmt.Errorf("%w %q: the scheme must be sqlite://, sqlite::memory:, postgres:// or postgresql:// "+
			"(or a PostgreSQL key=value DSN such as \"host=db user=app dbname=app\")", ErrBadDSN, redact(dsn))
	}
}

// pgMaxConns is the default size of the PostgreSQL pool that Open creates.
const pgMaxConns = 32

// isKeyValueDSN reports whether dsn is in libpq's key=value form
// ("host=127.0.0.1 user=postgres dbname=test"): its first word is a key
// followed by "=".
func isKeyValueDSN(dsn string) bool {
	s := strings.TrimSpace(dsn)
	i := strings.IndexByte(s, '=')
	if i <= 0 || strings.Contains(s, "://") {
		return false
	}
	key := strings.TrimSpace(s[:i])
	for _, r := range key {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// poolSettings are the pool parameters of a DSN, named as pgxpool names
// them, so that a DSN written for pgxpool works: pool_max_conns,
// pool_max_conn_lifetime and pool_max_conn_idle_time.
type poolSettings struct {
	maxConns                 int
	maxLifetime, maxIdleTime time.Duration
}

// set applies one pool parameter.
func (p *poolSettings) set(key, value string) error {
	switch key {
	case "pool_max_conns":
		n, err := strconv.Atoi(value)
		if err != nil || n < 1 {
			return fmt.Errorf("pool_max_conns=%q: want a whole number of at least 1", value)
		}
		p.maxConns = n
	case "pool_max_conn_lifetime", "pool_max_conn_idle_time":
		d, err := time.ParseDuration(value)
		if err != nil || d < 0 {
			return fmt.Errorf("%s=%q: want a duration such as 30m", key, value)
		}
		if key == "pool_max_conn_lifetime" {
			p.maxLifetime = d
		} else {
			p.maxIdleTime = d
		}
	default:
		return fmt.Errorf("%s is not supported (pool parameters: pool_max_conns, pool_max_conn_lifetime, pool_max_conn_idle_time)", key)
	}
	return nil
}

// takeFrom applies the pool parameters of a PostgreSQL DSN (URL or
// key=value) and returns the DSN without them: pgx would send them to the
// server as settings, which refuses them.
func (p *poolSettings) takeFrom(dsn string) (string, error) {
	if !isKeyValueDSN(dsn) {
		u, err := url.Parse(dsn)
		if err != nil {
			return dsn, nil // pgx reports it
		}
		q := u.Query()
		found := false
		for k := range q {
			if strings.HasPrefix(k, "pool_") {
				if err := p.set(k, q.Get(k)); err != nil {
					return "", err
				}
				q.Del(k)
				found = true
			}
		}
		if found {
			u.RawQuery = q.Encode()
			dsn = u.String()
		}
		return dsn, nil
	}
	var kept []string
	for _, f := range splitKeyValues(dsn) {
		k, v, _ := strings.Cut(f, "=")
		k = strings.TrimSpace(k)
		if strings.HasPrefix(k, "pool_") {
			if err := p.set(k, strings.Trim(strings.TrimSpace(v), "'")); err != nil {
				return "", err
			}
			continue
		}
		kept = append(kept, f)
	}
	return strings.Join(kept, " "), nil
}

// splitKeyValues splits a key=value DSN into its "key=value" fields,
// keeping quoted values ('a b', with \' and \\ escapes) whole.
func splitKeyValues(dsn string) []string {
	var (
		fields []string
		cur    strings.Builder
		quoted bool
	)
	flush := func() {
		if f := strings.TrimSpace(cur.String()); f != "" {
			fields = append(fields, f)
		}
		cur.Reset()
	}
	for i := 0; i < len(dsn); i++ {
		c := dsn[i]
		switch {
		case quoted && c == '\\' && i+1 < len(dsn):
			cur.WriteByte(c)
			i++
			cur.WriteByte(dsn[i])
		case c == '\'':
			quoted = !quoted
			cur.WriteByte(c)
		case !quoted && (c == ' ' || c == '\t' || c == '\n'):
			// "key = value": spaces around "=" belong to the field.
			rest := strings.TrimLeft(dsn[i:], " \t\n")
			prev := strings.TrimRight(cur.String(), " \t\n")
			if strings.HasPrefix(rest, "=") || strings.HasSuffix(prev, "=") {
				cur.WriteByte(c)
				continue
			}
			flush()
		default:
			cur.WriteByte(c)
		}
	}
	flush()
	return fields
}

// apply sizes db's pool.
func (p *poolSettings) apply(db *sql.DB) {
	db.SetMaxOpenConns(p.maxConns)
	db.SetMaxIdleConns(p.maxConns)
	db.SetConnMaxIdleTime(p.maxIdleTime)
	db.SetConnMaxLifetime(p.maxLifetime)
}

func sqlitePragmas() string {
	return fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(1)&_txlock=immediate",
		sqliteBusyTimeout.Milliseconds())
}

// RedactDSN returns dsn with its password hidden ("xxxxx"), for logs and
// messages: in the user information, in a password query parameter, and in
// a key=value DSN's password field, also when the DSN does not parse.
func RedactDSN(dsn string) string { return redact(dsn) }

// redact is RedactDSN.
func redact(dsn string) string {
	if isKeyValueDSN(dsn) {
		return redactUnparsed(dsn)
	}
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
