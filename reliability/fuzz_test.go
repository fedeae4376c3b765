package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/reliability/internal/reltasks"
	"github.com/gotasks/gotasks/tasks"
)

// Fuzz targets for everything that decodes stored data. Their seeds (f.Add
// and testdata/fuzz) run in every `go test`; explore with, e.g.,
//
//	go test -run '^$' -fuzz '^FuzzArgs$' -fuzztime 1m ./reliability/

// fuzzArgs has a field of each JSON kind.
type fuzzArgs struct {
	S    string            `json:"s"`
	N    int               `json:"n"`
	F    float64           `json:"f"`
	B    bool              `json:"b"`
	List []string          `json:"list"`
	Map  map[string]int    `json:"map"`
	Ptr  *fuzzArgs         `json:"ptr"`
	Any  any               `json:"any"`
	Nest map[string][]bool `json:"nest"`
}

// fuzzEcho returns its arguments: RunAttempt must then return their encoding.
var fuzzEcho = tasks.Define("reliability_test.fuzz_echo", func(ctx context.Context, a fuzzArgs) (fuzzArgs, error) {
	return a, nil
})

var argSeeds = []string{
	`{"s":"x","n":1,"f":1.5,"b":true,"list":["a"],"map":{"k":1},"ptr":{"s":"in"},"any":[1,"2",null],"nest":{"a":[true]}}`,
	`{}`, `null`, `[]`, `"a string"`, `12`, ``, `{`, `{"s":`, `{"n":1e400}`, `{"n":1.5}`, `{"n":"1"}`,
	"{\"s\":\"\xff\xfe invalid UTF-8\"}", `{"s":"\ud800 lone surrogate"}`, `{"s":"nul \u0000 byte"}`,
	`{"ptr":{"ptr":{"ptr":{"ptr":{}}}}}`, `{"map":{"a":1,"a":2}}`, `{"S":"case-insensitive"}`,
	`{"any":` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `}`, ` {"s":"trailing"} garbage`,
	`{"key":"k","sleep_ms":1}`,
}

// FuzzArgs: stored arguments of any bytes decode (DecodeArgs, RunAttempt) to
// a value that survives another round trip, or fail with an *ArgsError —
// never a panic, never a different error.
func FuzzArgs(f *testing.F) {
	for _, s := range argSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a, err := fuzzEcho.DecodeArgs(data)
		var ae *tasks.ArgsError
		if err != nil {
			if !errors.As(err, &ae) || !strings.Contains(err.Error(), "arguments do not decode") {
				t.Fatalf("DecodeArgs(%q): %v, want an *ArgsError", data, err)
			}
		} else {
			again, err := json.Marshal(a)
			if err != nil {
				t.Fatalf("DecodeArgs(%q) = %+v, which does not encode: %v", data, a, err)
			}
			b, err := fuzzEcho.DecodeArgs(again)
			if err != nil {
				t.Fatalf("decoded args re-encoded as %s do not decode: %v", again, err)
			}
			// Compare encodings (linear; cmp.Diff is exponential on deeply
			// nested values) and show the difference when they differ.
			if third, _ := json.Marshal(b); string(third) != string(again) {
				t.Fatalf("args %q change on a second round trip (-first +second):\n%s", data, cmp.Diff(a, b))
			}
		}
		var at tasks.Attempt
		rec := &tasks.RawResult{ID: "fuzz", TaskName: fuzzEcho.Name(), Args: data, Status: tasks.StatusRunning, Attempts: 1}
		tasks.RunAttempt(context.Background(), rec, tasks.AttemptConfig{}, func(a tasks.Attempt) { at = a })
		out, xerr := at.Value, at.Err
		if (err == nil) != (xerr == nil) {
			t.Fatalf("DecodeArgs err = %v but RunAttempt err = %v", err, xerr)
		}
		if xerr != nil {
			var pe *tasks.PanicError
			if errors.As(xerr, &pe) || !errors.As(xerr, &ae) {
				t.Fatalf("RunAttempt(%q): %v, want an *ArgsError", data, xerr)
			}
			te := tasks.NewTaskError(1, time.Now(), xerr)
			if te.Type == "" || te.Message == "" {
				t.Fatalf("NewTaskError(%v) = %+v", xerr, te)
			}
			if at.Status != tasks.StatusFailed || at.Record == nil || at.Record.Message != te.Message {
				t.Fatalf("RunAttempt(%q): %s with record %+v, want FAILED with the error recorded", data, at.Status, at.Record)
			}
			return
		}
		if at.Status != tasks.StatusSuccessful || !json.Valid(out) {
			t.Fatalf("RunAttempt(%q): %s with invalid JSON %q", data, at.Status, out)
		}
	})
}

