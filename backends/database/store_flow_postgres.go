package database

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// PostgreSQL's flow-control statements (see flowStore).

func (s *pgStore) flowActive(ctx context.Context, q querier) (bool, error) {
	var ok bool
	err := q.QueryRowContext(ctx, flowActiveSQL, s.backend()).Scan(&ok)
	return ok, err
}

func (s *pgStore) flowTxOptions() *sql.TxOptions {
	return &sql.TxOptions{Isolation: sql.LevelReadCommitted}
}

// flowLock locks the selected limited queues' rows in name order (no two
// claims wait for each other in opposite orders), waiting at most
// flowLockTimeout (for the rest of the transaction: the claim statements
// that follow skip locked rows and never wait).
func (s *pgStore) flowLock(ctx context.Context, q querier, include, exclude []string) ([]queueFlow, error) {
	if _, err := q.ExecContext(ctx, "SET LOCAL lock_timeout = '"+flowLockTimeout+"'"); err != nil {
		return nil, err
	}
	query, sel := flowQueuesSQL(include, exclude, func(n int, in bool) string {
		if in {
			return fmt.Sprintf("name = ANY($%d::text[])", n)
		}
		return fmt.Sprintf("NOT (name = ANY($%d::text[]))", n)
	})
	return queryFlows(ctx, q, query+"\n\tFOR UPDATE", append([]any{s.backend()}, sel...)...)
}

// flowRunning reads the RUNNING rows of the backend through the running
// index (at most the workers' total concurrency) and filters them by queue.
func (s *pgStore) flowRunning(ctx context.Context, q querier, queues []string) (map[string]int, error) {
	rows, err := q.QueryContext(ctx, `SELECT queue, count(*) FROM gotasks_task
	WHERE status = 'RUNNING' AND backend = $1 AND queue = ANY($2::text[]) GROUP BY queue`, s.backend(), queues)
	if err != nil {
		return nil, err
	}
	return scanQueueCounts(rows)
}

func (s *pgStore) flowSetWindow(ctx context.Context, q querier, queue string, start time.Time, count int) error {
	_, err := q.ExecContext(ctx, flowSetWindowSQL, s.backend(), queue, start.UTC(), count)
	return err
}

func (s *pgStore) setQueueLimit(ctx context.Context, q querier, queue string, maxRunning int) error {
	_, err := q.ExecContext(ctx, setQueueLimitSQL, s.backend(), queue, nullPositive(maxRunning))
	return err
}

func (s *pgStore) setQueueRate(ctx context.Context, q querier, queue string, n int, per time.Duration) error {
	_, err := q.ExecContext(ctx, setQueueRateSQL, s.backend(), queue, nullPositive(n), nullPositive(int(per.Microseconds())))
	return err
}

func (s *pgStore) queueFlows(ctx context.Context, q querier) ([]queueFlow, error) {
	return queryFlows(ctx, q, queueFlowsSQL, s.backend())
}
