package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/internal/workerfixture"
	"github.com/gotasks/gotasks/tasks"
)

// The command is built once by TestMain and run as a real process against
// a fresh database per test, on PostgreSQL and SQLite; the tasks are seeded
// and run by a database.Worker of the test process.

var binary string // path of the built gotasks

type syncBuffer = workerfixture.SyncBuffer

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "gotasks-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "gotasks")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n", err)
		_ = os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// The tasks the seeding worker runs.
var (
	_ = tasks.Define("gotasks_test.ok", func(ctx context.Context, a map[string]any) (map[string]any, error) {
		return map[string]any{"echo": a}, nil
	})
	_ = tasks.Define("gotasks_test.fail", func(ctx context.Context, a map[string]any) (string, error) {
		return "", errors.New("smtp: connection refused")
	}, tasks.WithMaxAttempts(1))
)

// gotasks runs the built command with args and the environment env (on top
// of the test's, without GOTASKS_DATABASE_URL unless env has it) in an empty
// directory.
func gotasks(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{database.DSNEnv + "="}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, database.DSNEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Dir = t.TempDir() // where the default DSN would create its file
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("gotasks %q: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// fixture is a database seeded by setup.
type fixture struct {
	dsn string
	b   *database.Backend
	// ok1 and ok2 (queue default) are SUCCESSFUL, ok1 by creator user:1;
	// fail1 (queue emails) is FAILED after its one attempt; ready1 (queue
	// emails, verbose name "Weekly report") is READY, due in an hour;
	// ready2 (queue reports, creator user:2) is READY and due now. Enqueued
	// in that order.
	ok1, ok2, fail1, ready1, ready2 string
	// all lists them newest first.
	all []string
}

// setup seeds a fresh database of dsn: a worker of this process runs the
// first three tasks, the last two are enqueued after it stopped.
func setup(t *testing.T, dsn string) *fixture {
	t.Helper()
	ctx := context.Background()
	b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	f := &fixture{dsn: dsn, b: b}
	var last int64
	enqueue := func(req tasks.EnqueueRequest) string {
		t.Helper()
		// Ids are UUIDv7, ordered by their millisecond only: one
		// millisecond each keeps the id order the enqueue order.
		dbtest.WaitUntil(t, time.Second, "the next millisecond", func() bool { return time.Now().UnixMilli() > last })
		last = time.Now().UnixMilli()
		req.ID = tasks.NewID()
		if req.Queue == "" {
			req.Queue = tasks.DefaultQueue
		}
		if _, err := b.Enqueue(ctx, &req); err != nil {
			t.Fatalf("enqueue %s: %v", req.TaskName, err)
		}
		return req.ID
	}
	f.ok1 = enqueue(tasks.EnqueueRequest{TaskName: "gotasks_test.ok", Args: json.RawMessage(`{"n":1}`), Creator: "user:1"})
	f.ok2 = enqueue(tasks.EnqueueRequest{TaskName: "gotasks_test.ok", Args: json.RawMessage(`{"n":2}`)})
	f.fail1 = enqueue(tasks.EnqueueRequest{TaskName: "gotasks_test.fail", Args: json.RawMessage(`{"to":"ada@example.com"}`),
		Queue: "emails", MaxAttempts: 1, Metadata: showMetadata})
	f.ready1 = enqueue(tasks.EnqueueRequest{TaskName: "gotasks_test.ok", Args: json.RawMessage(`{"n":3}`), Queue: "emails",
		VerboseName: "Weekly report", RunAfter: time.Now().Add(time.Hour)})

	w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := w.Run(rctx); err != nil {
		t.Fatalf("seeding worker: %v", err)
	}
	f.ready2 = enqueue(tasks.EnqueueRequest{TaskName: "gotasks_test.ok", Args: json.RawMessage(`{"n":4}`), Queue: "reports",
		Creator: "user:2"})
	f.all = []string{f.ready2, f.ready1, f.fail1, f.ok2, f.ok1}

	want := map[string]tasks.Status{f.ok1: tasks.StatusSuccessful, f.ok2: tasks.StatusSuccessful, f.fail1: tasks.StatusFailed,
		f.ready1: tasks.StatusReady, f.ready2: tasks.StatusReady}
	if diff := cmp.Diff(want, f.statuses(t)); diff != "" {
		t.Fatalf("seeded statuses (-want +got):\n%s", diff)
	}
	return f
}

// run runs the command on the fixture's database: the sub-command, then
// --database, then args.
func (f *fixture) run(t *testing.T, sub string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return gotasks(t, nil, append([]string{sub, "--database", f.dsn}, args...)...)
}

// ok runs the command and fails the test unless it exits 0 with nothing on
// stderr; it returns stdout.
func (f *fixture) ok(t *testing.T, sub string, args ...string) string {
	t.Helper()
	code, stdout, stderr := f.run(t, sub, args...)
	if code != exitOK || stderr != "" {
		t.Fatalf("gotasks %s %q: exit %d, stderr %q (stdout %q); want 0 and nothing on stderr", sub, args, code, stderr, stdout)
	}
	return stdout
}

// statuses reads the status of every task of the fixture's database.
func (f *fixture) statuses(t *testing.T) map[string]tasks.Status {
	t.Helper()
	rows, err := f.b.DB().DB.Query(`SELECT id, status FROM gotasks_task`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]tasks.Status{}
	for rows.Next() {
		var id, s string
		if err := rows.Scan(&id, &s); err != nil {
			t.Fatal(err)
		}
		out[id] = tasks.Status(s)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// listPage is the shape of list --json.
type listPage struct {
	Tasks []struct {
		ID       string       `json:"id"`
		Status   tasks.Status `json:"status"`
		Queue    string       `json:"queue"`
		TaskName string       `json:"task_name"`
	} `json:"tasks"`
	NextCursor *string `json:"next_cursor"`
}

func (p listPage) ids() []string {
	ids := []string{}
	for _, t := range p.Tasks {
		ids = append(ids, t.ID)
	}
	return ids
}

// list runs list --json with args and returns the page.
func (f *fixture) list(t *testing.T, args ...string) listPage {
	t.Helper()
	out := f.ok(t, "list", append([]string{"--json"}, args...)...)
	var p listPage
	decode(t, out, &p)
	if p.NextCursor == nil || p.Tasks == nil {
		t.Fatalf("list --json %q: want \"tasks\" and \"next_cursor\":\n%s", args, out)
	}
	return p
}

// decode decodes one JSON document, strictly.
func decode(t *testing.T, s string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %T: %v\n%s", v, err, s)
	}
	if dec.More() {
		t.Fatalf("more than one JSON document:\n%s", s)
	}
}

// compact returns raw without its spaces.
func compact(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// wantFailure checks an exit-1 run: nothing on stdout, one line on stderr
// that starts with "gotasks " and contains each of want.
func wantFailure(t *testing.T, code int, stdout, stderr string, want ...string) {
	t.Helper()
	if code != exitError {
		t.Errorf("exit %d, want %d (stderr %q)", code, exitError, stderr)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "gotasks ") {
		t.Errorf("stderr %q, want one line starting with \"gotasks \"", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("stderr %q does not mention %q", stderr, w)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{},
		{"nope"},
		{"help", "nope"},
		{"--nope", "list"},
		{"list", "--nope"},
		{"list", "--status", "bogus"},
		{"list", "--status", "failed,"},
		{"list", "--queue", ""},
		{"list", "--limit", "0"},
		{"list", "--limit", "1001"},
		{"list", "--limit", "many"},
		{"list", "--order", "sideways"},
		{"list", "--enqueued-after", "yesterday"},
		{"list", "--finished-before", "-2h"},
		{"list", "extra"},
		{"list", "--json=maybe"},
		{"show"},
		{"show", "a", "b"},
		{"retry"},
		{"retry", "--status", "failed"},
		{"retry", "some-id", "--all"},
		{"cancel", "some-id", "--queue", "q"},
		{"delete"},
		{"delete", "--finished-before", "1d"},
		{"stats", "--window", "x"},
		{"stats", "--window", "0s"},
		{"stats", "extra"},
		{"workers", "extra"},
		{"queues", "extra"},
		{"pause"},
		{"resume", "a", "b"},
		{"pause", "*"},
		{"list", "--backend", ""},
	} {
		// A database that must never be touched: usage errors come first.
		args = append(args, "--database", "postgres://postgres@127.0.0.1:1/none")
		if len(args) == 2 || args[0] == "--nope" {
			args = append(args[len(args)-2:], args[:len(args)-2]...) // before the sub-command
		}
		code, stdout, stderr := gotasks(t, nil, args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "Usage: gotasks") {
			t.Errorf("gotasks %q: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", args, code, stdout, stderr)
		}
		if first := strings.SplitN(stderr, "\n", 2)[0]; strings.HasPrefix(first, "Usage") {
			t.Errorf("gotasks %q: stderr starts with the usage, want the problem first: %q", args, stderr)
		}
	}
}

func TestHelp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"Usage: gotasks [--database DSN]", "list", "retry", "dashboard", "Exit codes", "  --database DSN"}},
		{[]string{"help"}, []string{"Usage: gotasks [--database DSN]"}},
		{[]string{"help", "retry"}, []string{"Usage: gotasks retry", "  --all", "  --status status", "attempts+1"}},
		{[]string{"list", "-h"}, []string{"Usage: gotasks list", "  --cursor cursor", "  --limit N", "(default 50)", "  --json",
			"  --enqueued-after WHEN", "1d12h", database.DSNEnv}},
		{[]string{"stats", "--help"}, []string{"Usage: gotasks stats", "  --window AGE", "(default 1h)"}},
	} {
		code, stdout, stderr := gotasks(t, nil, tc.args...)
		if code != exitOK || stderr != "" {
			t.Errorf("gotasks %q: exit %d, stderr %q; want 0 and nothing on stderr", tc.args, code, stderr)
		}
		for _, w := range tc.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("gotasks %q: usage lacks %q:\n%s", tc.args, w, stdout)
			}
		}
	}
}

