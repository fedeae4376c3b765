package database_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

var errDbtRollback = errors.New("roll back on purpose")

// dbtNotes creates a table of the test's own in b's database, to check that
// the caller's writes and the task commit or roll back together.
func dbtNotes(t *testing.T, b *database.Backend) (count func() int) {
	t.Helper()
	ctx := dbtCtx(t)
	if _, err := b.DB().DB.ExecContext(ctx, `CREATE TABLE dbt_notes (id INTEGER PRIMARY KEY, note TEXT NOT NULL)`); err != nil {
		t.Fatalf("create table: %v", err)
	}
	return func() int {
		t.Helper()
		var n int
		if err := b.DB().DB.QueryRowContext(ctx, `SELECT count(*) FROM dbt_notes`).Scan(&n); err != nil {
			t.Fatalf("count notes: %v", err)
		}
		return n
	}
}

// dbtVisibleOnEnqueue records, for every TaskEnqueued of sender, whether
// the task was already visible outside any transaction at that moment, that
// is whether the signal came after the commit.
func dbtVisibleOnEnqueue(t *testing.T, b *database.Backend) func() map[string]bool {
	var (
		mu   sync.Mutex
		seen = map[string]bool{}
	)
	t.Cleanup(signals.TaskEnqueued.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		if sender != b.Name() {
			return
		}
		_, err := b.GetResult(context.Background(), r.ID)
		mu.Lock()
		seen[r.ID] = err == nil
		mu.Unlock()
	}))
	return func() map[string]bool {
		mu.Lock()
		defer mu.Unlock()
		c := make(map[string]bool, len(seen))
		for k, v := range seen {
			c[k] = v
		}
		return c
	}
}

func TestRunInTxCommitAndRollback(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		notes := dbtNotes(t, b)
		enq := dbtRecord(t, signals.TaskEnqueued, b.Name())
		visible := dbtVisibleOnEnqueue(t, b)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))

		// Rollback: no task, no note, no signal.
		var rolledBack *tasks.Result[dbtSum]
		err := database.RunInTx(ctx, b.DB(), func(txCtx context.Context, tx bun.Tx) error {
			if !b.JoinsTx(txCtx) {
				t.Error("JoinsTx(txCtx) = false inside RunInTx")
			}
			if _, ok := database.TxFromContext(txCtx); !ok {
				t.Error("TxFromContext(txCtx) found no transaction")
			}
			var err error
			rolledBack, err = task.Enqueue(txCtx, dbtArgs{A: 1})
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(txCtx, `INSERT INTO dbt_notes (id, note) VALUES (1, 'rolled back')`); err != nil {
				return err
			}
			if got, err := b.GetResult(txCtx, rolledBack.ID); err != nil {
				t.Errorf("GetResult inside the transaction: %v", err)
			} else if diff := cmp.Diff(rolledBack.Raw(), got); diff != "" {
				t.Errorf("GetResult inside the transaction (-want +got):\n%s", diff)
			}
			return errDbtRollback
		})
		if !errors.Is(err, errDbtRollback) {
			t.Fatalf("RunInTx = %v, want the function's error", err)
		}
		if _, err := b.GetResult(ctx, rolledBack.ID); !errors.Is(err, tasks.ErrResultNotFound) {
			t.Errorf("GetResult after rollback: %v, want ErrResultNotFound", err)
		}
		if n := notes(); n != 0 {
			t.Errorf("%d notes after rollback, want 0", n)
		}
		if n := enq.count(); n != 0 {
			t.Errorf("%d TaskEnqueued after rollback, want 0", n)
		}

		// Commit: exactly one task, the note, and the signal after the commit.
		var committed *tasks.Result[dbtSum]
		err = b.RunInTx(ctx, func(txCtx context.Context, tx bun.Tx) error {
			var err error
			committed, err = task.Enqueue(txCtx, dbtArgs{A: 2, B: 3})
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(txCtx, `INSERT INTO dbt_notes (id, note) VALUES (2, 'committed')`); err != nil {
				return err
			}
			if n := enq.count(); n != 0 {
				t.Errorf("%d TaskEnqueued before the commit, want 0", n)
			}
			// Visible inside the transaction (untyped, typed, List), not
			// outside it.
			if _, err := b.GetResult(txCtx, committed.ID); err != nil {
				t.Errorf("GetResult inside the transaction: %v", err)
			}
			if _, err := task.GetResult(txCtx, committed.ID); err != nil {
				t.Errorf("typed GetResult inside the transaction: %v", err)
			}
			if rs, err := b.List(txCtx, database.Filter{}); err != nil || len(rs) != 1 {
				t.Errorf("List inside the transaction: %d results, %v; want 1", len(rs), err)
			}
			if _, err := b.GetResult(ctx, committed.ID); !errors.Is(err, tasks.ErrResultNotFound) {
				t.Errorf("GetResult outside the transaction before commit: %v, want ErrResultNotFound", err)
			}
			if rs, err := b.List(ctx, database.Filter{}); err != nil || len(rs) != 0 {
				t.Errorf("List outside the transaction before commit: %d results, %v; want 0", len(rs), err)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("RunInTx: %v", err)
		}
		got, err := b.GetResult(ctx, committed.ID)
		if err != nil {
			t.Fatalf("GetResult after commit: %v", err)
		}
		if diff := cmp.Diff(committed.Raw(), got); diff != "" {
			t.Errorf("committed result (-want +got):\n%s", diff)
		}
		if rs, err := b.List(ctx, database.Filter{}); err != nil || len(rs) != 1 {
			t.Errorf("after commit: %d results, %v; want exactly 1", len(rs), err)
		}
		if n := notes(); n != 1 {
			t.Errorf("%d notes after commit, want 1", n)
		}
		if diff := cmp.Diff([]string{committed.ID}, enq.all()); diff != "" {
			t.Errorf("TaskEnqueued after commit (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(map[string]bool{committed.ID: true}, visible()); diff != "" {
			t.Errorf("visible outside the transaction when TaskEnqueued was sent (-want +got):\n%s", diff)
		}
		// Outside the transaction again, the context does not join it.
		if b.JoinsTx(ctx) {
			t.Error("JoinsTx outside RunInTx")
		}

		// The committed task runs.
		dbtDrain(t, b)
		if err := committed.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if v, err := committed.Value(); err != nil || v.Sum != 5 {
			t.Errorf("Value() = %+v, %v; want Sum 5", v, err)
		}
	})
}

