package database

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// This file holds the worker's side of the store seam: the Backend methods
// the worker's services call (claim, complete, heartbeat, release, rescue),
// each one statement of b.store under the write lock, and the types they
// exchange.

// claimQuery returns the claim statement for a queue selection (see
// store.claimQuery).
func (b *Backend) claimQuery(include, exclude []string) string {
	return b.store.claimQuery(include, exclude)
}

// claim marks up to limit due READY tasks RUNNING for workerID and returns
// them in claim order. query is claimQuery's statement (with the worker's
// plan tag). A row with a column that cannot be read is returned with bad
// set: the worker fails it alone.
func (b *Backend) claim(ctx context.Context, query string, limit int, workerID string, include, exclude []string, inTurn bool) ([]*row, error) {
	if inTurn && limit >= claimTurnMin && b.has(featClaimTurns) {
		rows, err := b.claimInTurn(ctx, query, limit, workerID, include, exclude)
		if err == nil || !errors.Is(err, errNoClaimTurn) {
			return rows, err
		}
		// No turn (it did not come in time, or could not be taken): claim
		// beside the others, skipping their locked rows.
	}
	if c, ok := b.store.(idClaimer); ok {
		return b.claimThenRead(ctx, c, query, limit, workerID, include, exclude)
	}
	unlock := b.writeLock()
	defer unlock()
	// The time of the claim, taken once this process's writers let it go
	// ahead: it stamps heartbeat_at, the start of the lease.
	rows, err := b.store.claim(ctx, b.db.DB, query, now(), limit, workerID, include, exclude)
	if err != nil {
		return nil, b.wrapErr("claim", err)
	}
	return rows, nil
}

// idClaimer is a store whose claim statement returns the ids of the tasks
// it claimed, their rows read by another statement (SQLite). The claim
// then holds the single writer's lock for its UPDATE alone: reading and
// decoding the 25 columns of a thousand rows happens while the completer
// writes, on the other core.
type idClaimer interface {
	claimIDs(ctx context.Context, q querier, query string, at time.Time, limit int, workerID string,
		include, exclude []string) ([]claimRef, error)
	claimedRows(ctx context.Context, q querier, refs []claimRef) ([]*row, error)
}

// claimReadTimeout bounds the read of claimed rows once ctx has ended.
const claimReadTimeout = 10 * time.Second

// claimThenRead claims through c under the write lock, then reads the
// claimed rows after letting it go.
func (b *Backend) claimThenRead(ctx context.Context, c idClaimer, query string, limit int, workerID string,
	include, exclude []string) ([]*row, error) {
	unlock := b.writeLock()
	refs, err := c.claimIDs(ctx, b.db.DB, query, now(), limit, workerID, include, exclude)
	unlock()
	if err != nil {
		return nil, b.wrapErr("claim", err)
	}
	// The tasks are claimed (committed): read them even if ctx ends now,
	// so that the worker starts them or hands them back rather than
	// leaving them RUNNING until a rescue.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimReadTimeout)
	defer cancel()
	rows, err := c.claimedRows(rctx, b.db.DB, refs)
	if err != nil {
		// Nobody would run or heartbeat them: hand them back, as if never
		// claimed (with a context of its own: the read may have failed on
		// rctx's deadline).
		relCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), claimReadTimeout)
		defer cancel()
		if _, rerr := b.release(relCtx, workerID, refs); rerr != nil {
			b.log.Error("gotasks: claimed tasks could not be read nor handed back; they stay RUNNING until rescued",
				"tasks", len(refs), "err", rerr)
		}
		return nil, b.wrapErr("claim: read the claimed tasks", err)
	}
	return rows, nil
}

// claimTurnMin is the smallest claim that waits for its turn
// (featClaimTurns). Claims run in turns so that several workers claiming
// large batches at once do not each walk the head of the claim index and
// skip the rows the others hold locked (FOR UPDATE SKIP LOCKED): eight
// worker processes draining one queue spent about a third more database
// CPU per task that way (docs/performance.md, issue 17). A turn costs three
// more round trips (BEGIN, the lock, COMMIT): nothing next to the work of a
// claim of 1,000 rows (the default batch), but a fifth of a millisecond on
// an idle worker's wake-up and a few per cent of a claim of 100. So only
// large claims of a worker with a backlog (inTurn: its previous claim was
// full) take turns; smaller claims skip fewer of the others' rows anyway.
const claimTurnMin = 256