func TestFilterFlags(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	var f filterFlags
	if _, err := parseInterspersed(flagSet(&f), []string{
		"--status", "failed,Cancelled", "--status", "READY", "--status", "canceled",
		"--queue", "a,b", "--queue", "c", "--task", "x.y", "--task", "z",
		"--creator", "user:1", "--verbose-name", "Weekly report", "--id-prefix", "0190",
		"--enqueued-after", "1d12h", "--enqueued-before", "2026-12-01T10:00:00Z",
		"--finished-after", "2w", "--finished-before", "30m",
	}); err != nil {
		t.Fatal(err)
	}
	want := database.TaskFilter{
		Statuses:       []tasks.Status{tasks.StatusFailed, tasks.StatusCancelled, tasks.StatusReady, tasks.StatusCancelled},
		Queues:         []string{"a", "b", "c"},
		TaskNames:      []string{"x.y", "z"},
		Creator:        "user:1",
		VerboseName:    "Weekly report",
		IDPrefix:       "0190",
		EnqueuedAfter:  now.Add(-36 * time.Hour),
		EnqueuedBefore: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC),
		FinishedAfter:  now.Add(-14 * 24 * time.Hour),
		FinishedBefore: now.Add(-30 * time.Minute),
	}
	if diff := cmp.Diff(want, f.filter(now)); diff != "" {
		t.Errorf("filter (-want +got):\n%s", diff)
	}
	if f.empty() {
		t.Error("empty() with filters")
	}
	if !(&filterFlags{}).empty() {
		t.Error("!empty() without filters")
	}

	for in, want := range map[string]time.Duration{"30m": 30 * time.Minute, "2h": 2 * time.Hour, "1d": 24 * time.Hour,
		"1d12h": 36 * time.Hour, "2w": 14 * 24 * time.Hour, "1.5d": 36 * time.Hour, "1w2d6h30m": 9*24*time.Hour + 6*time.Hour + 30*time.Minute} {
		if got, err := parseAge(in); err != nil || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "14", "0s", "0d", "-2h", "1d-2h", "d", "1d 2h", "99999999999d", "3h1d"} {
		if got, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q) = %v, want an error", in, got)
		}
	}
}

