package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
)

const day = 24 * time.Hour

// runCmd runs the command in-process with the environment env.
func runCmd(ctx context.Context, env map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = runEnv(ctx, args, func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestPruneCmdParseAge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"14", 14 * day},
		{"1.5", 36 * time.Hour},
		{"0.5", 12 * time.Hour},
		{" 2 ", 2 * day},
		{"7d", 7 * day},
		{"1.25d", 30 * time.Hour},
		{"36h", 36 * time.Hour},
		{"90m", 90 * time.Minute},
		{"1h30m", 90 * time.Minute},
		{"1ns", time.Nanosecond},
		{"1d12h", 36 * time.Hour},
		{"14d", 14 * day},
		{"2w", 14 * day},
		{"1w2d", 9 * day},
		{"1.5w", 10*day + 12*time.Hour},
		{"1w2d6h30m", 9*day + 6*time.Hour + 30*time.Minute},
		{"1d30m", day + 30*time.Minute},
		{"0d12h", 12 * time.Hour},
	} {
		got, err := parseAge(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "x", "0", "0d", "0s", "-1", "-2h", "d", "14days", "NaN", "Inf", "1e300", "1.5.2",
		"w", "2w3", "1d-2h", "-1d", "3h1d", "1d2w", "1d 12h", "2wk", "1e300w", "99999999999d", "1dd", "0w0d"} {
		if got, err := parseAge(in); err == nil {
			t.Errorf("parseAge(%q) = %v, want an error", in, got)
		}
	}
	for d, want := range map[time.Duration]string{14 * day: "14d", 36 * time.Hour: "36h0m0s", 30 * time.Minute: "30m0s"} {
		a := age{d: d}
		if got := a.String(); got != want {
			t.Errorf("age(%v).String() = %q, want %q", d, got, want)
		}
	}
}

func TestPruneCmdBadFlags(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--nope"},
		{"--min-age", "x"},
		{"--min-age", "0"},
		{"--min-age", "-3"},
		{"--failed-min-age", "-1h"},
		{"--failed-min-age", "soon"},
		{"--batch-size", "0"},
		{"--batch-size", "-5"},
		{"--batch-size", "many"},
		{"--queue", "a,,b"},
		{"--queue", ""},
		{"--backend", ""},
		{"--dry-run=maybe"},
		{"extra"},
		{"--dry-run", "extra"},
	} {
		// A database that must never be touched: usage errors come first.
		code, stdout, stderr := runCmd(context.Background(), nil,
			append([]string{"--database", "postgres://postgres@127.0.0.1:1/none"}, args...)...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "Usage: prune") {
			t.Errorf("prune %q: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", args, code, stdout, stderr)
		}
		if first := strings.SplitN(stderr, "\n", 2)[0]; strings.HasPrefix(first, "Usage") {
			t.Errorf("prune %q: stderr starts with the usage, want the problem first: %q", args, stderr)
		}
	}
}

func TestPruneCmdHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"--help", "-h", "-help"} {
		code, stdout, stderr := runCmd(context.Background(), nil, arg)
		if code != exitOK || stderr != "" {
			t.Errorf("prune %s: exit %d, stderr %q; want 0 and nothing on stderr", arg, code, stderr)
		}
		for _, want := range []string{"Usage: prune", "default for cron is all queues", "  --min-age AGE", "  --failed-min-age AGE",
			"  --batch-size n", "  --dry-run", "  --queue queues", "  --backend name", "  --database DSN", database.DSNEnv,
			"(default 14d)", "Exit codes", "1d12h", "2w"} {
			if !strings.Contains(stdout, want) {
				t.Errorf("prune %s: usage lacks %q:\n%s", arg, want, stdout)
			}
		}
		for l := range strings.Lines(stdout) {
			if strings.HasPrefix(l, "  -") && !strings.HasPrefix(l, "  --") {
				t.Errorf("prune %s: usage lists a flag as %q; want the --flag style", arg, strings.TrimSpace(l))
			}
		}
	}
}

// wantOneLine checks an exit-1 failure: one line on stderr, with want.
func wantOneLine(t *testing.T, code int, stdout, stderr, want string) {
	t.Helper()
	if code != exitError {
		t.Errorf("exit %d, want %d", code, exitError)
	}
	if stdout != "" {
		t.Errorf("stdout %q, want nothing", stdout)
	}
	if strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "prune: ") || !strings.Contains(stderr, want) {
		t.Errorf("stderr %q, want one line \"prune: …%s…\"", stderr, want)
	}
}