func TestRunInTxEnqueueManyAndNested(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		notes := dbtNotes(t, b)
		enq := dbtRecord(t, signals.TaskEnqueued, b.Name())
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		batch := []dbtArgs{{A: 1}, {A: 2}, {A: 3}}

		for _, commit := range []bool{false, true} {
			var ids []string
			err := b.RunInTx(ctx, func(txCtx context.Context, tx bun.Tx) error {
				rs, err := task.EnqueueMany(txCtx, batch)
				if err != nil {
					return err
				}
				for _, r := range rs {
					ids = append(ids, r.ID)
				}
				// A nested RunInTx on the same database joins the outer
				// transaction.
				return database.RunInTx(txCtx, b.DB(), func(inner context.Context, tx2 bun.Tx) error {
					r, err := task.Enqueue(inner, dbtArgs{A: 4})
					if err != nil {
						return err
					}
					ids = append(ids, r.ID)
					_, err = tx2.ExecContext(inner, `INSERT INTO dbt_notes (id, note) VALUES (1, 'nested')`)
					if err != nil {
						return err
					}
					if !commit {
						return errDbtRollback
					}
					return nil
				})
			})
			if commit != (err == nil) {
				t.Fatalf("commit=%v: RunInTx = %v", commit, err)
			}
			rs, err := b.List(ctx, database.Filter{})
			if err != nil {
				t.Fatal(err)
			}
			want, wantNotes := []string(nil), 0
			if commit {
				want, wantNotes = ids, 1
			}
			if diff := cmp.Diff(dbtSorted(want), dbtIDs(rs)); diff != "" {
				t.Errorf("commit=%v: stored tasks (-want +got):\n%s", commit, diff)
			}
			if diff := cmp.Diff(dbtSorted(want), dbtSorted(enq.all())); diff != "" {
				t.Errorf("commit=%v: TaskEnqueued (-want +got):\n%s", commit, diff)
			}
			if n := notes(); n != wantNotes {
				t.Errorf("commit=%v: %d notes, want %d", commit, n, wantNotes)
			}
		}
	})
}