// flagSet returns a flag set with the filter flags of f.
func flagSet(f *filterFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	f.register(fs)
	return fs
}

func TestNoSchema(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		if strings.HasPrefix(dsn, "postgres") {
			// A fresh schema, never migrated.
			code, stdout, stderr := gotasks(t, nil, "list", "--database", dsn)
			wantFailure(t, code, stdout, stderr, "schema is missing", "dbworker migrate")
			return
		}
		path := strings.TrimPrefix(dsn, "sqlite://")
		code, stdout, stderr := gotasks(t, map[string]string{database.DSNEnv: dsn}, "stats")
		wantFailure(t, code, stdout, stderr, "no SQLite database at "+path, "dbworker migrate")
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("gotasks created %s (stat: %v)", path, err)
		}
	})
}

func TestUnreachable(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := gotasks(t, nil, "list",
		"--database", "postgres://app:s3cret-pw@127.0.0.1:1/test?sslmode=disable&connect_timeout=5")
	wantFailure(t, code, stdout, stderr, "database unreachable")
	if strings.Contains(stderr, "s3cret-pw") {
		t.Errorf("the password is printed: %q", stderr)
	}
}

// showMetadata is the metadata of the fixture's failed task.
var showMetadata = map[string]string{"tenant": "acme", "request-id": "r-42", "note": "", "escape": "\x1b[31mred\nline"}

