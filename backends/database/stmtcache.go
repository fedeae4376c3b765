package database

import (
	"context"
	"database/sql"
	"sync"
)

// stmtCache keeps prepared statements for the hot queries of sqliteStore:
// SQLite's driver parses the SQL on every call otherwise (pgx caches
// prepared statements per connection by itself).
type stmtCache struct {
	db *sql.DB
	m  sync.Map // query → *sql.Stmt
}

func (c *stmtCache) get(ctx context.Context, query string) (*sql.Stmt, error) {
	if s, ok := c.m.Load(query); ok {
		return s.(*sql.Stmt), nil
	}
	s, err := c.db.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	if prev, loaded := c.m.LoadOrStore(query, s); loaded {
		_ = s.Close()
		return prev.(*sql.Stmt), nil
	}
	return s, nil
}

func (c *stmtCache) close() {
	c.m.Range(func(k, v any) bool {
		_ = v.(*sql.Stmt).Close()
		c.m.Delete(k)
		return true
	})
}

// cachedQuerier runs queries through the cache: on the database directly,
// or bound to a transaction.
type cachedQuerier struct {
	c  *stmtCache
	tx *sql.Tx // nil: the database
}

func (q cachedQuerier) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if q.tx == nil {
		return q.c.get(ctx, query)
	}
	// Inside a transaction, use a statement only if it is already prepared:
	// preparing it would need a second connection, which a pool of one
	// (sqlite::memory:) cannot give while the transaction holds the first.
	if s, ok := q.c.m.Load(query); ok {
		return q.tx.StmtContext(ctx, s.(*sql.Stmt)), nil
	}
	return q.tx.PrepareContext(ctx, query)
}

func (q cachedQuerier) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	s, err := q.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.ExecContext(ctx, args...)
}

func (q cachedQuerier) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	s, err := q.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return s.QueryContext(ctx, args...)
}

func (q cachedQuerier) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	s, err := q.stmt(ctx, query)
	if err != nil {
		// Let the error surface through Row.Scan, as database/sql does.
		return q.c.db.QueryRowContext(ctx, query, args...)
	}
	return s.QueryRowContext(ctx, args...)
}

// warm prepares queries on the cache's database when q is that database,
// so that a transaction about to begin on it finds them prepared (a
// transaction prepares a statement that is not cached again each time).
func (c *stmtCache) warm(ctx context.Context, q querier, queries ...string) {
	if db, ok := q.(*sql.DB); !ok || db != c.db {
		return
	}
	for _, query := range queries {
		_, _ = c.get(ctx, query) // an error surfaces when the query runs
	}
}

// wrap returns q through the cache: the cache's own database, or a
// transaction of it. Other queriers are returned as they are.
func (c *stmtCache) wrap(q querier) querier {
	switch x := q.(type) {
	case *sql.DB:
		if x == c.db {
			return cachedQuerier{c: c}
		}
	case *sql.Tx:
		return cachedQuerier{c: c, tx: x}
	}
	return q
}