func dbtSorted(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	c := slices.Clone(ids)
	slices.Sort(c)
	return c
}

// Other backends inside RunInTx: enqueue-on-commit defers to the commit and
// drops on rollback; with it off, the enqueue happens at once.
func TestRunInTxOtherBackends(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)

		type target struct {
			name    string
			backend tasks.Backend
			stored  func() []string
		}
		d := dummy.New(tasks.WithName(dbtName(t)))
		t.Cleanup(tasks.RegisterBackend(d))
		dOff := dummy.New(tasks.WithName(dbtName(t)), tasks.WithDefaultEnqueueOnCommit(false))
		t.Cleanup(tasks.RegisterBackend(dOff))
		// A database backend on another database cannot join the
		// transaction: it behaves as any other backend.
		b2 := dbtOpen(t, dbtest.DSN(t, dbtDialect(dsn)))
		list := func(be *database.Backend) func() []string {
			return func() []string {
				rs, err := be.List(context.Background(), database.Filter{})
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				return dbtIDs(rs)
			}
		}
		dummyIDs := func(db *dummy.Backend) func() []string {
			return func() []string { return dbtIDs(db.Results()) }
		}

		for _, tg := range []target{
			{"dummy", d, dummyIDs(d)},
			{"dummy with enqueue-on-commit off", dOff, dummyIDs(dOff)},
			{"database on another database", b2, list(b2)},
		} {
			backendOff := !tg.backend.EnqueueOnCommit()
			for _, c := range []struct {
				name   string
				opts   []tasks.Option
				commit bool
			}{
				{"default/commit", nil, true},
				{"default/rollback", nil, false},
				{"task on/commit", []tasks.Option{tasks.WithEnqueueOnCommit(true)}, true},
				{"task on/rollback", []tasks.Option{tasks.WithEnqueueOnCommit(true)}, false},
				{"task off/commit", []tasks.Option{tasks.WithEnqueueOnCommit(false)}, true},
				{"task off/rollback", []tasks.Option{tasks.WithEnqueueOnCommit(false)}, false},
			} {
				name := tg.name + "/" + c.name
				immediate := backendOff
				if len(c.opts) > 0 {
					immediate = c.name[:len("task off")] == "task off"
				}
				enq := dbtRecord(t, signals.TaskEnqueued, tg.backend.Name())
				before := len(tg.stored())
				task := dbtAdd.Using(append([]tasks.Option{tasks.WithBackend(tg.backend.Name())}, c.opts...)...)
				var res *tasks.Result[dbtSum]
				err := database.RunInTx(ctx, b.DB(), func(txCtx context.Context, tx bun.Tx) error {
					var err error
					if res, err = task.Enqueue(txCtx, dbtArgs{A: 1}); err != nil {
						return err
					}
					if res.Status != tasks.StatusReady {
						t.Errorf("%s: handle status %s, want READY", name, res.Status)
					}
					_, gerr := tg.backend.GetResult(ctx, res.ID)
					if immediate {
						if gerr != nil {
							t.Errorf("%s: not enqueued at once: %v", name, gerr)
						}
						if n := enq.count(); n != 1 {
							t.Errorf("%s: %d TaskEnqueued inside the transaction, want 1", name, n)
						}
					} else {
						if !errors.Is(gerr, tasks.ErrResultNotFound) {
							t.Errorf("%s: GetResult before commit: %v, want ErrResultNotFound (deferred)", name, gerr)
						}
						if n := enq.count(); n != 0 {
							t.Errorf("%s: %d TaskEnqueued before the commit, want 0", name, n)
						}
					}
					if !c.commit {
						return errDbtRollback
					}
					return nil
				})
				if c.commit != (err == nil) {
					t.Fatalf("%s: RunInTx = %v", name, err)
				}
				wantStored := c.commit || immediate
				_, gerr := tg.backend.GetResult(ctx, res.ID)
				if wantStored != (gerr == nil) {
					t.Errorf("%s: after the transaction: GetResult = %v, want stored=%v", name, gerr, wantStored)
				}
				wantN := 0
				if wantStored {
					wantN = 1
				}
				if n := len(tg.stored()) - before; n != wantN {
					t.Errorf("%s: %d new results, want %d", name, n, wantN)
				}
				if diff := cmp.Diff(wantN, enq.count()); diff != "" {
					t.Errorf("%s: TaskEnqueued count (-want +got):\n%s", name, diff)
				}
			}
		}
		// Nothing reached the transaction's own backend.
		if rs, err := b.List(ctx, database.Filter{}); err != nil || len(rs) != 0 {
			t.Errorf("the transaction's backend has %d results (%v), want 0", len(rs), err)
		}
	})
}