// TestRead: list, show and stats on one seeded database.
func TestRead(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		f := setup(t, dsn)

		t.Run("list", func(t *testing.T) {
			t.Parallel()
			p := f.list(t)
			if diff := cmp.Diff(f.all, p.ids()); diff != "" {
				t.Errorf("ids, newest first (-want +got):\n%s", diff)
			}
			if *p.NextCursor != "" {
				t.Errorf("next_cursor %q on the only page", *p.NextCursor)
			}
			got := map[string]tasks.Status{}
			for _, x := range p.Tasks {
				got[x.ID] = x.Status
			}
			if diff := cmp.Diff(f.statuses(t), got); diff != "" {
				t.Errorf("statuses (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{f.ok1, f.ok2, f.fail1, f.ready1, f.ready2}, f.list(t, "--order", "oldest").ids()); diff != "" {
				t.Errorf("--order oldest (-want +got):\n%s", diff)
			}
		})

		t.Run("list table", func(t *testing.T) {
			t.Parallel()
			out := f.ok(t, "list")
			lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
			if len(lines) != 6 || !regexp.MustCompile(`^ID +STATUS +QUEUE +TASK +ATTEMPTS +ENQUEUED +FINISHED +LAST ERROR$`).MatchString(lines[0]) {
				t.Fatalf("want a header and 5 rows:\n%s", out)
			}
			if !regexp.MustCompile(`^` + f.fail1 + ` +FAILED +emails +gotasks_test\.fail +1/1 .* smtp: connection refused$`).MatchString(lines[3]) {
				t.Errorf("row of the failed task: %q", lines[3])
			}
			out = f.ok(t, "list", "--limit", "2")
			if !regexp.MustCompile(`\nnext page: --cursor \S+\n$`).MatchString(out) {
				t.Errorf("--limit 2: no next page line:\n%s", out)
			}
			if out := f.ok(t, "list", "--status", "cancelled"); out != "no tasks\n" {
				t.Errorf("no match: %q", out)
			}
		})

		t.Run("filters", func(t *testing.T) {
			t.Parallel()
			future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
			for _, tc := range []struct {
				args []string
				want []string
			}{
				{[]string{"--status", "failed,CANCELLED"}, []string{f.fail1}},
				{[]string{"--status", "successful", "--status", "Failed"}, []string{f.fail1, f.ok2, f.ok1}},
				{[]string{"--status", "ready", "--queue", "emails"}, []string{f.ready1}},
				{[]string{"--queue", "reports", "--queue", "emails"}, []string{f.ready2, f.ready1, f.fail1}},
				{[]string{"--queue", "reports,default"}, []string{f.ready2, f.ok2, f.ok1}},
				{[]string{"--task", "gotasks_test.fail"}, []string{f.fail1}},
				{[]string{"--creator", "user:2"}, []string{f.ready2}},
				{[]string{"--verbose-name", "Weekly report"}, []string{f.ready1}},
				{[]string{"--id-prefix", f.ok1}, []string{f.ok1}},
				{[]string{"--finished-after", "1h"}, []string{f.fail1, f.ok2, f.ok1}},
				{[]string{"--finished-before", "1h"}, []string{}},
				{[]string{"--finished-before", future, "--status", "successful"}, []string{f.ok2, f.ok1}},
				{[]string{"--enqueued-after", "1d"}, f.all},
				{[]string{"--enqueued-before", "1d"}, []string{}},
				{[]string{"--enqueued-before", future, "--queue", "nope"}, []string{}},
			} {
				if diff := cmp.Diff(tc.want, f.list(t, tc.args...).ids()); diff != "" {
					t.Errorf("list %q (-want +got):\n%s", tc.args, diff)
				}
			}
		})

		t.Run("paging", func(t *testing.T) {
			t.Parallel()
			for _, order := range []string{"newest", "oldest"} {
				want := slices.Clone(f.all)
				if order == "oldest" {
					slices.Reverse(want)
				}
				var got []string
				pages := 0
				for cursor := ""; ; pages++ {
					p := f.list(t, "--order", order, "--limit", "2", "--cursor", cursor)
					if pages > 5 || len(p.Tasks) > 2 {
						t.Fatalf("--order %s: page %d has %d tasks", order, pages, len(p.Tasks))
					}
					got = append(got, p.ids()...)
					if cursor = *p.NextCursor; cursor == "" {
						break
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("--order %s, pages of 2 (-want +got):\n%s", order, diff)
				}
			}
			// A cursor of the other order, and one that is no cursor.
			cursor := *f.list(t, "--limit", "1").NextCursor
			for _, args := range [][]string{{"--cursor", cursor, "--order", "oldest"}, {"--cursor", "not a cursor"}} {
				code, stdout, stderr := f.run(t, "list", args...)
				if code != exitUsage || stdout != "" || !strings.Contains(stderr, "cursor") || strings.Count(stderr, "\n") != 1 {
					t.Errorf("list %q: exit %d, stdout %q, stderr %q; want 2 and one line about the cursor", args, code, stdout, stderr)
				}
			}
		})

		t.Run("show", func(t *testing.T) {
			t.Parallel()
			out := f.ok(t, "show", f.fail1)
			for _, re := range []string{
				`(?m)^ID: +` + f.fail1 + `$`, `(?m)^Task: +gotasks_test\.fail$`, `(?m)^Status: +FAILED$`,
				`(?m)^Queue: +emails$`, `(?m)^Attempts: +1/1$`, `(?m)^Finished: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$`,
				`(?m)^Workers: +\S+`, `(?m)^Args:\n  \{\n    "to": "ada@example\.com"\n  \}$`,
				`(?m)^Errors \(1\):\n  attempt 1 at \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ: \S+: smtp: connection refused$`,
				// Sorted by key; what would not print as one plain line is quoted.
				`(?m)^Metadata \(4\):\n  escape: "\\x1b\[31mred\\nline"\n  note: ""\n  request-id: r-42\n  tenant: acme\nArgs:$`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("show failed task: no match for %s:\n%s", re, out)
				}
			}
			if strings.Contains(out, "\x1b") {
				t.Error("show printed a terminal escape of the metadata as it is")
			}
			out = f.ok(t, "show", f.ok1)
			for _, re := range []string{`(?m)^Creator: +user:1$`, `(?m)^Status: +SUCCESSFUL$`, `(?m)^Metadata: none$`,
				`(?m)^Return value:\n  \{\n    "echo": \{\n      "n": 1\n    \}\n  \}$`, `(?m)^Errors: none$`} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("show successful task: no match for %s:\n%s", re, out)
				}
			}
			out = f.ok(t, "show", f.ready1)
			if !regexp.MustCompile(`(?m)^Verbose name: +Weekly report$`).MatchString(out) {
				t.Errorf("show ready task: no verbose name:\n%s", out)
			}
		})

		t.Run("show json", func(t *testing.T) {
			t.Parallel()
			var got struct {
				ID          string          `json:"id"`
				TaskName    string          `json:"task_name"`
				Status      tasks.Status    `json:"status"`
				Queue       string          `json:"queue"`
				Args        json.RawMessage `json:"args"`
				Attempts    int             `json:"attempts"`
				MaxAttempts int             `json:"max_attempts"`
				FinishedAt  *time.Time      `json:"finished_at"`
				WorkerIDs   []string        `json:"worker_ids"`
				Errors      []struct {
					Attempt int    `json:"attempt"`
					Message string `json:"message"`
				} `json:"errors"`
				Metadata map[string]string `json:"metadata"`
			}
			decode(t, f.ok(t, "show", f.fail1, "--json"), &got)
			if diff := cmp.Diff(showMetadata, got.Metadata); diff != "" {
				t.Errorf("show --json: metadata (-want +got):\n%s", diff)
			}
			var plain map[string]any
			decode(t, f.ok(t, "show", f.ok1, "--json"), &plain)
			if md, ok := plain["metadata"]; ok {
				t.Errorf("show --json of a task without metadata has \"metadata\": %v", md)
			}
			if got.ID != f.fail1 || got.TaskName != "gotasks_test.fail" || got.Status != tasks.StatusFailed || got.Queue != "emails" ||
				compact(t, got.Args) != `{"to":"ada@example.com"}` || got.Attempts != 1 || got.MaxAttempts != 1 ||
				got.FinishedAt == nil || len(got.WorkerIDs) != 1 || len(got.Errors) != 1 ||
				got.Errors[0].Attempt != 1 || got.Errors[0].Message != "smtp: connection refused" {
				t.Errorf("show --json: %+v", got)
			}
		})

		t.Run("unknown id", func(t *testing.T) {
			t.Parallel()
			for _, sub := range []string{"show", "retry", "cancel", "delete"} {
				code, stdout, stderr := f.run(t, sub, "no-such-task")
				wantFailure(t, code, stdout, stderr, "no-such-task", "not found")
			}
		})

		t.Run("stats", func(t *testing.T) {
			t.Parallel()
			var got struct {
				At            time.Time `json:"at"`
				WindowSeconds float64   `json:"window_seconds"`
				Queues        []struct {
					Queue               string                 `json:"queue"`
					Counts              map[tasks.Status]int64 `json:"counts"`
					Total               int64                  `json:"total"`
					OldestDue           *time.Time             `json:"oldest_due"`
					OldestDueAgeSeconds float64                `json:"oldest_due_age_seconds"`
					Paused              bool                   `json:"paused"`
				} `json:"queues"`
				Finished   map[string]int64 `json:"finished"`
				Throughput []struct {
					Minute     time.Time `json:"minute"`
					Successful int64     `json:"successful"`
				} `json:"throughput"`
			}
			decode(t, f.ok(t, "stats", "--json", "--window", "30m"), &got)
			counts := map[string]map[tasks.Status]int64{}
			for _, q := range got.Queues {
				counts[q.Queue] = map[tasks.Status]int64{}
				for s, n := range q.Counts {
					if n != 0 {
						counts[q.Queue][s] = n
					}
				}
				if q.Paused {
					t.Errorf("queue %s paused", q.Queue)
				}
				if due := q.OldestDue != nil; due != (q.Queue == "reports") {
					t.Errorf("queue %s: oldest_due %v", q.Queue, q.OldestDue)
				}
			}
			want := map[string]map[tasks.Status]int64{
				"default": {tasks.StatusSuccessful: 2},
				"emails":  {tasks.StatusFailed: 1, tasks.StatusReady: 1},
				"reports": {tasks.StatusReady: 1},
			}
			if diff := cmp.Diff(want, counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int64{"successful": 2, "failed": 1, "cancelled": 0}, got.Finished); diff != "" {
				t.Errorf("finished (-want +got):\n%s", diff)
			}
			if got.WindowSeconds != 1800 || got.At.IsZero() || len(got.Throughput) < 30 {
				t.Errorf("window %v s, at %v, %d minutes of throughput", got.WindowSeconds, got.At, len(got.Throughput))
			}

			out := f.ok(t, "stats")
			for _, re := range []string{
				`(?m)^QUEUE +READY +RUNNING +SUCCESSFUL +FAILED +CANCELLED +TOTAL +OLDEST DUE +PAUSED$`,
				`(?m)^emails +1 +0 +0 +1 +0 +2 +- +no$`,
				`(?m)^finished in the last 1h: 2 successful, 1 failed, 0 cancelled$`,
			} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("stats: no match for %s:\n%s", re, out)
				}
			}
		})

		t.Run("database from the environment", func(t *testing.T) {
			t.Parallel()
			env := map[string]string{database.DSNEnv: f.dsn}
			code, stdout, stderr := gotasks(t, env, "list", "--json")
			if code != exitOK || stderr != "" {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			var p listPage
			decode(t, stdout, &p)
			if diff := cmp.Diff(f.all, p.ids()); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
			// --database, before the sub-command too, wins over the
			// environment.
			env[database.DSNEnv] = "postgres://postgres@127.0.0.1:1/none"
			code, stdout, stderr = gotasks(t, env, "--database", f.dsn, "list", "--json", "--status", "failed")
			if code != exitOK || stderr != "" {
				t.Fatalf("--database over the environment: exit %d, stderr %q", code, stderr)
			}
			decode(t, stdout, &p)
			if diff := cmp.Diff([]string{f.fail1}, p.ids()); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
			// Another backend's tasks are not listed.
			code, stdout, stderr = gotasks(t, nil, "list", "--database", f.dsn, "--backend", "other", "--json")
			if code != exitOK || stderr != "" {
				t.Fatalf("--backend other: exit %d, stderr %q", code, stderr)
			}
			p = listPage{}
			decode(t, stdout, &p)
			if len(p.Tasks) != 0 {
				t.Errorf("--backend other lists %v", p.ids())
			}
		})
	})
}