func TestPruneCmdUnreachable(t *testing.T) {
	t.Parallel()
	code, stdout, stderr := runCmd(context.Background(), nil,
		"--database", "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=5")
	wantOneLine(t, code, stdout, stderr, "database unreachable")
	code, stdout, stderr = runCmd(context.Background(), nil, "--database", "mysql://x")
	wantOneLine(t, code, stdout, stderr, "bad database DSN")
}

func TestPruneCmdMissingSchema(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		if strings.HasPrefix(dsn, "postgres") {
			// A fresh schema, never migrated.
			code, stdout, stderr := runCmd(ctx, nil, "--database", dsn)
			wantOneLine(t, code, stdout, stderr, "schema is missing")
			return
		}
		path := strings.TrimPrefix(dsn, "sqlite://")
		// No file: an error, and no file created.
		code, stdout, stderr := runCmd(ctx, map[string]string{database.DSNEnv: dsn})
		wantOneLine(t, code, stdout, stderr, "no SQLite database at "+path)
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("prune created %s (stat: %v)", path, err)
		}
		// An SQLite file without the schema: an error, and no schema created.
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		code, stdout, stderr = runCmd(ctx, nil, "--database", dsn)
		wantOneLine(t, code, stdout, stderr, "schema is missing")
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name LIKE 'gotasks%'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("prune created %d gotasks tables or indexes", n)
		}
	})
}

// row is a result row inserted with SQL.
type row struct {
	id, status, queue, backend string
	age                        time.Duration // finished that long ago; 0: not finished
}

func insert(t *testing.T, b *database.Backend, now time.Time, rows ...row) {
	t.Helper()
	ts := func(t time.Time) any {
		if b.Dialect() == database.SQLite {
			return t.UTC().Format("2006-01-02 15:04:05.000000")
		}
		return t.UTC()
	}
	for _, r := range rows {
		var fin any
		if r.age != 0 {
			fin = ts(now.Add(-r.age))
		}
		if _, err := b.DB().DB.Exec(`INSERT INTO gotasks_task
			(id, task_name, status, args, queue, backend, run_after, enqueued_at, finished_at)
			VALUES ($1, 'prune_test.fake', $2, '{}', $3, $4, $5, $5, $6)`,
			r.id, r.status, r.queue, r.backend, ts(now.Add(-100*day)), fin); err != nil {
			t.Fatalf("insert %s: %v", r.id, err)
		}
	}
}

