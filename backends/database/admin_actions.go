package database

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gotasks/gotasks/tasks"
)

// Retry, cancel and delete: one task, a list of ids, or every task that
// matches a filter. Each statement changes only tasks in the statuses its
// action applies to (it re-checks the status as it writes), so they are
// safe while workers run, and none ever touches a RUNNING task.

// bulkBatch is how many tasks one statement of a bulk action by filter
// changes at most.
const bulkBatch = 1000

// ErrDuplicate is returned by RetryTask, RetryTasks and RetryMatching for a
// unique task (tasks.WithUnique) that cannot be retried because another
// task holds its unique key (a READY or RUNNING duplicate enqueued since
// it finished): retrying it would make two. The other tasks are retried.
var ErrDuplicate = errors.New("gotasks: another task holds the unique key")

var (
	retryable  = []tasks.Status{tasks.StatusFailed, tasks.StatusCancelled}
	cancelable = []tasks.Status{tasks.StatusReady}
	deletable  = []tasks.Status{tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled}
)

// RetryTask puts a FAILED or CANCELLED task back to READY, due now:
//   - its error history and attempt count are kept (the next attempt is
//     attempts+1, and the task's errors list grows);
//   - max_attempts is raised to attempts+1 when no attempt would be left,
//     so the task runs at least once more (with its usual retries only if
//     it had attempts left);
//   - the finish time and return value are cleared; the first start time
//     is kept.
//
// Another status is an error wrapping ErrNotRetryable; a missing task one
// wrapping tasks.ErrResultNotFound; a unique task whose key another task
// holds, one wrapping ErrDuplicate.
func (b *Backend) RetryTask(ctx context.Context, id string) error {
	res, err := b.RetryTasks(ctx, []string{id})
	if err != nil {
		return err
	}
	if res.Affected == 0 {
		return b.explain(ctx, id, "retry", ErrNotRetryable)
	}
	return nil
}

// DeleteTask deletes a finished (SUCCESSFUL, FAILED or CANCELLED) task.
// Another status is an error wrapping ErrNotDeletable; a missing task one
// wrapping tasks.ErrResultNotFound.
func (b *Backend) DeleteTask(ctx context.Context, id string) error {
	res, err := b.DeleteTasks(ctx, []string{id})
	if err != nil {
		return err
	}
	if res.Affected == 0 {
		return b.explain(ctx, id, "delete", ErrNotDeletable)
	}
	return nil
}

// explain returns why action changed nothing for task id: not found, or
// its status (wrapping notAllowed).
func (b *Backend) explain(ctx context.Context, id, action string, notAllowed error) error {
	r, err := b.GetTask(ctx, id)
	if err != nil {
		return fmt.Errorf("%s %s: %w", action, id, err)
	}
	return fmt.Errorf("%s %s (%s): %w", action, id, r.Status, notAllowed)
}

// RetryTasks retries (see RetryTask) the tasks among ids that are FAILED
// or CANCELLED and leaves the others alone.
func (b *Backend) RetryTasks(ctx context.Context, ids []string) (BulkResult, error) {
	return b.byIDs(ctx, ids, "retry", b.retryIDs)
}

// CancelTasks cancels the tasks among ids that are READY and leaves the
// others alone. Waiters of the cancelled results are woken.
func (b *Backend) CancelTasks(ctx context.Context, ids []string) (BulkResult, error) {
	return b.byIDs(ctx, ids, "cancel", b.cancelIDs)
}

// DeleteTasks deletes the tasks among ids that are finished and leaves the
// others alone.
func (b *Backend) DeleteTasks(ctx context.Context, ids []string) (BulkResult, error) {
	return b.byIDs(ctx, ids, "delete", b.deleteIDs)
}

// RetryMatching retries every FAILED or CANCELLED task that matches f (a
// status filter narrows those two), in batches of at most 1,000 tasks.
func (b *Backend) RetryMatching(ctx context.Context, f TaskFilter) (BulkResult, error) {
	return b.matching(ctx, f, retryable, "retry", b.retryIDs)
}

