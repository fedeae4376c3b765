package database_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// TestUniqueRetryDuplicate: retrying a finished unique task whose key
// another READY task holds is ErrDuplicate for that task alone; the other
// tasks of the batch are retried.
func TestUniqueRetryDuplicate(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := dbtOpen(t, dsn)
		ctx := dbtCtx(t)
		unique := dbtAdd.Using(tasks.WithBackend(b.Name()), tasks.WithUnique(tasks.UniqueOpts{Key: "retry"}))
		plain := dbtAdd.Using(tasks.WithBackend(b.Name()))
		first, err := unique.Enqueue(ctx, dbtArgs{A: 1})
		if err != nil {
			t.Fatal(err)
		}
		other, err := plain.Enqueue(ctx, dbtArgs{A: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{first.ID, other.ID} {
			if err := b.Cancel(ctx, id); err != nil {
				t.Fatalf("Cancel(%s): %v", id, err)
			}
		}
		second, err := unique.Enqueue(ctx, dbtArgs{A: 3})
		if err != nil {
			t.Fatal(err)
		}
		if second.Duplicate || second.ID == first.ID {
			t.Fatalf("after CANCELLED: %s duplicate %v, want a new task", second.ID, second.Duplicate)
		}

		if err := b.RetryTask(ctx, first.ID); !errors.Is(err, database.ErrDuplicate) {
			t.Errorf("RetryTask of the held key: %v, want ErrDuplicate", err)
		}
		res, err := b.RetryTasks(ctx, []string{first.ID, other.ID})
		if !errors.Is(err, database.ErrDuplicate) || !strings.Contains(err.Error(), first.ID) {
			t.Errorf("RetryTasks: %v, want ErrDuplicate naming %s", err, first.ID)
		}
		if d := cmp.Diff(database.BulkResult{Affected: 1, IDs: []string{other.ID}}, res); d != "" {
			t.Errorf("RetryTasks (-want +got):\n%s", d)
		}

		// Once the holder is gone, the retry succeeds.
		if err := b.Cancel(ctx, second.ID); err != nil {
			t.Fatal(err)
		}
		if err := b.RetryTask(ctx, first.ID); err != nil {
			t.Errorf("RetryTask after the holder was cancelled: %v", err)
		}
	})
}

// TestUniqueInTransaction: inside a transaction the duplicate is the
// task inserted earlier in it; a rollback frees the key.
func TestUniqueInTransaction(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := dbtOpen(t, dsn)
		ctx := dbtCtx(t)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()), tasks.WithUnique(tasks.UniqueOpts{ByArgs: true}))
		errRollback := errors.New("roll back")
		var inTx string
		err := b.DB().RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			ctx = database.WithTx(ctx, tx)
			r1, err := task.Enqueue(ctx, dbtArgs{A: 1})
			if err != nil {
				return err
			}
			r2, err := task.Enqueue(ctx, dbtArgs{A: 1})
			if err != nil {
				return err
			}
			if d := cmp.Diff([]any{r1.ID, false, r1.ID, true}, []any{r1.ID, r1.Duplicate, r2.ID, r2.Duplicate}); d != "" {
				t.Errorf("in the transaction (-want +got):\n%s", d)
			}
			inTx = r1.ID
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatalf("RunInTx: %v", err)
		}
		r, err := task.Enqueue(ctx, dbtArgs{A: 1})
		if err != nil {
			t.Fatal(err)
		}
		if r.Duplicate || r.ID == inTx {
			t.Errorf("after the rollback: %s duplicate %v, want a new task", r.ID, r.Duplicate)
		}

		// The backend's own RunInTx: a duplicate inside, and of the
		// committed task after.
		var committed string
		if err := b.RunInTx(ctx, func(ctx context.Context, _ bun.Tx) error {
			r1, err := task.Enqueue(ctx, dbtArgs{A: 2})
			if err != nil {
				return err
			}
			r2, err := task.Enqueue(ctx, dbtArgs{A: 2})
			if err != nil {
				return err
			}
			if d := cmp.Diff([]any{r1.ID, false, r1.ID, true}, []any{r1.ID, r1.Duplicate, r2.ID, r2.Duplicate}); d != "" {
				t.Errorf("in RunInTx (-want +got):\n%s", d)
			}
			committed = r1.ID
			return nil
		}); err != nil {
			t.Fatalf("RunInTx: %v", err)
		}
		after, err := task.Enqueue(ctx, dbtArgs{A: 2})
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]any{committed, true}, []any{after.ID, after.Duplicate}); d != "" {
			t.Errorf("after the commit (-want +got):\n%s", d)
		}
	})
}