// Cancel inside RunInTx writes in the caller's transaction. On SQLite that
// transaction holds the database's write lock, so Cancel must not wait for
// this process's other writers, which may themselves be waiting for that
// lock (the deadlock would end only when their busy timeout surfaced
// "database is locked").
func TestRunInTxCancelWhileOthersWrite(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()))
		otherDone := make(chan error, 1)
		var (
			inTx          *tasks.Result[dbtSum]
			cancelLatency time.Duration
		)
		err := b.RunInTx(ctx, func(txCtx context.Context, _ bun.Tx) error {
			var err error
			if inTx, err = task.Enqueue(txCtx, dbtArgs{A: 1}); err != nil {
				return err
			}
			// Another goroutine writes outside the transaction; on SQLite
			// it waits for the transaction's lock while holding its
			// connection (and the backend's write mutex).
			go func() {
				_, err := task.Enqueue(ctx, dbtArgs{A: 2})
				otherDone <- err
			}()
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			defer pcancel()
			_ = dbtPoll(pctx, func() bool { return b.DB().Stats().InUse >= 2 || len(otherDone) > 0 })
			cctx, cancel := context.WithTimeout(txCtx, 10*time.Second)
			defer cancel()
			start := time.Now()
			err = b.Cancel(cctx, inTx.ID)
			cancelLatency = time.Since(start)
			return err
		})
		if err != nil {
			t.Fatalf("RunInTx with Cancel inside: %v", err)
		}
		t.Logf("Cancel inside the transaction took %v", cancelLatency)
		if cancelLatency > 2*time.Second {
			t.Errorf("Cancel inside the transaction took %v: it waited for a writer outside it", cancelLatency)
		}
		if err := <-otherDone; err != nil {
			t.Errorf("the enqueue outside the transaction: %v", err)
		}
		if err := inTx.Refresh(ctx); err != nil || inTx.Status != tasks.StatusCancelled {
			t.Errorf("the task cancelled in the transaction: %s, %v; want CANCELLED", inTx.Status, err)
		}
	})
}

