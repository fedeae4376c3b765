package reliability_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/reliability/internal/reltasks"
	"github.com/gotasks/gotasks/tasks"
)

// sqliteTS is the stored form of times on SQLite.
const sqliteTS = "2006-01-02 15:04:05.000000"

// rawRow is a gotasks_task row written with SQL, bypassing the API, as an
// operator's hand edit, another version of the code or a bug would.
type rawRow struct {
	id, taskName, args, backend string
	// Optional column overrides (SQL text; SQLite only holds invalid JSON).
	errors, workerIDs string
}

// insertRaw inserts r READY and due; it returns the database's error.
func (e *env) insertRaw(ctx context.Context, r rawRow) error {
	var now any = time.Now().UTC()
	if e.dialect == "sqlite" {
		now = time.Now().UTC().Format(sqliteTS)
	}
	if r.backend == "" {
		r.backend = e.name
	}
	if r.errors == "" {
		r.errors = "[]"
	}
	if r.workerIDs == "" {
		r.workerIDs = "[]"
	}
	_, err := e.db.ExecContext(ctx, `INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend,
		run_after, enqueued_at, max_attempts, errors, worker_ids) VALUES ($1, $2, 'READY', $3, 0, 'default', $4, $5, $5, 3, $6, $7)`,
		r.id, r.taskName, r.args, r.backend, now, r.errors, r.workerIDs)
	return err
}

// TestBadRows: rows with an unknown task name, corrupt or ill-typed JSON
// arguments, 1 MiB arguments, invalid UTF-8, a panicking task, and rows of
// another backend sit in the queue with ordinary tasks. Each bad row ends
// with a clear error (or is handled), the worker survives and runs every
// other task exactly once, and nothing else is touched.
func TestBadRows(t *testing.T) {
	skipShort(t)
	t.Parallel()
	forDialects(t, testBadRows)
}

