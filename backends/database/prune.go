package database

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Prune defaults (SPEC §8).
const (
	// DefaultPruneMinAge is how long finished results are kept when
	// PruneOptions.MinAge is zero: 14 days.
	DefaultPruneMinAge = 14 * 24 * time.Hour
	// DefaultPruneBatchSize is how many rows one DELETE statement removes
	// when PruneOptions.BatchSize is zero.
	DefaultPruneBatchSize = 10_000
	// DefaultSQLitePrunePause is the pause between batches on SQLite when
	// PruneOptions.Pause is zero. A writer of another process waiting for
	// SQLite's write lock polls for it at most every 100 ms (busy_timeout),
	// so a longer gap between batches lets every waiting worker in: pruning
	// never starves workers into "database is locked".
	DefaultSQLitePrunePause = 120 * time.Millisecond
)

// pruneStopGrace is how long a statement already running may go on after
// Prune's context is done: Prune stops between batches, so the batch in
// flight normally completes; this only bounds a statement that hangs.
const pruneStopGrace = 10 * time.Second

// ErrBadPruneOptions reports invalid PruneOptions (a negative age or batch
// size, an empty queue name).
var ErrBadPruneOptions = errors.New("invalid prune options")

// PruneOptions selects what Prune deletes. The zero value prunes
// SUCCESSFUL, CANCELLED and FAILED results of every queue of the backend
// that finished more than DefaultPruneMinAge ago, DefaultPruneBatchSize rows
// per statement.
type PruneOptions struct {
	// MinAge is the retention of SUCCESSFUL and CANCELLED results: those
	// that finished more than MinAge before Now are deleted. Zero means
	// DefaultPruneMinAge.
	MinAge time.Duration
	// FailedMinAge is the retention of FAILED results. Zero means MinAge.
	FailedMinAge time.Duration
	// Queues restricts pruning to these queues; empty, or any element "*",
	// means every queue.
	Queues []string
	// BatchSize bounds the rows one DELETE statement removes; each batch
	// is its own short transaction. Zero means DefaultPruneBatchSize.
	BatchSize int
	// Pause is a wait between batches, for the other writers of the
	// database. Zero means none on PostgreSQL, where pruning only locks the
	// rows it deletes, and DefaultSQLitePrunePause on SQLite, which has one
	// writer at a time; negative means none.
	Pause time.Duration
	// DryRun counts what would be deleted, with the same conditions, and
	// deletes nothing.
	DryRun bool
	// Now is the time the ages are measured from. Zero means the current
	// time when Prune starts.
	Now time.Time
	// Progress, when set, is called after every batch with the totals so
	// far, in the goroutine that called Prune.
	Progress func(PruneReport)
}

// PruneReport tells what Prune deleted (or, on a dry run, would delete).
// Counts are of rows this call deleted itself: prunes that run at the same
// time never count a row twice.
type PruneReport struct {
	// Successful, Cancelled and Failed count the rows deleted per status.
	Successful, Cancelled, Failed int64
	// Batches is the number of DELETE statements run (0 on a dry run).
	Batches int
	// Elapsed is how long Prune took.
	Elapsed time.Duration
	// DryRun is set when nothing was deleted on purpose.
	DryRun bool
	// Cutoff is the finish time before which SUCCESSFUL and CANCELLED
	// results are deleted; FailedCutoff the same for FAILED results.
	Cutoff, FailedCutoff time.Time
}

// Total returns the number of rows deleted, all statuses together.
func (r PruneReport) Total() int64 { return r.Successful + r.Cancelled + r.Failed }

// String returns the one-line summary printed by cmd/prune, e.g.
// "deleted 1234 SUCCESSFUL, 5 CANCELLED, 7 FAILED (1246 total) in 1.2s"
// ("would delete …" on a dry run).
func (r PruneReport) String() string {
	verb := "deleted"
	if r.DryRun {
		verb = "would delete"
	}
	return fmt.Sprintf("%s %d SUCCESSFUL, %d CANCELLED, %d FAILED (%d total) in %s",
		verb, r.Successful, r.Cancelled, r.Failed, r.Total(), RoundDuration(r.Elapsed))
}

