package database

import (
	"context"
	"time"
)

// pgDueSchedulesSQL locks the due schedules it returns and skips those
// another worker's scheduler holds: concurrent rounds never claim the same
// tick.
var pgDueSchedulesSQL = dueSchedulesSQL(" FOR UPDATE SKIP LOCKED")

func (s *pgStore) dueSchedules(ctx context.Context, q querier, at time.Time, limit int) ([]*Schedule, error) {
	return querySchedules(ctx, q, pgDueSchedulesSQL, s.backend(), at.UTC(), limit)
}
