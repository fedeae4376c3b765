package database

import (
	"context"
	"fmt"
)

// ListTasks returns one page of this backend's tasks that match p, newest
// or oldest enqueued first, with the cursor of the next page. Pages are
// keyset-paginated on the task id (a UUIDv7, ordered by enqueue time), so
// a page costs the same however deep into the list it is, and tasks
// enqueued or deleted meanwhile neither shift nor repeat the pages that
// follow.
func (b *Backend) ListTasks(ctx context.Context, p ListParams) (*TaskPage, error) {
	after, err := decodeCursor(p.Cursor, p.Order)
	if err != nil {
		return nil, err
	}
	limit := p.Limit
	if limit <= 0 {
		limit = DefaultPageSize
	}
	limit = min(limit, MaxPageSize)
	// One more than the page: whether it exists says if there is a next
	// page, without a cursor that leads to an empty one.
	rows, err := b.store.adminList(ctx, b.db.DB, p, after, limit+1)
	if err != nil {
		return nil, b.wrapErr("list tasks", err)
	}
	page := &TaskPage{Tasks: make([]*TaskInfo, 0, min(len(rows), limit))}
	for i, r := range rows {
		if i == limit {
			page.NextCursor = cursor{order: p.Order, id: rows[i-1].ID}.encode()
			break
		}
		page.Tasks = append(page.Tasks, taskInfo(r))
	}
	return page, nil
}

// GetTask returns one of this backend's tasks, with the columns the tasks
// API does not show (an error wrapping tasks.ErrResultNotFound when there
// is none).
func (b *Backend) GetTask(ctx context.Context, id string) (*TaskInfo, error) {
	r, err := b.getRow(ctx, b.db.DB, id)
	if err != nil {
		return nil, fmt.Errorf("get task: %w", err)
	}
	return taskInfo(r), nil
}

func taskInfo(r *row) *TaskInfo {
	return &TaskInfo{RawResult: r.RawResult, WorkerID: r.workerID.String}
}