func testBadRows(t *testing.T, dialect string) {
	e := newEnv(t, dialect, false)
	ctx := context.Background()
	sqlite := dialect == "sqlite"

	// What every bad row must end as: status, attempts, and fragments of
	// the last error, separated by "|" (empty: no error).
	type outcome struct {
		Status   tasks.Status
		Attempts int
		Error    string
	}
	want := map[string]outcome{}
	raw := func(name string, r rawRow, rejectedByPG string, o outcome) {
		t.Helper()
		r.id = "bad-" + name
		err := e.insertRaw(ctx, r)
		if !sqlite && rejectedByPG != "" {
			// PostgreSQL validates JSON and UTF-8 itself: the bad value never
			// gets in, with a clear error.
			if err == nil || !strings.Contains(err.Error(), rejectedByPG) {
				t.Errorf("%s: insert on PostgreSQL: err = %v, want one containing %q", name, err, rejectedByPG)
			}
			return
		}
		if err != nil {
			t.Fatalf("%s: insert: %v", name, err)
		}
		want[r.id] = o
	}
	// An unknown name is retried with backoff like any failure (a rolling
	// deploy may ship the enqueuer before the workers): READY again.
	raw("unknown-task", rawRow{taskName: "reliability.no_such_task", args: `{}`}, "",
		outcome{tasks.StatusReady, 1, `reliability.no_such_task|not registered in this binary`})
	raw("ill-typed-args", rawRow{taskName: reltasks.Name, args: `"not an object"`}, "",
		outcome{tasks.StatusFailed, 1, "arguments do not decode"})
	raw("corrupt-args", rawRow{taskName: reltasks.Name, args: `{"key": "corrupt", `}, "invalid input syntax for type json",
		outcome{tasks.StatusFailed, 1, "arguments do not decode"})
	raw("invalid-utf8-args", rawRow{taskName: reltasks.Name, args: "{\"key\":\"utf8-\xff\xfe\",\"sleep_ms\":1}"},
		"invalid byte sequence", outcome{tasks.StatusSuccessful, 1, ""})
	// The bookkeeping columns: invalid JSON (only SQLite can hold it) or
	// JSON of the wrong shape. The task itself is fine and must run.
	raw("corrupt-errors", rawRow{taskName: reltasks.Name, args: `{"key":"corrupt-errors"}`, errors: `[{"attempt":`},
		"invalid input syntax for type json", outcome{tasks.StatusSuccessful, 1, ""})
	raw("corrupt-worker-ids", rawRow{taskName: reltasks.Name, args: `{"key":"corrupt-worker-ids"}`, workerIDs: `not json`},
		"invalid input syntax for type json", outcome{tasks.StatusSuccessful, 1, ""})
	raw("ill-typed-errors", rawRow{taskName: reltasks.Name, args: `{"key":"ill-typed-errors"}`, errors: `{"not": "a list"}`},
		"", outcome{tasks.StatusSuccessful, 1, ""})
	raw("ill-typed-worker-ids", rawRow{taskName: reltasks.Name, args: `{"key":"ill-typed-worker-ids"}`, workerIDs: `[1, 2]`},
		"", outcome{tasks.StatusSuccessful, 1, ""})
	// A failing task whose stored errors are corrupt: its failure replaces them.
	raw("corrupt-errors-failing", rawRow{taskName: reltasks.Name, args: `"not an object"`, errors: `[{`},
		"invalid input syntax for type json", outcome{tasks.StatusFailed, 1, "arguments do not decode"})
	// Another backend's row in the same table: never touched.
	raw("other-backend", rawRow{taskName: reltasks.Name, args: `{"key":"other"}`, backend: "rel.other"}, "",
		outcome{tasks.StatusReady, 0, ""})

	// Through the API.
	api := func(name, id string, err error, o outcome) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: enqueue: %v", name, err)
		}
		want[id] = o
	}
	big, err := e.task.Enqueue(ctx, reltasks.RecordArgs{Key: "big", Pad: strings.Repeat("x", 1<<20)})
	api("1MiB-args", big.ID, err, outcome{tasks.StatusSuccessful, 1, ""})
	// encoding/json replaces invalid UTF-8 with U+FFFD when it encodes the
	// arguments: the task runs with the replaced string.
	r, err := e.task.Enqueue(ctx, reltasks.RecordArgs{Key: "api-utf8-\xff"})
	api("api-invalid-utf8", r.ID, err, outcome{tasks.StatusSuccessful, 1, ""})
	panicTask := reltasks.Panic.Using(tasks.WithBackend(e.name))
	p1, err := panicTask.Enqueue(ctx, "boom")
	api("panic", p1.ID, err, outcome{tasks.StatusFailed, 1, "reltasks: boom"})
	// A NUL byte in an error message (PostgreSQL's jsonb cannot hold \u0000).
	p2, err := panicTask.Enqueue(ctx, "nul\x00byte")
	api("panic-nul", p2.ID, err, outcome{tasks.StatusFailed, 1, "reltasks: nul\ufffdbyte"})

	normal := e.enqueue(recordArgs("normal", 100, func(i int) int { return i % 5 }))

	w := e.startWorker("bad-w", "--batch", "--concurrency", "10")
	if code := w.wait(t, time.Minute); code != 0 {
		t.Errorf("worker exited %d, want 0 (it must survive bad rows and stop when the queue is empty)", code)
	}

	got := map[string]outcome{}
	for id := range want {
		var o outcome
		if err := e.db.QueryRowContext(ctx, `SELECT status, attempts FROM gotasks_task WHERE id = $1`, id).
			Scan(&o.Status, &o.Attempts); err != nil {
			t.Fatalf("read %s: %v", id, err)
		}
		got[id] = o
		if id == "bad-other-backend" {
			continue // invisible to this backend
		}
		// Reading a result back gives a value, or a clear error for a row
		// whose bookkeeping columns are corrupt.
		res, err := e.b.GetResult(ctx, id)
		if err != nil {
			if !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), id) {
				t.Errorf("GetResult(%s): %v; want a value or an error that names the row and says it is corrupt", id, err)
			}
			continue
		}
		if res.Status != o.Status || res.Attempts != o.Attempts {
			t.Errorf("GetResult(%s): %s after %d attempts; the row says %s after %d", id, res.Status, res.Attempts, o.Status, o.Attempts)
		}
		if last := res.LastError(); last != nil {
			o.Error = last.Message
			if w := want[id].Error; w != "" && containsAll(last.Message, strings.Split(w, "|")) {
				o.Error = w
			}
		}
		got[id] = o
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("bad rows after the worker ran (-want +got):\n%s", d)
	}

	// The ordinary tasks ran exactly once each. (List would fail on the
	// corrupt rows, with an error naming one: read them one by one.)
	rs := map[string]*tasks.RawResult{}
	for _, id := range normal {
		r, err := e.b.GetResult(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		rs[id] = r
	}
	_, byKey := e.executions(ctx)
	for key, id := range normal {
		if rs[id].Status != tasks.StatusSuccessful || len(byKey[key]) != 1 {
			t.Errorf("%s: %s after %d executions, want SUCCESSFUL after 1", key, rs[id].Status, len(byKey[key]))
		}
	}
	checkRecordedOnce(t, rs, byKey)
	if _, ok := byKey["other"]; ok {
		t.Error("the other backend's task ran")
	}
	if sqlite {
		if _, ok := byKey["utf8-\ufffd\ufffd"]; !ok {
			t.Errorf("the row with invalid UTF-8 in its arguments did not run with U+FFFD in their place; keys: %v", keys(byKey, "utf8"))
		}
	}
	if _, ok := byKey["api-utf8-\ufffd"]; !ok {
		t.Errorf("the task enqueued with invalid UTF-8 did not run with U+FFFD in its place; keys: %v", keys(byKey, "utf8"))
	}
	if err := big.Wait(ctx); err != nil {
		t.Errorf("wait for the 1 MiB task: %v", err)
	}
	if got := len(big.Args); got < 1<<20 {
		t.Errorf("1 MiB task: %d bytes of arguments read back", got)
	}
	if err := p1.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if last := p1.LastError(); last == nil || last.Type != "panic" || !strings.Contains(last.Stack, "reltasks") {
		t.Errorf("panic: last error %+v, want type panic with the stack", last)
	}
	t.Logf("FIGURES bad-rows/%s: bad_rows=%d normal=%d worker_exit=%d", dialect, len(want), len(normal), w.code)
}

func keys(m map[string][]reltasks.Exec, sub string) []string {
	var out []string
	for k := range m {
		if strings.Contains(k, sub) {
			out = append(out, fmt.Sprintf("%q", k))
		}
	}
	return out
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