// TestActions: retry, cancel and delete by id.
func TestActions(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		f := setup(t, dsn)

		// Retry of a FAILED task: READY, due now, history kept, one more
		// attempt.
		before := time.Now()
		if out := f.ok(t, "retry", f.fail1); out != "retried "+f.fail1+"\n" {
			t.Errorf("retry: stdout %q", out)
		}
		r, err := f.b.GetResult(ctx, f.fail1)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != tasks.StatusReady || r.Attempts != 1 || r.MaxAttempts != 2 || len(r.Errors) != 1 ||
			r.RunAfter.After(time.Now()) || r.RunAfter.Before(before.Add(-time.Second)) {
			t.Errorf("retried task: status %s, attempts %d/%d, %d errors, run after %v (retried at %v)",
				r.Status, r.Attempts, r.MaxAttempts, len(r.Errors), r.RunAfter, before)
		}

		// Not retryable, not cancellable, not deletable: exit 1, the status
		// said.
		code, stdout, stderr := f.run(t, "retry", f.ok1)
		wantFailure(t, code, stdout, stderr, f.ok1, "not retryable", "SUCCESSFUL")
		code, stdout, stderr = f.run(t, "cancel", f.ok1)
		wantFailure(t, code, stdout, stderr, f.ok1, "not cancellable", "SUCCESSFUL")
		code, stdout, stderr = f.run(t, "delete", f.ready2)
		wantFailure(t, code, stdout, stderr, f.ready2, "not deletable", "READY")

		// Cancel two READY tasks, then delete one of them and a SUCCESSFUL
		// one.
		if out := f.ok(t, "cancel", f.ready1, f.ready2); out != "cancelled "+f.ready1+"\ncancelled "+f.ready2+"\n" {
			t.Errorf("cancel: stdout %q", out)
		}
		if out := f.ok(t, "delete", f.ready1, f.ok2, f.ok2); out != "deleted "+f.ready1+"\ndeleted "+f.ok2+"\n" {
			t.Errorf("delete: stdout %q", out)
		}
		want := map[string]tasks.Status{f.ok1: tasks.StatusSuccessful, f.fail1: tasks.StatusReady, f.ready2: tasks.StatusCancelled}
		if diff := cmp.Diff(want, f.statuses(t)); diff != "" {
			t.Errorf("statuses (-want +got):\n%s", diff)
		}

		// Several ids, some failing, with --json: what was done on stdout,
		// each problem on stderr, exit 1.
		code, stdout, stderr = f.run(t, "retry", "--json", f.ready2, "no-such-task", f.ok1)
		if code != exitError {
			t.Errorf("partial retry: exit %d, want 1", code)
		}
		var got struct {
			Action   string   `json:"action"`
			Affected int      `json:"affected"`
			IDs      []string `json:"ids"`
			Failed   []struct {
				ID    string `json:"id"`
				Error string `json:"error"`
			} `json:"failed"`
		}
		decode(t, stdout, &got)
		if got.Action != "retry" || got.Affected != 1 || !slices.Equal(got.IDs, []string{f.ready2}) || len(got.Failed) != 2 ||
			got.Failed[0].ID != "no-such-task" || got.Failed[1].ID != f.ok1 || !strings.Contains(got.Failed[1].Error, "not retryable") {
			t.Errorf("partial retry --json: %+v", got)
		}
		if lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n"); len(lines) != 2 ||
			!strings.Contains(lines[0], "no-such-task: not found") || !strings.Contains(lines[1], f.ok1+": not retryable") {
			t.Errorf("partial retry: stderr %q, want one line per failure", stderr)
		}
		if s := f.statuses(t)[f.ready2]; s != tasks.StatusReady {
			t.Errorf("retried cancelled task is %s", s)
		}
	})
}