// fuzzResult is the return type the fuzzed return values decode to.
type fuzzResult struct {
	Name  string         `json:"name"`
	Count int            `json:"count"`
	Items []float64      `json:"items"`
	Meta  map[string]any `json:"meta"`
}

// FuzzReturnValue: Result.Value on any stored return value gives the value
// or an error that says the return value does not decode (SUCCESSFUL), and
// the status's own error otherwise.
func FuzzReturnValue(f *testing.F) {
	for _, s := range []string{`{"name":"x","count":2,"items":[1.5],"meta":{"a":null}}`, `null`, ``, `{`, `"str"`,
		`[1,2]`, `{"count":"2"}`, `{"count":1e100}`, "\"\xff\"", `{"name":"\u0000"}`, `1 2`} {
		for st := range 5 {
			f.Add([]byte(s), uint8(st))
		}
	}
	statuses := []tasks.Status{tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled, tasks.StatusReady, tasks.StatusRunning}
	f.Fuzz(func(t *testing.T, data []byte, st uint8) {
		raw := tasks.RawResult{ID: "fuzz", TaskName: "fuzz", Status: statuses[int(st)%len(statuses)], ReturnValue: data,
			Errors: []tasks.TaskError{{Attempt: 1, Type: "x", Message: string(data)}}, Attempts: 1}
		check := func(name string, err error) {
			t.Helper()
			switch raw.Status {
			case tasks.StatusSuccessful:
				if err != nil && !strings.Contains(err.Error(), "decode return value") {
					t.Fatalf("%s on SUCCESSFUL %q: %v, want a decoding error", name, data, err)
				}
				if err == nil && !json.Valid(data) {
					t.Fatalf("%s on SUCCESSFUL %q: no error for invalid JSON", name, data)
				}
			case tasks.StatusFailed:
				if !errors.Is(err, tasks.ErrTaskFailed) {
					t.Fatalf("%s on FAILED: %v, want ErrTaskFailed", name, err)
				}
			case tasks.StatusCancelled:
				if !errors.Is(err, tasks.ErrTaskCancelled) {
					t.Fatalf("%s on CANCELLED: %v, want ErrTaskCancelled", name, err)
				}
			default:
				if !errors.Is(err, tasks.ErrNotFinished) {
					t.Fatalf("%s on %s: %v, want ErrNotFinished", name, raw.Status, err)
				}
			}
		}
		r1 := tasks.Result[fuzzResult]{RawResult: raw}
		_, err := r1.Value()
		check("Value[struct]", err)
		r2 := tasks.Result[any]{RawResult: raw}
		_, err = r2.Value()
		check("Value[any]", err)
		r3 := tasks.Result[reltasks.RecordResult]{RawResult: raw}
		_, err = r3.Value()
		check("Value[RecordResult]", err)
	})
}