// A handle deferred to the commit has no enqueue time, and no run-after
// unless one was set, until the task is really enqueued; after the commit,
// Refresh shows the stored ones.
func TestDeferredHandleHasNoEnqueueTime(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := dbtCtx(t)
		b := dbtOpen(t, dsn)
		// A database backend on another database cannot join b's
		// transactions: its enqueues are deferred.
		b2 := dbtOpen(t, dbtest.DSN(t, dbtDialect(dsn)))
		d := dummy.New(tasks.WithName(dbtName(t)))
		t.Cleanup(tasks.RegisterBackend(d))
		runAfter := time.Now().Add(time.Hour).UTC().Truncate(time.Microsecond)

		type txRunner func(fn func(txCtx context.Context) error) error
		runInTx := func(fn func(txCtx context.Context) error) error {
			return b.RunInTx(ctx, func(txCtx context.Context, _ bun.Tx) error { return fn(txCtx) })
		}
		withHooks := func(fn func(txCtx context.Context) error) error {
			h := tasks.NewTxHooks(nil)
			if err := fn(tasks.ContextWithTx(ctx, h)); err != nil {
				h.Rollback()
				return err
			}
			return h.Commit(ctx)
		}
		for _, c := range []struct {
			name    string
			backend string
			tx      txRunner
		}{
			{"database RunInTx, backend on another database", b2.Name(), runInTx},
			{"dummy with TxHooks", d.Name(), withHooks},
		} {
			for _, explicit := range []bool{false, true} {
				task := dbtAdd.Using(tasks.WithBackend(c.backend))
				wantRunAfter := time.Time{}
				if explicit {
					task = task.Using(tasks.WithRunAfter(runAfter))
					wantRunAfter = runAfter
				}
				var handles []*tasks.Result[dbtSum]
				err := c.tx(func(txCtx context.Context) error {
					r, err := task.Enqueue(txCtx, dbtArgs{A: 1})
					if err != nil {
						return err
					}
					rs, err := task.EnqueueMany(txCtx, []dbtArgs{{A: 2}, {A: 3}})
					if err != nil {
						return err
					}
					handles = append([]*tasks.Result[dbtSum]{r}, rs...)
					for _, h := range handles {
						if !h.EnqueuedAt.IsZero() {
							t.Errorf("%s: deferred handle EnqueuedAt = %v, want zero", c.name, h.EnqueuedAt)
						}
						if !h.RunAfter.Equal(wantRunAfter) {
							t.Errorf("%s: deferred handle RunAfter = %v, want %v", c.name, h.RunAfter, wantRunAfter)
						}
						if h.Status != tasks.StatusReady {
							t.Errorf("%s: deferred handle status %s, want READY", c.name, h.Status)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatalf("%s: transaction: %v", c.name, err)
				}
				for _, h := range handles {
					if err := h.Refresh(ctx); err != nil {
						t.Fatalf("%s: Refresh after commit: %v", c.name, err)
					}
					if h.EnqueuedAt.IsZero() {
						t.Errorf("%s: EnqueuedAt after commit and Refresh is zero", c.name)
					}
					want := h.EnqueuedAt
					if explicit {
						want = runAfter
					}
					if !h.RunAfter.Equal(want) {
						t.Errorf("%s: RunAfter after commit = %v, want %v", c.name, h.RunAfter, want)
					}
				}
			}
		}
	})
}

// The core logs the enqueues of every backend on the backend's logger: a
// dummy backend's deferred enqueue logs "deferred to commit", then the
// enqueue at the commit; nothing after a rollback.
func TestEnqueueLogsOtherBackends(t *testing.T) {
	t.Parallel()
	logs := &dbtLogCapture{}
	d := dummy.New(tasks.WithName(dbtName(t)), tasks.WithLogger(slog.New(logs)))
	t.Cleanup(tasks.RegisterBackend(d))
	task := dbtAdd.Using(tasks.WithBackend(d.Name()))
	line := func(msg, id, mode string) map[string]string {
		m := map[string]string{"level": "DEBUG", "msg": msg, "id": id, "task": dbtAdd.Name(),
			"queue": tasks.DefaultQueue, "backend": d.Name()}
		if mode != "" {
			m["mode"] = mode
		}
		return m
	}
	ctx := dbtCtx(t)
	r, err := task.Enqueue(ctx, dbtArgs{A: 1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]map[string]string{line("gotasks: task enqueued", r.ID, "")}, logs.take("gotasks: task enqueued")); diff != "" {
		t.Errorf("Enqueue's log (-want +got):\n%s", diff)
	}
	for _, commit := range []bool{false, true} {
		h := tasks.NewTxHooks(nil)
		r, err := task.Enqueue(tasks.ContextWithTx(ctx, h), dbtArgs{A: 2})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]map[string]string{line("gotasks: task deferred to commit", r.ID, "deferred to commit")},
			logs.take("gotasks: task deferred to commit")); diff != "" {
			t.Errorf("commit=%v: deferred enqueue's log (-want +got):\n%s", commit, diff)
		}
		var want []map[string]string
		if commit {
			if err := h.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			want = []map[string]string{line("gotasks: task enqueued", r.ID, "")}
		} else {
			h.Rollback()
		}
		if diff := cmp.Diff(want, logs.take("gotasks: task enqueued")); diff != "" {
			t.Errorf("commit=%v: log after the transaction (-want +got):\n%s", commit, diff)
		}
	}
}