// TestUniqueBulkOppositeOrders: two goroutines enqueue, round after round,
// batches of the same new unique keys in opposite orders: no deadlock (on
// PostgreSQL, ON CONFLICT waits for an uncommitted holder) and one task a
// key.
func TestUniqueBulkOppositeOrders(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := dbtOpen(t, dsn)
		ctx := dbtCtx(t)
		task := dbtAdd.Using(tasks.WithBackend(b.Name()), tasks.WithUnique(tasks.UniqueOpts{ByArgs: true}))
		const rounds, keys = 30, 16
		for round := range rounds {
			up, down := make([]dbtArgs, keys), make([]dbtArgs, keys)
			for i := range keys {
				up[i] = dbtArgs{A: round*keys + i}
				down[keys-1-i] = up[i]
			}
			var (
				wg    sync.WaitGroup
				start = make(chan struct{})
				errs  [2]error
				ids   [2]map[dbtArgs]string
			)
			for g, batch := range [][]dbtArgs{up, down} {
				wg.Go(func() {
					<-start
					rs, err := task.EnqueueMany(ctx, batch)
					if err != nil {
						errs[g] = err
						return
					}
					ids[g] = make(map[dbtArgs]string, len(rs))
					for i, r := range rs {
						ids[g][batch[i]] = r.ID
					}
				})
			}
			close(start)
			wg.Wait()
			if err := errors.Join(errs[:]...); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if d := cmp.Diff(ids[0], ids[1]); d != "" {
				t.Fatalf("round %d: the two batches got different tasks (-up +down):\n%s", round, d)
			}
		}
		var rows int
		if err := b.DB().QueryRowContext(ctx, `SELECT count(*) FROM gotasks_task WHERE backend = ?`, b.Name()).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != rounds*keys {
			t.Errorf("%d rows, want %d (one a key)", rows, rounds*keys)
		}
	})
}

// The two-process test: the parent runs the test binary again as a child
// with these variables set.
const (
	uniqueChildDSN   = "GOTASKS_UNIQUE_CHILD_DSN"
	uniqueChildName  = "GOTASKS_UNIQUE_CHILD_BACKEND"
	uniqueChildStart = "GOTASKS_UNIQUE_CHILD_START" // Unix nanoseconds
	uniqueLinePrefix = "UNIQUE-RESULT "
)

// uniqueHandle is what one enqueue returned.
type uniqueHandle struct {
	ID        string
	Duplicate bool
}