// RoundDuration rounds d for display: to the millisecond below a second,
// to a tenth of a second above.
func RoundDuration(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

func (r *PruneReport) add(status string, n int64) error {
	switch tasks.Status(status) {
	case tasks.StatusSuccessful:
		r.Successful += n
	case tasks.StatusCancelled:
		r.Cancelled += n
	case tasks.StatusFailed:
		r.Failed += n
	default:
		return fmt.Errorf("unexpected status %q among the rows selected", status)
	}
	return nil
}

// prunePhase is one DELETE loop: a set of finished statuses with one cutoff.
type prunePhase struct {
	statuses []tasks.Status
	cutoff   time.Time
}

// Prune deletes the finished results of this backend (rows whose backend
// is b.Name()) older than the retention: SUCCESSFUL and CANCELLED ones that
// finished before Now − MinAge, FAILED ones before Now − FailedMinAge. It
// never touches READY or RUNNING rows, whatever their age; a repeating
// task's next run is a READY row and stays.
//
// It deletes in batches of at most BatchSize rows, oldest first, each batch
// one statement in its own transaction, so that workers keep claiming and
// completing tasks while a large table is pruned. Several prunes may run at
// once (overlapping cron jobs): on PostgreSQL each batch skips rows another
// prune has locked (FOR UPDATE SKIP LOCKED); on SQLite writes are
// serialised. Each report counts only the rows its own call deleted.
//
// When ctx is done, Prune stops between batches and returns the report of
// what it did with an error wrapping ctx.Err(). On any error the report
// still counts the batches that were committed.
func (b *Backend) Prune(ctx context.Context, opts PruneOptions) (PruneReport, error) {
	start := time.Now()
	rep := PruneReport{DryRun: opts.DryRun}
	phases, queues, err := b.prunePlan(&opts)
	if err != nil {
		return rep, err
	}
	rep.Cutoff, rep.FailedCutoff = phases[0].cutoff, phases[len(phases)-1].cutoff
	progress := func() {
		rep.Elapsed = time.Since(start)
		if opts.Progress != nil {
			opts.Progress(rep)
		}
	}
	pause := opts.Pause
	if pause == 0 && b.has(featSingleWriter) {
		pause = DefaultSQLitePrunePause
	}
	first := true
	for _, ph := range phases {
		if err := ctx.Err(); err != nil {
			rep.Elapsed = time.Since(start)
			return rep, fmt.Errorf("gotasks prune: stopped: %w", err)
		}
		if opts.DryRun {
			if err := b.pruneCount(ctx, ph, queues, &rep); err != nil {
				rep.Elapsed = time.Since(start)
				return rep, err
			}
			progress()
			continue
		}
		for {
			if !first && pause > 0 {
				t := time.NewTimer(pause)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
			first = false
			if err := ctx.Err(); err != nil {
				rep.Elapsed = time.Since(start)
				return rep, fmt.Errorf("gotasks prune: stopped between batches: %w", err)
			}
			n, err := b.pruneBatch(ctx, ph, queues, opts.BatchSize, &rep)
			if err != nil {
				rep.Elapsed = time.Since(start)
				return rep, err
			}
			rep.Batches++
			progress()
			// Fewer rows than asked: nothing is left that was not locked by
			// another prune (which deletes those). Rows that finish from now
			// on are younger than the cutoff, so the loop ends.
			if n < opts.BatchSize {
				break
			}
		}
	}
	rep.Elapsed = time.Since(start)
	return rep, nil
}

// prunePlan validates and completes opts and returns the phases to run and
// the queue filter (nil: all queues).
func (b *Backend) prunePlan(opts *PruneOptions) ([]prunePhase, []string, error) {
	var probs []string
	if opts.MinAge < 0 {
		probs = append(probs, fmt.Sprintf("min age %v is negative", opts.MinAge))
	}
	if opts.FailedMinAge < 0 {
		probs = append(probs, fmt.Sprintf("failed min age %v is negative", opts.FailedMinAge))
	}
	if opts.BatchSize < 0 {
		probs = append(probs, fmt.Sprintf("batch size %d is negative", opts.BatchSize))
	}
	var queues []string
	all := len(opts.Queues) == 0
	for _, q := range opts.Queues {
		switch {
		case q == "*":
			all = true
		case q == "":
			probs = append(probs, "empty queue name")
		case !slices.Contains(queues, q):
			queues = append(queues, q)
		}
	}
	if len(probs) > 0 {
		return nil, nil, fmt.Errorf("gotasks prune: %w: %s", ErrBadPruneOptions, strings.Join(probs, "; "))
	}
	if all {
		queues = nil
	}
	if opts.MinAge == 0 {
		opts.MinAge = DefaultPruneMinAge
	}
	if opts.FailedMinAge == 0 {
		opts.FailedMinAge = opts.MinAge
	}
	if opts.BatchSize == 0 {
		opts.BatchSize = DefaultPruneBatchSize
	}
	t := opts.Now
	if t.IsZero() {
		t = time.Now()
	}
	cut := t.UTC().Add(-opts.MinAge).Truncate(time.Microsecond)
	failedCut := t.UTC().Add(-opts.FailedMinAge).Truncate(time.Microsecond)
	if cut.Equal(failedCut) {
		return []prunePhase{{[]tasks.Status{tasks.StatusSuccessful, tasks.StatusCancelled, tasks.StatusFailed}, cut}}, queues, nil
	}
	return []prunePhase{{[]tasks.Status{tasks.StatusSuccessful, tasks.StatusCancelled}, cut},
		{[]tasks.Status{tasks.StatusFailed}, failedCut}}, queues, nil
}

// pruneBatch deletes one batch of at most limit rows, oldest first, and
// adds what it deleted to rep. It returns the number of rows deleted.
func (b *Backend) pruneBatch(ctx context.Context, ph prunePhase, queues []string, limit int, rep *PruneReport) (int, error) {
	sctx, cancel := statementContext(ctx)
	defer cancel()
	unlock := b.writeLock()
	defer unlock()
	batch, err := b.store.pruneBatch(sctx, b.db.DB, ph, queues, limit)
	if err != nil {
		return 0, b.wrapErr("prune", err)
	}
	rep.Successful += batch.Successful
	rep.Cancelled += batch.Cancelled
	rep.Failed += batch.Failed
	return int(batch.Total()), nil
}

// pruneCount adds to rep what pruneBatch would delete in this phase.
func (b *Backend) pruneCount(ctx context.Context, ph prunePhase, queues []string, rep *PruneReport) error {
	n, err := b.store.pruneCount(ctx, b.db.DB, ph, queues)
	if err != nil {
		return b.wrapErr("prune (dry run)", err)
	}
	rep.Successful += n.Successful
	rep.Cancelled += n.Cancelled
	rep.Failed += n.Failed
	return nil
}

// statementContext returns a context for one batch: it is not cancelled
// with ctx, so that the batch in flight completes and Prune stops between
// batches, but it is cancelled pruneStopGrace after ctx is done, so that a
// statement that hangs (waiting for a lock) does not hold the stop forever.
func statementContext(ctx context.Context) (context.Context, context.CancelFunc) {
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(pruneStopGrace, cancel)
		context.AfterFunc(sctx, func() { t.Stop() })
	})
	return sctx, func() { stop(); cancel() }
}
