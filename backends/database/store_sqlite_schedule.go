package database

import (
	"context"
	"time"
)

// sqliteDueSchedulesSQL reads the due schedules. SQLite has no row locks:
// the scheduler's write transaction serialises rounds, and the guarded
// advance (advanceScheduleSQL) makes a tick enqueue once.
var sqliteDueSchedulesSQL = dueSchedulesSQL("")

func (s *sqliteStore) dueSchedules(ctx context.Context, q querier, at time.Time, limit int) ([]*Schedule, error) {
	return querySchedules(ctx, q, sqliteDueSchedulesSQL, s.backend(), textTime(at), limit)
}