// TestBulkActions: retry, cancel and delete --all with filters.
func TestBulkActions(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		f := setup(t, dsn)
		if out := f.ok(t, "cancel", "--all", "--queue", "reports"); out != "cancelled 1 task\n" {
			t.Errorf("cancel --all --queue reports: %q", out)
		}
		var got struct {
			Action   string `json:"action"`
			Affected int64  `json:"affected"`
		}
		decode(t, f.ok(t, "retry", "--all", "--status", "failed", "--json"), &got)
		if got.Action != "retry" || got.Affected != 1 {
			t.Errorf("retry --all --status failed --json: %+v", got)
		}
		want := map[string]tasks.Status{f.ok1: tasks.StatusSuccessful, f.ok2: tasks.StatusSuccessful, f.fail1: tasks.StatusReady,
			f.ready1: tasks.StatusReady, f.ready2: tasks.StatusCancelled}
		if diff := cmp.Diff(want, f.statuses(t)); diff != "" {
			t.Errorf("after retry --all --status failed (-want +got):\n%s", diff)
		}
		if out := f.ok(t, "delete", "--all", "--status", "successful", "--creator", "user:1"); out != "deleted 1 task\n" {
			t.Errorf("delete --all --creator user:1: %q", out)
		}
		// --all alone: every eligible task (the others are left alone).
		if out := f.ok(t, "delete", "--all"); out != "deleted 2 tasks\n" {
			t.Errorf("delete --all: %q", out)
		}
		if out := f.ok(t, "retry", "--all"); out != "retried 0 tasks\n" {
			t.Errorf("retry --all with nothing to retry: %q", out)
		}
		want = map[string]tasks.Status{f.fail1: tasks.StatusReady, f.ready1: tasks.StatusReady}
		if diff := cmp.Diff(want, f.statuses(t)); diff != "" {
			t.Errorf("at the end (-want +got):\n%s", diff)
		}
	})
}

// queuesDoc is the shape of queues --json.
type queuesDoc struct {
	Queues []struct {
		Name     string     `json:"name"`
		Paused   bool       `json:"paused"`
		PausedAt *time.Time `json:"paused_at"`
	} `json:"queues"`
}