// claimTurnWait bounds the wait for a claim turn (lock_timeout): a claim
// takes milliseconds; one that waits longer claims beside the others.
const claimTurnWait = "1s"

// errNoClaimTurn: the claim turn did not come within claimTurnWait, or
// could not be taken.
var errNoClaimTurn = errors.New("no claim turn")

// claimInTurn claims in a transaction that first waits for the backend's
// claim turn (store.claimTurn), so that the claim statement's snapshot is
// taken after the previous turn's claim committed.
func (b *Backend) claimInTurn(ctx context.Context, query string, limit int, workerID string, include, exclude []string) (_ []*row, err error) {
	unlock := b.writeLock()
	defer unlock()
	tx, err := b.db.DB.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelReadCommitted})
	if err != nil {
		return nil, b.wrapErr("claim", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err := b.store.claimTurn(ctx, tx); err != nil {
		if ctx.Err() == nil {
			// The turn is an optimisation: whatever kept it (lock_timeout,
			// a statement_timeout, a driver's error), claim without it.
			b.log.Debug("gotasks: no claim turn; claiming beside the other workers", "err", err)
			return nil, errNoClaimTurn
		}
		return nil, b.wrapErr("claim", err)
	}
	rows, err := b.store.claim(ctx, tx, query, now(), limit, workerID, include, exclude)
	if err != nil {
		return nil, b.wrapErr("claim", err)
	}
	if err := tx.Commit(); err != nil {
		return nil, b.wrapErr("claim", err)
	}
	return rows, nil
}

// sortClaimOrder sorts claimed rows in claim order: priority DESC,
// run_after, enqueued_at (the statements return them in any order).
func sortClaimOrder(rs []*row) {
	less := func(x, y *row) bool {
		if x.Priority != y.Priority {
			return x.Priority > y.Priority
		}
		if !x.RunAfter.Equal(y.RunAfter) {
			return x.RunAfter.Before(y.RunAfter)
		}
		return x.EnqueuedAt.Before(y.EnqueuedAt)
	}
	// insertion sort: batches are small and nearly sorted
	for i := 1; i < len(rs); i++ {
		for j := i; j > 0 && less(rs[j], rs[j-1]); j-- {
			rs[j], rs[j-1] = rs[j-1], rs[j]
		}
	}
}

// outcome is the end of one attempt, to be recorded.
type outcome struct {
	rec *tasks.RawResult // the claimed row, updated to what is recorded
	// attempt guards the update: the row must still be RUNNING, held by
	// this worker, at this attempt.
	attempt int
	// handBack: the worker stopped before the task finished; the task
	// goes back to READY and the attempt is not counted.
	handBack bool
	newErr   *tasks.TaskError
	// next is the next run of a repeating task, inserted with the
	// completion.
	next *tasks.RawResult
}

// The completion guard is worker_id and attempts: worker_id is set only
// while a task is RUNNING (claim sets it; complete, rescue and hand-back
// clear it), so a worker whose task was rescued (and maybe claimed again)
// cannot record over it. The guard deliberately does not test status: that
// would let the planner pick the partial index on RUNNING rows, whose dead
// entries grow with every task processed, instead of the primary key.

// complete records a batch of outcomes in one statement (plus one INSERT
// for repeats, in the same transaction) and returns the outcomes that were
// recorded; the others lost their claim (the task was rescued meanwhile).
// A FAILED outcome needs nothing read back from its row: the row of a task
// whose stored columns cannot be read (row.bad) is recorded like any other.
//
// planTag is appended to the statement where the store has
// featPlanGenerations (see planTagger).
func (b *Backend) complete(ctx context.Context, workerID, planTag string, outs []*outcome) ([]*outcome, error) {
	hasNext := false
	for _, o := range outs {
		hasNext = hasNext || o.next != nil
	}
	unlock := b.writeLock()
	defer unlock()
	if !hasNext {
		ids, err := b.store.complete(ctx, b.db.DB, workerID, planTag, outs)
		if err != nil {
			return nil, b.wrapErr("complete", err)
		}
		return recorded(outs, ids), nil
	}
	tx, err := b.db.DB.BeginTx(ctx, nil)
	if err != nil {
		return nil, b.wrapErr("complete", err)
	}
	defer func() { _ = tx.Rollback() }()
	ids, err := b.store.complete(ctx, tx, workerID, planTag, outs)
	if err != nil {
		return nil, b.wrapErr("complete", err)
	}
	done := recorded(outs, ids)
	var nexts []*tasks.RawResult
	for _, o := range done {
		if o.next != nil {
			nexts = append(nexts, o.next)
		}
	}
	if len(nexts) > 0 {
		if err := b.store.insert(ctx, tx, nexts, nexts[0].EnqueuedAt); err != nil {
			return nil, b.wrapErr("enqueue", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, b.wrapErr("complete: commit", err)
	}
	return done, nil
}

func recorded(outs []*outcome, ids map[string]bool) []*outcome {
	done := make([]*outcome, 0, len(outs))
	for _, o := range outs {
		if ids[o.rec.ID] {
			done = append(done, o)
		}
	}
	return done
}

// storableError returns e with NUL characters replaced by U+FFFD.
// PostgreSQL's jsonb (the errors column) rejects \u0000: one such message
// (a panic value, an error quoting binary data) would otherwise fail the
// completion of its whole batch, retried forever.
func storableError(e *tasks.TaskError) *tasks.TaskError {
	if !strings.ContainsRune(e.Type+e.Message+e.Stack, 0) {
		return e
	}
	c := *e
	nul := strings.NewReplacer("\x00", "\uFFFD")
	c.Type, c.Message, c.Stack = nul.Replace(c.Type), nul.Replace(c.Message), nul.Replace(c.Stack)
	return &c
}

// heartbeat refreshes the lease of the tasks ids that workerID runs. Only
// those: a row held under workerID that the worker does not know about (a
// claim whose response was lost) is left to be rescued.
func (b *Backend) heartbeat(ctx context.Context, workerID string, ids []string) error {
	if len(ids) == 0 {
		return nil
	}
	unlock := b.writeLock()
	defer unlock()
	return b.wrapErr("heartbeat", b.store.heartbeat(ctx, b.db.DB, now(), workerID, ids))
}

// claimRef names one claim of a task: its id and the attempt the claim
// started (attempts after the claim).
type claimRef struct {
	id       string
	attempts int
}

// release hands back tasks that workerID claimed but never started (claimed
// ahead, see aheadEstimator): READY again with the attempt not counted, as
// far as possible as if never claimed — the worker leaves worker_ids, and
// started_at is cleared when this claim set it. last_attempted_at keeps the
// claim's time. Other workers are woken. It returns how many were released.
//
// Each row must still be RUNNING under workerID at the claim's attempt: a
// release retried late (after a failure) leaves alone a row that was
// rescued meanwhile, and a later claim of it, even by this worker.
func (b *Backend) release(ctx context.Context, workerID string, refs []claimRef) (int, error) {
	if len(refs) == 0 {
		return 0, nil
	}
	unlock := b.writeLock()
	n, err := b.store.release(ctx, b.db.DB, workerID, refs)
	unlock()
	if err != nil {
		return 0, b.wrapErr("release", err)
	}
	if n > 0 {
		b.hub.wake()
	}
	return int(n), nil
}

// WorkerLostType is the TaskError type recorded for a task whose worker
// stopped heartbeating or overran the maximum run time.
const WorkerLostType = "database.WorkerLost"

// rescue puts back to READY (or FAILED when out of attempts) the RUNNING
// tasks whose worker stopped heartbeating before heartbeatCutoff (a task
// without a heartbeat counts from the start of its attempt), or whose
// attempt started before runCutoff, other than those of self (whose
// heartbeat is known to be alive). One statement;
// safe to run from many workers at once. run_after is left as it was (the
// task was due when it was claimed): a rescued task keeps its place in the
// claim order, ahead of the tasks enqueued after it, and a repeating task
// keeps its schedule.
//
// orphansOf, when not empty, also rescues every RUNNING task held under
// that worker id whatever its heartbeat: a worker calls it once at start-up
// with its own id, before it claims anything, so that tasks left RUNNING by
// an earlier process with the same --worker-id (whose heartbeats the new
// process would otherwise keep alive) come back at once.
//
// A rescued row with a column that cannot be read is returned with bad set.
func (b *Backend) rescue(ctx context.Context, self string, heartbeatCutoff, runCutoff time.Time, orphansOf string) ([]*row, error) {
	t := now()
	unlock := b.writeLock()
	defer unlock()
	rows, err := b.store.rescue(ctx, b.db.DB, t, self, heartbeatCutoff, runCutoff, orphansOf)
	return rows, b.wrapErr("rescue", err)
}