// CancelMatching cancels every READY task that matches f, in batches.
func (b *Backend) CancelMatching(ctx context.Context, f TaskFilter) (BulkResult, error) {
	return b.matching(ctx, f, cancelable, "cancel", b.cancelIDs)
}

// DeleteMatching deletes every finished task that matches f (a status
// filter narrows the finished statuses), in batches.
func (b *Backend) DeleteMatching(ctx context.Context, f TaskFilter) (BulkResult, error) {
	return b.matching(ctx, f, deletable, "delete", b.deleteIDs)
}

// byIDs runs an action on ids, in batches.
func (b *Backend) byIDs(ctx context.Context, ids []string, action string,
	do func(context.Context, []string) ([]string, error)) (BulkResult, error) {
	var (
		res    BulkResult
		dupErr error // ErrDuplicate of a retry: the rest goes on
	)
	for len(ids) > 0 {
		n := min(len(ids), bulkBatch)
		done, err := do(ctx, ids[:n])
		res.Affected += int64(len(done)) // a retry with duplicates did the others
		res.IDs = append(res.IDs, done...)
		if err != nil && !errors.Is(err, ErrDuplicate) {
			return res, b.wrapErr(action, err)
		}
		dupErr = errors.Join(dupErr, err)
		ids = ids[n:]
	}
	return res, b.wrapErr(action, dupErr)
}

// matching runs an action on the tasks that match f with a status of only,
// a batch at a time: the ids of a batch are read, then changed by one
// statement that checks their status again. A task that changes status in
// between is left alone.
func (b *Backend) matching(ctx context.Context, f TaskFilter, only []tasks.Status, action string,
	do func(context.Context, []string) ([]string, error)) (BulkResult, error) {
	var (
		res    BulkResult
		after  string
		dupErr error // ErrDuplicate of a retry: the rest goes on
	)
	for {
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("%s: %w", action, context.Cause(ctx))
		}
		ids, err := b.store.adminSelectIDs(ctx, b.db.DB, f, only, after, bulkBatch)
		if err != nil {
			return res, b.wrapErr(action, err)
		}
		if len(ids) == 0 {
			return res, b.wrapErr(action, dupErr)
		}
		done, err := do(ctx, ids)
		res.Affected += int64(len(done))
		if err != nil && !errors.Is(err, ErrDuplicate) {
			return res, b.wrapErr(action, err)
		}
		dupErr = errors.Join(dupErr, err)
		if len(ids) < bulkBatch {
			return res, b.wrapErr(action, dupErr)
		}
		after = ids[len(ids)-1]
	}
}

func (b *Backend) retryIDs(ctx context.Context, ids []string) ([]string, error) {
	unlock := b.writeLock()
	done, err := b.store.retry(ctx, b.db.DB, ids, now())
	if uniqueViolation(err) {
		done, err = b.retryEach(ctx, ids)
	}
	unlock()
	if len(done) > 0 {
		b.hub.wake() // this process's workers; others by notification or poll
	}
	return done, err
}

// retryEach retries ids one at a time, after a batch failed because some
// unique task's key is held by another task: it retries the others and
// returns an error wrapping ErrDuplicate that names the held ones.
func (b *Backend) retryEach(ctx context.Context, ids []string) ([]string, error) {
	var done, held []string
	for _, id := range ids {
		d, err := b.store.retry(ctx, b.db.DB, []string{id}, now())
		switch {
		case err == nil:
			done = append(done, d...)
		case uniqueViolation(err):
			held = append(held, id)
		default:
			return done, err
		}
	}
	if len(held) > 0 {
		return done, fmt.Errorf("retry %s: %w", strings.Join(held, ", "), ErrDuplicate)
	}
	return done, nil
}

func (b *Backend) cancelIDs(ctx context.Context, ids []string) ([]string, error) {
	unlock := b.writeLock()
	done, err := b.store.cancelMany(ctx, b.db.DB, ids, now())
	unlock()
	if len(done) > 0 {
		b.hub.finished(done...)
	}
	return done, err
}

func (b *Backend) deleteIDs(ctx context.Context, ids []string) ([]string, error) {
	unlock := b.writeLock()
	defer unlock()
	return b.store.deleteFinished(ctx, b.db.DB, ids)
}