func (d queuesDoc) paused() map[string]bool {
	m := map[string]bool{}
	for _, q := range d.Queues {
		m[q.Name] = q.Paused
		if (q.PausedAt != nil) != q.Paused {
			m[q.Name+" paused_at"] = true
		}
	}
	return m
}

func TestQueues(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		f := setup(t, dsn)
		var d queuesDoc
		decode(t, f.ok(t, "queues", "--json"), &d)
		if diff := cmp.Diff(map[string]bool{"default": false, "emails": false, "reports": false}, d.paused()); diff != "" {
			t.Errorf("queues (-want +got):\n%s", diff)
		}
		if out := f.ok(t, "pause", "emails"); out != "paused queue emails\n" {
			t.Errorf("pause: %q", out)
		}
		f.ok(t, "pause", "emails") // again: nothing to do
		if out := f.ok(t, "pause", "idle"); out != "paused queue idle\n" {
			t.Errorf("pause: %q", out)
		}
		d = queuesDoc{}
		decode(t, f.ok(t, "queues", "--json"), &d)
		if diff := cmp.Diff(map[string]bool{"default": false, "emails": true, "idle": true, "reports": false}, d.paused()); diff != "" {
			t.Errorf("queues after pause (-want +got):\n%s", diff)
		}
		if !regexp.MustCompile(`(?m)^emails +yes +\d{4}-`).MatchString(f.ok(t, "queues")) {
			t.Errorf("queues table does not show emails paused")
		}
		if !regexp.MustCompile(`(?m)^emails +1 +0 +0 +1 +0 +2 +- +yes$`).MatchString(f.ok(t, "stats")) {
			t.Errorf("stats does not show emails paused")
		}
		if out := f.ok(t, "resume", "emails"); out != "resumed queue emails\n" {
			t.Errorf("resume: %q", out)
		}
		f.ok(t, "resume", "default") // not paused: nothing to do
		d = queuesDoc{}
		decode(t, f.ok(t, "queues", "--json"), &d)
		if got := d.paused(); got["emails"] || !got["idle"] || len(got) != 4 {
			t.Errorf("queues after resume: %v", got)
		}
	})
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		f := setup(t, dsn)
		w, err := database.NewWorker(f.b, database.WorkerConfig{WorkerID: "gotasks-test-worker", Concurrency: 3,
			Queues: []string{"emails", "reports"}, PollInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = w.StopAndCancel(context.Background()) })
		dbtest.WaitUntil(t, 10*time.Second, "the worker to register", func() bool {
			ws, err := f.b.Workers(context.Background())
			return err == nil && slices.ContainsFunc(ws, func(w database.WorkerInfo) bool { return w.ID == "gotasks-test-worker" })
		})
		var got struct {
			Workers []jsonWorker `json:"workers"`
		}
		decode(t, f.ok(t, "workers", "--json"), &got)
		i := slices.IndexFunc(got.Workers, func(w jsonWorker) bool { return w.ID == "gotasks-test-worker" })
		if i < 0 {
			t.Fatalf("workers --json lacks the worker: %+v", got)
		}
		x := got.Workers[i]
		if x.ID != "gotasks-test-worker" || x.PID != os.Getpid() || x.Concurrency != 3 ||
			!slices.Equal(x.Queues, []string{"emails", "reports"}) || x.StartedAt.IsZero() || x.HeartbeatAt.IsZero() {
			t.Errorf("worker: %+v", x)
		}
		if !regexp.MustCompile(`(?m)^gotasks-test-worker +\S+ +\d+ +emails,reports +3 +\d+ `).MatchString(f.ok(t, "workers")) {
			t.Errorf("workers table lacks the worker")
		}
		if err := w.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestDashboardRefuses: on an address that is not loopback, credentials are
// required; the check comes before the database is opened.
func TestDashboardRefuses(t *testing.T) {
	t.Parallel()
	dsn := "postgres://app:s3cret-pw@127.0.0.1:1/none"
	for _, tc := range []struct {
		env  map[string]string
		args []string
		want string
	}{
		{nil, []string{"--listen", "0.0.0.0:8080"}, AuthEnv},
		{nil, []string{"--listen", ":8080"}, AuthEnv},
		{nil, []string{"--listen", "192.0.2.1:8080"}, AuthEnv},
		{map[string]string{AuthEnv: "admin"}, []string{"--listen", "0.0.0.0:8080"}, "user:password"},
		{map[string]string{AuthEnv: "admin:"}, []string{}, "user:password"},
		{nil, []string{"--listen", "8080"}, "host:port"},
		{nil, []string{"--prefix", "admin"}, "--prefix"},
		{nil, []string{"--json"}, "-json"},
	} {
		code, stdout, stderr := gotasks(t, tc.env, append([]string{"dashboard", "--database", dsn}, tc.args...)...)
		first := strings.SplitN(stderr, "\n", 2)[0]
		if code != exitUsage || stdout != "" || !strings.Contains(first, tc.want) {
			t.Errorf("dashboard %q: exit %d, stdout %q, first line %q; want exit 2 and %q", tc.args, code, stdout, first, tc.want)
		}
		if strings.Contains(stderr, "s3cret-pw") {
			t.Errorf("dashboard %q: the password is printed", tc.args)
		}
	}
}

