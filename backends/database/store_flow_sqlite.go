package database

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// SQLite's flow-control statements (see flowStore). The claim transaction
// is a write transaction (BEGIN IMMEDIATE, see dsn.go) under the backend's
// write lock: claims are serialised without row locks.

func (s *sqliteStore) flowActive(ctx context.Context, q querier) (bool, error) {
	var ok bool
	err := s.sq(q).QueryRowContext(ctx, flowActiveSQL, s.backend()).Scan(&ok)
	return ok, err
}

// flowTxOptions: the default, a write transaction (BEGIN IMMEDIATE).
func (s *sqliteStore) flowTxOptions() *sql.TxOptions { return nil }

func (s *sqliteStore) flowLock(ctx context.Context, q querier, include, exclude []string) ([]queueFlow, error) {
	query, sel := flowQueuesSQL(include, exclude, func(n int, in bool) string {
		if in {
			return fmt.Sprintf("name IN (SELECT value FROM json_each($%d))", n)
		}
		return fmt.Sprintf("name NOT IN (SELECT value FROM json_each($%d))", n)
	})
	for i, v := range sel {
		sel[i] = jsonArray(v)
	}
	return queryFlows(ctx, s.sq(q), query, append([]any{s.backend()}, sel...)...)
}

func (s *sqliteStore) flowRunning(ctx context.Context, q querier, queues []string) (map[string]int, error) {
	rows, err := s.sq(q).QueryContext(ctx, `SELECT queue, count(*) FROM gotasks_task
	WHERE status = 'RUNNING' AND backend = $1 AND queue IN (SELECT value FROM json_each($2)) GROUP BY queue`,
		s.backend(), jsonArray(queues))
	if err != nil {
		return nil, err
	}
	return scanQueueCounts(rows)
}

func (s *sqliteStore) flowSetWindow(ctx context.Context, q querier, queue string, start time.Time, count int) error {
	_, err := s.sq(q).ExecContext(ctx, flowSetWindowSQL, s.backend(), queue, s.ts(start), count)
	return err
}

func (s *sqliteStore) setQueueLimit(ctx context.Context, q querier, queue string, maxRunning int) error {
	_, err := q.ExecContext(ctx, setQueueLimitSQL, s.backend(), queue, nullPositive(maxRunning))
	return err
}

func (s *sqliteStore) setQueueRate(ctx context.Context, q querier, queue string, n int, per time.Duration) error {
	_, err := q.ExecContext(ctx, setQueueRateSQL, s.backend(), queue, nullPositive(n), nullPositive(int(per.Microseconds())))
	return err
}

func (s *sqliteStore) queueFlows(ctx context.Context, q querier) ([]queueFlow, error) {
	return queryFlows(ctx, q, queueFlowsSQL, s.backend())
}