// FuzzTaskErrors: the stored errors column decodes to []TaskError or fails
// with an error; what decodes prints and survives another round trip.
func FuzzTaskErrors(f *testing.F) {
	for _, s := range []string{
		`[{"attempt":1,"type":"*errors.errorString","message":"boom","at":"2026-01-02T03:04:05.123456Z"}]`,
		`[{"attempt":2,"type":"panic","message":"x","stack":"goroutine 1 [running]:\nmain.main()","at":"2026-01-02T03:04:05Z"}]`,
		`[{"attempt":1,"type":"database.WorkerLost","message":"worker stopped heartbeating","at":"2026-01-02T03:04:05.1+02:00"}]`,
		`[]`, `null`, `{}`, `[1]`, `[{"at":"yesterday"}]`, `[{"attempt":"1"}]`, `[{"message":"\u0000"}]`, `[`, ``,
		"[{\"message\":\"\xff\"}]", `[{"at":"2026-13-45T99:99:99Z"}]`, `[null,{}]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var es []tasks.TaskError
		if err := json.Unmarshal(data, &es); err != nil {
			return // a clear error: scanResult reports "corrupt errors"
		}
		for i := range es {
			_ = es[i].Error()
		}
		again, err := json.Marshal(es)
		if err != nil {
			// Only times outside what RFC 3339 can write (years < 0 or > 9999)
			// fail here; they come from the decoder, so they must decode again.
			if !strings.Contains(err.Error(), "year outside of range") {
				t.Fatalf("errors %q decoded but do not encode: %v", data, err)
			}
			return
		}
		var es2 []tasks.TaskError
		if err := json.Unmarshal(again, &es2); err != nil {
			t.Fatalf("errors re-encoded as %s do not decode: %v", again, err)
		}
		if d := cmp.Diff(es, es2); d != "" { // flat values: cmp is cheap here
			t.Fatalf("errors %q change on a second round trip (-first +second):\n%s", data, d)
		}
		r := tasks.RawResult{ID: "fuzz", TaskName: "fuzz", Status: tasks.StatusFailed, Errors: es, Attempts: len(es)}
		if _, err := (&tasks.Result[int]{RawResult: r}).Value(); !errors.Is(err, tasks.ErrTaskFailed) {
			t.Fatalf("Value of a FAILED result: %v", err)
		}
	})
}

// fuzzBackend opens the SQLite backend FuzzStoredRow writes rows to: once
// per fuzz process (the F function runs once in each), so that each input
// costs one INSERT and one SELECT.
func fuzzBackend(f *testing.F) *database.Backend {
	b, err := database.Open(context.Background(), dbtest.SQLiteDSN(f), database.WithName("rel.fuzz"),
		database.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { b.Close() })
	return b
}

var fuzzRowSeq atomic.Int64

// FuzzStoredRow writes arbitrary bytes to the args, errors, return_value and
// worker_ids columns of a stored SQLite row (anything a TEXT column can
// hold: invalid JSON and UTF-8, NUL bytes) and reads it back through the
// backend: GetResult returns the result or an error that names the row and
// says what is corrupt, and the typed API never panics.
func FuzzStoredRow(f *testing.F) {
	b := fuzzBackend(f)
	seeds := []struct{ args, errs, ret, wids string }{
		{`{"key":"k","sleep_ms":1}`, `[]`, `{"worker":"w","token":"t"}`, `["w"]`},
		{`{`, `[{`, `{`, `[`},
		{`"x"`, `{}`, `null`, `{}`},
		{"{\"key\":\"\xff\"}", "[{\"message\":\"\x00\"}]", "\"\xfe\"", "[\"\xff\"]"},
		{``, ``, ``, ``},
		{`{"key":"k"}`, `[{"attempt":1,"type":"t","message":"m","at":"not a time"}]`, `[1,2,3]`, `[1]`},
		{`{"key":"k"}`, `[{"attempt":1,"type":"t","message":"m","at":"2026-01-02T03:04:05Z"}]`, `{"worker":1}`, `["a","b"]`},
	}
	for _, s := range seeds {
		for st := range 5 {
			f.Add([]byte(s.args), []byte(s.errs), []byte(s.ret), []byte(s.wids), uint8(st))
		}
	}
	statuses := []tasks.Status{tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, args, errs, ret, wids []byte, st uint8) {
		id := fmt.Sprintf("fuzz-%d", fuzzRowSeq.Add(1))
		status := statuses[int(st)%len(statuses)]
		ts := time.Now().UTC().Format(sqliteTS)
		_, err := b.DB().DB.ExecContext(ctx, `INSERT INTO gotasks_task (id, task_name, status, args, priority, queue,
			backend, run_after, enqueued_at, finished_at, attempts, max_attempts, errors, worker_ids, return_value)
			VALUES ($1, $2, $3, $4, 0, 'default', $5, $6, $6, $6, 1, 3, $7, $8, $9)`,
			id, reltasks.Name, string(status), string(args), b.Name(), ts, string(errs), string(wids), string(ret))
		if err != nil {
			t.Fatalf("insert: %v", err)
		}
		raw, err := b.GetResult(ctx, id)
		if err != nil {
			if !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "corrupt") {
				t.Fatalf("GetResult of a row with args %q errors %q return value %q worker_ids %q: %v; "+
					"want the result or an error naming the row and what is corrupt", args, errs, ret, wids, err)
			}
			return
		}
		if raw.ID != id || raw.Status != status {
			t.Fatalf("GetResult: %s %s, want %s %s", raw.ID, raw.Status, id, status)
		}
		if _, err := reltasks.Record.DecodeArgs(raw.Args); err != nil {
			var ae *tasks.ArgsError
			if !errors.As(err, &ae) {
				t.Fatalf("DecodeArgs: %v", err)
			}
		}
		r := tasks.Result[reltasks.RecordResult]{RawResult: *raw}
		if _, err := r.Value(); err != nil && status == tasks.StatusSuccessful && !strings.Contains(err.Error(), "decode return value") {
			t.Fatalf("Value of a SUCCESSFUL result with return value %q: %v", ret, err)
		}
	})
}