// TestDashboard serves the dashboard, with and without basic auth, under a
// prefix, and stops it with SIGTERM.
func TestDashboard(t *testing.T) {
	t.Parallel()
	f := setup(t, dbtest.SQLiteDSN(t))
	for _, tc := range []struct {
		name, auth, prefix string
	}{
		{"loopback without auth", "", "/"},
		{"basic auth under a prefix", "admin:pa:ss", "/admin/tasks/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr syncBuffer
			cmd := exec.Command(binary, "dashboard", "--listen", "127.0.0.1:0", "--prefix", tc.prefix, "--read-only",
				"--database", f.dsn)
			cmd.Env = append(os.Environ(), AuthEnv+"="+tc.auth)
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var waitErr error
			go func() { waitErr = cmd.Wait(); close(done) }()
			t.Cleanup(func() {
				select {
				case <-done:
				default:
					_ = cmd.Process.Kill()
					<-done
				}
			})
			urlRE := regexp.MustCompile(`on (http://127\.0\.0\.1:\d+/\S*) \(`)
			dbtest.WaitUntil(t, 20*time.Second, "the dashboard to listen", func() bool { return urlRE.MatchString(stderr.String()) })
			base := urlRE.FindStringSubmatch(stderr.String())[1]
			if want := strings.TrimSuffix(tc.prefix, "/") + "/"; !strings.HasSuffix(base, want) {
				t.Errorf("url %s does not end with %s", base, want)
			}

			get := func(url string, user, pass string) (int, string) {
				t.Helper()
				req, err := http.NewRequest("GET", url, nil)
				if err != nil {
					t.Fatal(err)
				}
				if user != "" {
					req.SetBasicAuth(user, pass)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(body)
			}
			user, pass, _ := strings.Cut(tc.auth, ":")
			if tc.auth != "" {
				for _, creds := range [][2]string{{"", ""}, {user, "wrong"}, {"admin2", pass}} {
					if code, _ := get(base, creds[0], creds[1]); code != http.StatusUnauthorized {
						t.Errorf("GET %s as %q:%q: %d, want 401", base, creds[0], creds[1], code)
					}
				}
			}
			if code, body := get(base+"tasks/"+f.fail1, user, pass); code != http.StatusOK || !strings.Contains(body, "smtp: connection refused") {
				t.Errorf("GET the failed task's page: %d\n%s", code, body)
			}
			if code, _ := get(base, user, pass); code != http.StatusOK {
				t.Errorf("GET %s: %d", base, code)
			}

			if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			select {
			case <-done:
				if waitErr != nil {
					t.Errorf("after SIGTERM: %v; stderr:\n%s", waitErr, stderr.String())
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("the dashboard did not stop within 20 s of SIGTERM")
			}
			if !strings.HasSuffix(stderr.String(), "gotasks dashboard: stopped\n") {
				t.Errorf("stderr:\n%s", stderr.String())
			}
		})
	}
}

// TestRetryDuplicate: a FAILED unique task whose key another task holds
// (READY) is not retried; the command says why and exits 1, and a retry
// of everything matching reports the tasks it did retry.
func TestRetryDuplicate(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		f := setup(t, dsn)
		unique := func(queue string) string {
			t.Helper()
			req := &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: "gotasks_test.ok", Args: json.RawMessage(`{}`),
				Queue: queue, UniqueKey: "k-" + queue, UniqueStatuses: tasks.DefaultUniqueStatuses}
			if _, err := f.b.Enqueue(ctx, req); err != nil {
				t.Fatal(err)
			}
			return req.ID
		}
		failed := unique("dup")
		if _, err := f.b.DB().DB.ExecContext(ctx, `UPDATE gotasks_task SET status = 'FAILED', finished_at = run_after
			WHERE id = $1`, failed); err != nil {
			t.Fatal(err)
		}
		holder := unique("dup") // the key is free again: FAILED is not among its statuses
		if holder == failed {
			t.Fatal("the second enqueue returned the FAILED task")
		}

		code, stdout, stderr := f.run(t, "retry", failed)
		wantFailure(t, code, stdout, stderr, failed, "not retried", "same unique key")

		// --all: fail1 (FAILED, no key) is retried, the held one is not.
		code, stdout, stderr = f.run(t, "retry", "--all", "--status", "failed")
		if code != exitError || !strings.Contains(stdout, "1") || !strings.Contains(stderr, "same unique key") {
			t.Errorf("retry --all: exit %d, stdout %q, stderr %q; want exit 1, one task retried and the reason", code, stdout, stderr)
		}
		got := f.statuses(t)
		if got[failed] != tasks.StatusFailed || got[f.fail1] != tasks.StatusReady || got[holder] != tasks.StatusReady {
			t.Errorf("statuses after the retries: held %s, fail1 %s, holder %s; want FAILED, READY, READY",
				got[failed], got[f.fail1], got[holder])
		}
	})
}

// TestStatsRecount: after a hand edit of the table, stats --recount shows
// the finished tasks as they are (SQLite counts them with counters that
// the edit bypasses).
func TestStatsRecount(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		f := setup(t, dsn)
		if _, err := f.b.DB().DB.ExecContext(context.Background(), "DELETE FROM gotasks_task WHERE id = $1", f.fail1); err != nil {
			t.Fatal(err)
		}
		out := f.ok(t, "stats", "--recount")
		if !regexp.MustCompile(`(?m)^emails +1 +0 +0 +0 +0 +1 +- +no$`).MatchString(out) {
			t.Errorf("stats --recount: the deleted FAILED task is still counted:\n%s", out)
		}
	})
}