func ids(t *testing.T, b *database.Backend) []string {
	t.Helper()
	rows, err := b.DB().DB.Query(`SELECT id FROM gotasks_task ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		out = append(out, id)
	}
	return out
}

var summaryRE = regexp.MustCompile(`^(deleted|would delete) \d+ SUCCESSFUL, \d+ CANCELLED, \d+ FAILED \(\d+ total\) in [0-9.]+(ms|s|µs|m)$`)

// summary checks a successful run's output (a header line, then the
// summary) and returns the summary without its duration.
func summary(t *testing.T, code int, stdout, stderr string) string {
	t.Helper()
	if code != exitOK || stderr != "" {
		t.Fatalf("exit %d, stderr %q; want 0 and nothing on stderr (stdout %q)", code, stderr, stdout)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != 2 || !summaryRE.MatchString(lines[1]) {
		t.Fatalf("stdout %q: want a header line and a summary line", stdout)
	}
	return lines[1][:strings.LastIndex(lines[1], " in ")]
}

func TestPruneCmdRun(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		now := time.Now()
		insert(t, b, now,
			row{"s-20d", "SUCCESSFUL", "default", "default", 20 * day},
			row{"s-20d-q2", "SUCCESSFUL", "q2", "default", 20 * day},
			row{"c-11d", "CANCELLED", "default", "default", 11 * day},
			row{"f-31d", "FAILED", "default", "default", 31 * day},
			row{"f-20d", "FAILED", "default", "default", 20 * day},
			row{"s-5d", "SUCCESSFUL", "default", "default", 5 * day},
			row{"other-2d", "SUCCESSFUL", "default", "other", 2 * day},
			row{"ready", "READY", "default", "default", 0},
			row{"running", "RUNNING", "default", "default", 0},
		)

		// One queue; --failed-min-age defaults to --min-age.
		code, stdout, stderr := runCmd(ctx, nil, "--database", dsn, "--queue", "q2,q3", "--min-age", "10")
		if got := summary(t, code, stdout, stderr); got != "deleted 1 SUCCESSFUL, 0 CANCELLED, 0 FAILED (1 total)" {
			t.Errorf("--queue q2,q3: %q", got)
		}
		if !regexp.MustCompile(`^pruning backend "default", queues q2,q3: SUCCESSFUL, CANCELLED and FAILED results ` +
			`finished before \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(older than 10d\)\n`).MatchString(stdout) {
			t.Errorf("--queue q2,q3: header %q", stdout)
		}

		// Dry run, then the same for real, the DSN from the environment.
		env := map[string]string{database.DSNEnv: dsn}
		code, stdout, stderr = runCmd(ctx, env, "--min-age", "240h", "--failed-min-age", "30d", "--dry-run")
		if got := summary(t, code, stdout, stderr); got != "would delete 1 SUCCESSFUL, 1 CANCELLED, 1 FAILED (3 total)" {
			t.Errorf("dry run: %q", got)
		}
		if !strings.HasPrefix(stdout, `dry run, nothing is deleted: backend "default", all queues: SUCCESSFUL and `+
			`CANCELLED results finished before `) || !strings.Contains(stdout, "(older than 10d), FAILED results finished before ") ||
			!strings.Contains(stdout, "(older than 30d)\n") {
			t.Errorf("dry run header %q", stdout)
		}
		if n := len(ids(t, b)); n != 8 {
			t.Errorf("the dry run deleted rows: %d left of 8", n)
		}
		code, stdout, stderr = runCmd(ctx, env, "--min-age", "240h", "--failed-min-age", "30d", "--batch-size", "1")
		if got := summary(t, code, stdout, stderr); got != "deleted 1 SUCCESSFUL, 1 CANCELLED, 1 FAILED (3 total)" {
			t.Errorf("real run: %q", got)
		}

		// Another backend; --database wins over the environment.
		env[database.DSNEnv] = "postgres://postgres@127.0.0.1:1/none"
		code, stdout, stderr = runCmd(ctx, env, "--database", dsn, "--backend", "other", "--min-age", "36h")
		if got := summary(t, code, stdout, stderr); got != "deleted 1 SUCCESSFUL, 0 CANCELLED, 0 FAILED (1 total)" {
			t.Errorf("--backend other: %q", got)
		}

		// Nothing left to do is a success too.
		code, stdout, stderr = runCmd(ctx, nil, "--database", dsn, "--min-age", "10", "--failed-min-age", "30")
		if got := summary(t, code, stdout, stderr); got != "deleted 0 SUCCESSFUL, 0 CANCELLED, 0 FAILED (0 total)" {
			t.Errorf("second run: %q", got)
		}
		if diff := cmp.Diff([]string{"f-20d", "ready", "running", "s-5d"}, ids(t, b)); diff != "" {
			t.Errorf("remaining rows (-want +got):\n%s", diff)
		}

		// Interrupted before the first batch: exit 1, nothing deleted.
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		code, _, stderr = runCmd(cctx, nil, "--database", dsn, "--min-age", "1s")
		if code != exitError || !strings.Contains(stderr, "interrupted") {
			t.Errorf("cancelled: exit %d, stderr %q; want 1, interrupted", code, stderr)
		}
		if n := len(ids(t, b)); n != 4 {
			t.Errorf("cancelled run deleted rows: %d left of 4", n)
		}
	})
}

func TestPruneCmdProgressLine(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	p := &progress{w: &buf, start: time.Now().Add(-time.Minute)}
	p.update(database.PruneReport{Successful: 10, Cancelled: 2, Failed: 3, Batches: 4, Elapsed: 1500 * time.Millisecond})
	p.update(database.PruneReport{Successful: 20}) // within a second of the last: not shown
	p.end()
	want := "\r15 deleted so far (10 SUCCESSFUL, 2 CANCELLED, 3 FAILED) in 4 batches, 1.5s \n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("progress (-want +got):\n%s", diff)
	}
	if isTerminal(&buf) {
		t.Error("a buffer is not a terminal")
	}
	var nilProgress *progress
	nilProgress.end() // no progress shown: nothing to end
}
