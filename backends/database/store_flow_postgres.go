package database

import (
	"context"
	"time"
)

// PostgreSQL's flow-control statements (see flowStore).

func (s *pgStore) flowActive(ctx context.Context, q querier) (bool, error) {
	var ok bool
	err := q.QueryRowContext(ctx, flowActiveSQL, s.backend()).Scan(&ok)
	return ok, err
}

// flowLock locks the limited queues' rows in name order (no two claims
// wait for each other in opposite orders).
func (s *pgStore) flowLock(ctx context.Context, q querier) ([]queueFlow, error) {
	return queryFlows(ctx, q, flowQueuesSQL+"\n\tFOR UPDATE", s.backend())
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