// uniqueBurst opens the backend name on dsn, waits until start and enqueues
// the same unique task from n goroutines at once.
func uniqueBurst(dsn, name string, start time.Time, n int) ([]uniqueHandle, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithName(name),
		database.WithLogger(dbtLogger))
	if err != nil {
		return nil, err
	}
	defer b.Close()
	task := dbtAdd.Using(tasks.WithBackend(name), tasks.WithUnique(tasks.UniqueOpts{ByArgs: true, Key: "two-processes"}))
	var (
		wg   sync.WaitGroup
		out  = make([]uniqueHandle, n)
		errs = make([]error, n)
	)
	unregister := tasks.RegisterBackend(b)
	defer unregister()
	time.Sleep(time.Until(start))
	for i := range n {
		wg.Go(func() {
			r, err := task.Enqueue(ctx, dbtArgs{A: 42})
			if err != nil {
				errs[i] = err
				return
			}
			out[i] = uniqueHandle{r.ID, r.Duplicate}
		})
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// TestUniqueTwoProcesses: 8 goroutines in each of 2 processes enqueue the
// same unique task at the same moment: one task is stored, every handle
// has its id, and all handles but one are duplicates.
func TestUniqueTwoProcesses(t *testing.T) {
	if dsn := os.Getenv(uniqueChildDSN); dsn != "" {
		ns, _ := strconv.ParseInt(os.Getenv(uniqueChildStart), 10, 64)
		hs, err := uniqueBurst(dsn, os.Getenv(uniqueChildName), time.Unix(0, ns), 8)
		if err != nil {
			t.Fatalf("child: %v", err)
		}
		j, _ := json.Marshal(hs)
		fmt.Println(uniqueLinePrefix + string(j))
		return
	}
	if testing.Short() {
		t.Skip("runs a second process")
	}
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		name := dbtName(t)
		dbtOpen(t, dsn) // migrates before the two processes race
		start := time.Now().Add(2 * time.Second)
		cmd := exec.Command(os.Args[0], "-test.run=^TestUniqueTwoProcesses$", "-test.count=1")
		cmd.Env = append(os.Environ(), uniqueChildDSN+"="+dsn, uniqueChildName+"="+name,
			uniqueChildStart+"="+strconv.FormatInt(start.UnixNano(), 10))
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		mine, err := uniqueBurst(dsn, name, start, 8)
		if werr := cmd.Wait(); werr != nil {
			t.Fatalf("child: %v\n%s%s", werr, stdout.String(), stderr.String())
		}
		if err != nil {
			t.Fatalf("parent: %v", err)
		}
		if time.Now().Before(start) {
			t.Fatal("the burst did not wait for the start")
		}
		var theirs []uniqueHandle
		sc := bufio.NewScanner(&stdout)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), uniqueLinePrefix); ok {
				if err := json.Unmarshal([]byte(line), &theirs); err != nil {
					t.Fatal(err)
				}
			}
		}
		if len(theirs) != 8 {
			t.Fatalf("child reported %d handles, want 8:\n%s", len(theirs), stdout.String())
		}
		all := append(mine, theirs...)
		ids, originals := map[string]bool{}, 0
		for _, h := range all {
			ids[h.ID] = true
			if !h.Duplicate {
				originals++
			}
		}
		if len(ids) != 1 || originals != 1 {
			t.Errorf("%d distinct ids, %d not duplicates among 16 handles, want 1 and 1: %+v", len(ids), originals, all)
		}
		var rows int
		if err := dbtOpenRaw(t, dsn).QueryRowContext(dbtCtx(t), `SELECT count(*) FROM gotasks_task WHERE backend = ?`, name).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Errorf("%d rows, want 1", rows)
		}
	})
}

// dbtOpenRaw opens dsn's database through a backend of its own and returns
// its bun.DB.
func dbtOpenRaw(t *testing.T, dsn string) *bun.DB { return dbtOpen(t, dsn).DB() }

// BenchmarkEnqueueUnique compares Enqueue of a task with and without
// WithUnique (a new key each time, so every enqueue inserts: the cost of
// the index and of the ON CONFLICT insert), and of a duplicate (the key
// held: the insert skips, then the holder is read).
func BenchmarkEnqueueUnique(b *testing.B) {
	for _, mode := range []string{"plain", "unique", "duplicate"} {
		b.Run(mode, func(b *testing.B) {
			dbtBenchDialects(b, func(b *testing.B, be *database.Backend) {
				ctx := context.Background()
				task := dbtAdd.Using(tasks.WithBackend(be.Name()))
				switch mode {
				case "unique":
					task = task.Using(tasks.WithUnique(tasks.UniqueOpts{ByArgs: true}))
				case "duplicate":
					task = task.Using(tasks.WithUnique(tasks.UniqueOpts{}))
				}
				iters := 0
				for b.Loop() {
					if _, err := task.Enqueue(ctx, dbtArgs{A: iters}); err != nil {
						b.Fatal(err)
					}
					iters++
				}
				b.ReportMetric(float64(iters)/b.Elapsed().Seconds(), "enqueues/s")
			})
		})
	}
}
