package database_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// pruneNoop is run by the worker of TestPruneWhileWorkerRuns.
var pruneNoop = tasks.Define("database_test.prune_noop", func(ctx context.Context, n int) (int, error) {
	return n, nil
})

// pruneRepeat repeats every hour (TestPruneKeepsRepeatingNextRun).
var pruneRepeat = tasks.Define("database_test.prune_repeat", func(ctx context.Context, n int) (int, error) {
	return n, nil
}, tasks.WithRepeat(time.Hour))

// pruneCountsOnly compares reports by their counts and cutoffs.
var pruneCountsOnly = cmpopts.IgnoreFields(database.PruneReport{}, "Elapsed")

const pruneDay = 24 * time.Hour

// pruneDialect names the dialect of a dbtest DSN.
func pruneDialect(dsn string) string {
	if strings.HasPrefix(dsn, "postgres") {
		return "postgres"
	}
	return "sqlite"
}

// pruneScaled returns n, or small on SQLite under the race detector, where
// the transpiled C of modernc.org/sqlite runs some 50 times slower (about
// 1 ms per row inserted and deleted): the full-size run is `go test`
// without -race.
func pruneScaled(t *testing.T, dsn, what string, n, small int) int {
	t.Helper()
	if pruneDialect(dsn) != "sqlite" {
		return n
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "-race" && s.Value == "true" {
				t.Logf("SQLite under -race: %d %s instead of %d", small, what, n)
				return small
			}
		}
	}
	return n
}

// pruneOpen opens a migrated backend named name on dsn, closed at cleanup.
func pruneOpen(t *testing.T, dsn, name string) *database.Backend {
	t.Helper()
	b, err := database.Open(context.Background(), dsn, database.WithName(name), database.WithAutoMigrate(true))
	if err != nil {
		t.Fatalf("open %s: %v", dsn, err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// pruneTS encodes a time as the backend stores it.
func pruneTS(b *database.Backend, t time.Time) any {
	if b.Dialect() == database.SQLite {
		return t.UTC().Format("2006-01-02 15:04:05.000000")
	}
	return t.UTC()
}

// pruneRow is a row inserted directly with SQL.
type pruneRow struct {
	id       string
	status   tasks.Status
	queue    string // default "default"
	backend  string // default: the backend's name
	finished time.Time
	enqueued time.Time // default: finished, or long ago
}

var pruneLongAgo = time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)

func pruneInsertRows(t *testing.T, b *database.Backend, rows ...pruneRow) {
	t.Helper()
	for _, r := range rows {
		if r.queue == "" {
			r.queue = "default"
		}
		if r.backend == "" {
			r.backend = b.Name()
		}
		if r.enqueued.IsZero() {
			r.enqueued = r.finished
		}
		if r.enqueued.IsZero() {
			r.enqueued = pruneLongAgo
		}
		var fin any
		if !r.finished.IsZero() {
			fin = pruneTS(b, r.finished)
		}
		_, err := b.DB().DB.ExecContext(context.Background(), `INSERT INTO gotasks_task
			(id, task_name, status, args, queue, backend, run_after, enqueued_at, started_at, finished_at, attempts)
			VALUES ($1, 'database_test.prune_fake', $2, '{}', $3, $4, $5, $5, $5, $6, 1)`,
			r.id, string(r.status), r.queue, r.backend, pruneTS(b, r.enqueued), fin)
		if err != nil {
			t.Fatalf("insert %s: %v", r.id, err)
		}
	}
}

// pruneRemainingIDs returns the ids in the table (every backend), sorted.
func pruneRemainingIDs(t *testing.T, b *database.Backend) []string {
	t.Helper()
	rows, err := b.DB().DB.QueryContext(context.Background(), `SELECT id FROM gotasks_task ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

func pruneCount(t *testing.T, b *database.Backend, where string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := b.DB().DB.QueryRowContext(context.Background(),
		`SELECT count(*) FROM gotasks_task WHERE `+where, args...).Scan(&n); err != nil {
		t.Fatalf("count where %s: %v", where, err)
	}
	return n
}

// pruneInsertFinished inserts n finished rows of backend with ids
// prefix-1…prefix-n, statuses cycling FAILED, CANCELLED, SUCCESSFUL
// (i%3 = 1, 2, 0), finished at `at`, in one INSERT … SELECT. It returns the
// counts per status as a PruneReport.
func pruneInsertFinished(t *testing.T, b *database.Backend, prefix string, n int, at time.Time) database.PruneReport {
	t.Helper()
	var q string
	if b.Dialect() == database.Postgres {
		q = `INSERT INTO gotasks_task (id, task_name, status, args, queue, backend, run_after, enqueued_at,
			started_at, finished_at, attempts)
		SELECT $1 || g, 'database_test.prune_old',
			CASE g % 3 WHEN 0 THEN 'SUCCESSFUL' WHEN 1 THEN 'FAILED' ELSE 'CANCELLED' END,
			'{"n": 1}', 'default', $2, $3, $3, $3, $3, 1
		FROM generate_series(1, $4::int) AS g`
	} else {
		q = `WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < $4)
		INSERT INTO gotasks_task (id, task_name, status, args, queue, backend, run_after, enqueued_at,
			started_at, finished_at, attempts)
		SELECT $1 || g, 'database_test.prune_old',
			CASE g % 3 WHEN 0 THEN 'SUCCESSFUL' WHEN 1 THEN 'FAILED' ELSE 'CANCELLED' END,
			'{"n": 1}', 'default', $2, $3, $3, $3, $3, 1
		FROM s`
	}
	if _, err := b.DB().DB.ExecContext(context.Background(), q, prefix+"-", b.Name(), pruneTS(b, at), n); err != nil {
		t.Fatalf("insert %d finished rows: %v", n, err)
	}
	var want database.PruneReport
	for g := 1; g <= n; g++ {
		switch g % 3 {
		case 0:
			want.Successful++
		case 1:
			want.Failed++
		default:
			want.Cancelled++
		}
	}
	return want
}

func TestPruneAgeBoundaries(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := pruneOpen(t, dsn, "prune-age")
		now := time.Now().UTC().Truncate(time.Microsecond)
		minAge, failedAge := 10*pruneDay, 30*pruneDay
		pruneInsertRows(t, b,
			pruneRow{id: "s-older", status: tasks.StatusSuccessful, finished: now.Add(-minAge - time.Second)},
			pruneRow{id: "s-older-1us", status: tasks.StatusSuccessful, finished: now.Add(-minAge - time.Microsecond)},
			pruneRow{id: "s-exact", status: tasks.StatusSuccessful, finished: now.Add(-minAge)},
			pruneRow{id: "s-younger", status: tasks.StatusSuccessful, finished: now.Add(-minAge + time.Second)},
			pruneRow{id: "c-older", status: tasks.StatusCancelled, finished: now.Add(-minAge - time.Second)},
			pruneRow{id: "c-younger", status: tasks.StatusCancelled, finished: now.Add(-minAge + time.Second)},
			pruneRow{id: "f-older-min", status: tasks.StatusFailed, finished: now.Add(-minAge - time.Second)},
			pruneRow{id: "f-older", status: tasks.StatusFailed, finished: now.Add(-failedAge - time.Second)},
			pruneRow{id: "f-exact", status: tasks.StatusFailed, finished: now.Add(-failedAge)},
			pruneRow{id: "f-younger", status: tasks.StatusFailed, finished: now.Add(-failedAge + time.Second)},
			pruneRow{id: "ready-ancient", status: tasks.StatusReady, finished: pruneLongAgo},
			pruneRow{id: "running-ancient", status: tasks.StatusRunning, finished: pruneLongAgo},
			pruneRow{id: "ready-nofinish", status: tasks.StatusReady},
			pruneRow{id: "running-nofinish", status: tasks.StatusRunning},
		)
		rep, err := b.Prune(ctx, database.PruneOptions{MinAge: minAge, FailedMinAge: failedAge, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		wantRep := database.PruneReport{Successful: 2, Cancelled: 1, Failed: 1, Batches: 2,
			Cutoff: now.Add(-minAge), FailedCutoff: now.Add(-failedAge)}
		if diff := cmp.Diff(wantRep, rep, pruneCountsOnly); diff != "" {
			t.Errorf("report (-want +got):\n%s", diff)
		}
		want := []string{"c-younger", "f-exact", "f-older-min", "f-younger", "ready-ancient", "ready-nofinish",
			"running-ancient", "running-nofinish", "s-exact", "s-younger"}
		if diff := cmp.Diff(want, pruneRemainingIDs(t, b)); diff != "" {
			t.Errorf("remaining rows (-want +got):\n%s", diff)
		}

		// FAILED kept for less time than the others.
		rep, err = b.Prune(ctx, database.PruneOptions{MinAge: 60 * pruneDay, FailedMinAge: 2 * pruneDay, Now: now})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(database.PruneReport{Failed: 3, Batches: 2, Cutoff: now.Add(-60 * pruneDay),
			FailedCutoff: now.Add(-2 * pruneDay)}, rep, pruneCountsOnly); diff != "" {
			t.Errorf("second report (-want +got):\n%s", diff)
		}
		want = []string{"c-younger", "ready-ancient", "ready-nofinish",
			"running-ancient", "running-nofinish", "s-exact", "s-younger"}
		if diff := cmp.Diff(want, pruneRemainingIDs(t, b)); diff != "" {
			t.Errorf("remaining rows after second prune (-want +got):\n%s", diff)
		}
	})
}

func TestPruneDefaults(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := pruneOpen(t, dsn, "prune-defaults")
		now := time.Now().UTC()
		pruneInsertRows(t, b,
			pruneRow{id: "s-15d", status: tasks.StatusSuccessful, finished: now.Add(-15 * pruneDay)},
			pruneRow{id: "s-13d", status: tasks.StatusSuccessful, finished: now.Add(-13 * pruneDay)},
			pruneRow{id: "c-15d", status: tasks.StatusCancelled, finished: now.Add(-15 * pruneDay)},
			pruneRow{id: "f-15d", status: tasks.StatusFailed, finished: now.Add(-15 * pruneDay)},
			pruneRow{id: "f-13d", status: tasks.StatusFailed, finished: now.Add(-13 * pruneDay)},
		)
		rep, err := b.Prune(context.Background(), database.PruneOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := database.PruneReport{Successful: rep.Successful, Cancelled: rep.Cancelled, Failed: rep.Failed, Batches: rep.Batches}
		if diff := cmp.Diff(database.PruneReport{Successful: 1, Cancelled: 1, Failed: 1, Batches: 1}, got); diff != "" {
			t.Errorf("report (-want +got):\n%s", diff)
		}
		if d := rep.Cutoff.Sub(now.Add(-database.DefaultPruneMinAge)); d < 0 || d > time.Minute || !rep.Cutoff.Equal(rep.FailedCutoff) {
			t.Errorf("cutoffs %v, %v; want about %v, equal", rep.Cutoff, rep.FailedCutoff, now.Add(-database.DefaultPruneMinAge))
		}
		if diff := cmp.Diff([]string{"f-13d", "s-13d"}, pruneRemainingIDs(t, b)); diff != "" {
			t.Errorf("remaining rows (-want +got):\n%s", diff)
		}
	})
}

func TestPruneKeepsReadyAndRunning(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := pruneOpen(t, dsn, "prune-keep")
		var rows []pruneRow
		var want []string
		for i, st := range []tasks.Status{tasks.StatusReady, tasks.StatusRunning} {
			for j, fin := range []time.Time{{}, pruneLongAgo, time.Unix(0, 0)} {
				id := fmt.Sprintf("%d-%s-%d", i, st, j)
				rows = append(rows, pruneRow{id: id, status: st, finished: fin, enqueued: pruneLongAgo})
				want = append(want, id)
			}
		}
		pruneInsertRows(t, b, rows...)
		for _, dry := range []bool{true, false} {
			rep, err := b.Prune(context.Background(), database.PruneOptions{
				MinAge: time.Nanosecond, FailedMinAge: time.Nanosecond, DryRun: dry})
			if err != nil {
				t.Fatal(err)
			}
			if rep.Total() != 0 {
				t.Errorf("dry run %v: report %+v, want nothing deleted", dry, rep)
			}
		}
		if diff := cmp.Diff(want, pruneRemainingIDs(t, b)); diff != "" {
			t.Errorf("remaining rows (-want +got):\n%s", diff)
		}
	})
}

func TestPruneFilters(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		a := pruneOpen(t, dsn, "prune-a")
		other := pruneOpen(t, dsn, "prune-b")
		old := time.Now().Add(-100 * pruneDay)
		rows := []pruneRow{
			{id: "a-q1", status: tasks.StatusSuccessful, queue: "q1", finished: old},
			{id: "a-q2", status: tasks.StatusFailed, queue: "q2", finished: old},
			{id: "a-q3", status: tasks.StatusCancelled, queue: "q3", finished: old},
			{id: "a-default", status: tasks.StatusSuccessful, finished: old},
			{id: "b-q1", status: tasks.StatusSuccessful, queue: "q1", backend: "prune-b", finished: old},
			{id: "b-default", status: tasks.StatusFailed, backend: "prune-b", finished: old},
		}
		all := []string{"a-default", "a-q1", "a-q2", "a-q3", "b-default", "b-q1"}
		for _, tc := range []struct {
			name    string
			b       *database.Backend
			queues  []string
			want    database.PruneReport
			deleted []string
		}{
			{"all queues by default", a, nil, database.PruneReport{Successful: 2, Cancelled: 1, Failed: 1},
				[]string{"a-default", "a-q1", "a-q2", "a-q3"}},
			{"star", a, []string{"*"}, database.PruneReport{Successful: 2, Cancelled: 1, Failed: 1},
				[]string{"a-default", "a-q1", "a-q2", "a-q3"}},
			{"star among others", a, []string{"q1", "*"}, database.PruneReport{Successful: 2, Cancelled: 1, Failed: 1},
				[]string{"a-default", "a-q1", "a-q2", "a-q3"}},
			{"two queues", a, []string{"q1", "q2", "q1"}, database.PruneReport{Successful: 1, Failed: 1},
				[]string{"a-q1", "a-q2"}},
			{"one queue", a, []string{"q3"}, database.PruneReport{Cancelled: 1}, []string{"a-q3"}},
			{"unknown queue", a, []string{"nope"}, database.PruneReport{}, nil},
			{"other backend", other, nil, database.PruneReport{Successful: 1, Failed: 1},
				[]string{"b-default", "b-q1"}},
			{"other backend, one queue", other, []string{"q1"}, database.PruneReport{Successful: 1},
				[]string{"b-q1"}},
		} {
			if _, err := a.DB().DB.ExecContext(ctx, `DELETE FROM gotasks_task`); err != nil {
				t.Fatal(err)
			}
			pruneInsertRows(t, a, rows...)
			for _, dry := range []bool{true, false} {
				rep, err := tc.b.Prune(ctx, database.PruneOptions{Queues: tc.queues, DryRun: dry})
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				got := database.PruneReport{Successful: rep.Successful, Cancelled: rep.Cancelled, Failed: rep.Failed}
				if diff := cmp.Diff(tc.want, got); diff != "" {
					t.Errorf("%s (dry run %v): report (-want +got):\n%s", tc.name, dry, diff)
				}
			}
			var want []string
			for _, id := range all {
				if !slices.Contains(tc.deleted, id) {
					want = append(want, id)
				}
			}
			if diff := cmp.Diff(want, pruneRemainingIDs(t, a)); diff != "" {
				t.Errorf("%s: remaining rows (-want +got):\n%s", tc.name, diff)
			}
		}
	})
}

func TestPruneDryRunMatchesRealRun(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := pruneOpen(t, dsn, "prune-dry")
		now := time.Now().UTC()
		wantOld := pruneInsertFinished(t, b, "old", 2500, now.Add(-40*pruneDay))
		pruneInsertFinished(t, b, "young", 300, now.Add(-pruneDay))
		pruneInsertRows(t, b,
			pruneRow{id: "f-20d", status: tasks.StatusFailed, finished: now.Add(-20 * pruneDay)},
			pruneRow{id: "ready", status: tasks.StatusReady, finished: pruneLongAgo},
			pruneRow{id: "running", status: tasks.StatusRunning, finished: pruneLongAgo},
		)
		before := pruneRemainingIDs(t, b)
		opts := database.PruneOptions{MinAge: 14 * pruneDay, FailedMinAge: 30 * pruneDay, BatchSize: 1000, Now: now}
		opts.DryRun = true
		dry, err := b.Prune(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		wantDry := wantOld
		wantDry.DryRun = true
		wantDry.Cutoff, wantDry.FailedCutoff = now.Add(-14*pruneDay).Truncate(time.Microsecond), now.Add(-30*pruneDay).Truncate(time.Microsecond)
		if diff := cmp.Diff(wantDry, dry, pruneCountsOnly); diff != "" {
			t.Errorf("dry run report (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(before, pruneRemainingIDs(t, b)); diff != "" {
			t.Errorf("the dry run deleted rows (-before +after):\n%s", diff)
		}
		if !strings.HasPrefix(dry.String(), fmt.Sprintf("would delete %d SUCCESSFUL, %d CANCELLED, %d FAILED (2500 total) in ",
			wantOld.Successful, wantOld.Cancelled, wantOld.Failed)) {
			t.Errorf("dry run summary %q", dry.String())
		}

		opts.DryRun = false
		var progress []int64
		opts.Progress = func(r database.PruneReport) { progress = append(progress, r.Total()) }
		real, err := b.Prune(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		want := dry
		want.DryRun = false
		// Batches of 1000: SUCCESSFUL+CANCELLED (1666 rows) take 2, FAILED (834) 1.
		want.Batches = 3
		if diff := cmp.Diff(want, real, pruneCountsOnly); diff != "" {
			t.Errorf("real run vs dry run (-dry +real):\n%s", diff)
		}
		if diff := cmp.Diff([]int64{1000, 1666, 2500}, progress); diff != "" {
			t.Errorf("progress totals (-want +got):\n%s", diff)
		}
		if n := pruneCount(t, b, `id LIKE 'old-%'`); n != 0 {
			t.Errorf("%d old rows left", n)
		}
		if n := pruneCount(t, b, `1 = 1`); n != 300+3 {
			t.Errorf("%d rows left, want 303", n)
		}
	})
}

func TestPruneKeepsRepeatingNextRun(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := pruneOpen(t, dsn, "prune-repeat-"+pruneDialect(dsn))
		t.Cleanup(tasks.RegisterBackend(b))
		first, err := pruneRepeat.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, 7)
		if err != nil {
			t.Fatal(err)
		}
		w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(ctx); err != nil {
			t.Fatal(err)
		}
		// Age the whole chain: the finished run and the next run's enqueue.
		for _, q := range []string{`UPDATE gotasks_task SET enqueued_at = $1, started_at = $1`,
			`UPDATE gotasks_task SET finished_at = $1 WHERE status <> 'READY'`} {
			if _, err := b.DB().DB.ExecContext(ctx, q, pruneTS(b, pruneLongAgo)); err != nil {
				t.Fatal(err)
			}
		}
		type st struct {
			ID     string
			Status string
		}
		var before []st
		rows, err := b.DB().DB.QueryContext(ctx, `SELECT id, status FROM gotasks_task WHERE repeat_ms > 0 ORDER BY status`)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var s st
			if err := rows.Scan(&s.ID, &s.Status); err != nil {
				t.Fatal(err)
			}
			before = append(before, s)
		}
		rows.Close()
		if len(before) != 2 || before[0].Status != "READY" || before[1] != (st{first.ID, "SUCCESSFUL"}) {
			t.Fatalf("after one run: rows %+v, want the next run READY and %s SUCCESSFUL", before, first.ID)
		}
		rep, err := b.Prune(ctx, database.PruneOptions{MinAge: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Successful != 1 || rep.Total() != 1 {
			t.Errorf("report %+v, want 1 SUCCESSFUL deleted", rep)
		}
		if diff := cmp.Diff([]string{before[0].ID}, pruneRemainingIDs(t, b)); diff != "" {
			t.Errorf("remaining rows (-want +got):\n%s", diff)
		}
		next, err := b.GetResult(ctx, before[0].ID)
		if err != nil {
			t.Fatal(err)
		}
		if next.Status != tasks.StatusReady || next.Repeat != time.Hour {
			t.Errorf("next run %+v, want READY repeating every hour", next)
		}
	})
}

func TestPruneBadOptionsAndMissingSchema(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := pruneOpen(t, dsn, "prune-bad")
		for _, o := range []database.PruneOptions{
			{MinAge: -time.Hour},
			{FailedMinAge: -time.Hour},
			{BatchSize: -1},
			{Queues: []string{"q", ""}},
		} {
			if _, err := b.Prune(ctx, o); !errors.Is(err, database.ErrBadPruneOptions) {
				t.Errorf("Prune(%+v) = %v, want ErrBadPruneOptions", o, err)
			}
		}
		if _, err := b.DB().DB.ExecContext(ctx, `DROP TABLE gotasks_task`); err != nil {
			t.Fatal(err)
		}
		for _, dry := range []bool{false, true} {
			if _, err := b.Prune(ctx, database.PruneOptions{DryRun: dry}); !errors.Is(err, database.ErrSchemaMissing) {
				t.Errorf("dry run %v: Prune on a dropped table = %v, want ErrSchemaMissing", dry, err)
			}
		}
	})
}

func TestPruneStopsBetweenBatches(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		b := pruneOpen(t, dsn, "prune-stop")
		pruneInsertFinished(t, b, "old", 3000, pruneLongAgo)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		rep, err := b.Prune(ctx, database.PruneOptions{BatchSize: 1000, Progress: func(database.PruneReport) { cancel() }})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Prune = %v, want context.Canceled", err)
		}
		if rep.Batches != 1 || rep.Total() != 1000 {
			t.Errorf("report %+v, want 1 batch of 1000", rep)
		}
		if n := pruneCount(t, b, `1 = 1`); n != 2000 {
			t.Errorf("%d rows left, want 2000", n)
		}
	})
}

func TestPruneConcurrent(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		n := pruneScaled(t, dsn, "rows", 20_000, 4_000)
		b1 := pruneOpen(t, dsn, "prune-conc")
		want := pruneInsertFinished(t, b1, "old", n, pruneLongAgo)
		b2 := pruneOpen(t, dsn, "prune-conc") // another pool, as another process would have
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			reps  [2]database.PruneReport
			errs  [2]error
		)
		for i, b := range []*database.Backend{b1, b2} {
			wg.Go(func() {
				<-start
				reps[i], errs[i] = b.Prune(context.Background(), database.PruneOptions{BatchSize: n / 40})
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("prune %d: %v", i, err)
			}
		}
		got := database.PruneReport{
			Successful: reps[0].Successful + reps[1].Successful,
			Cancelled:  reps[0].Cancelled + reps[1].Cancelled,
			Failed:     reps[0].Failed + reps[1].Failed,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("sum of both reports (-want +got):\n%s", diff)
		}
		if left := pruneCount(t, b1, `1 = 1`); left != 0 {
			t.Errorf("%d rows left", left)
		}
		t.Logf("%s: prune 1: %d rows in %d batches; prune 2: %d rows in %d batches", pruneDialect(dsn),
			reps[0].Total(), reps[0].Batches, reps[1].Total(), reps[1].Batches)
	})
}

// pruneWarnLog records the worker's log records at level WARN and above.
type pruneWarnLog struct {
	mu   sync.Mutex
	recs []string
}

func (h *pruneWarnLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (h *pruneWarnLog) Handle(_ context.Context, r slog.Record) error {
	var sb strings.Builder
	sb.WriteString(r.Level.String() + " " + r.Message)
	r.Attrs(func(a slog.Attr) bool { sb.WriteString(" " + a.String()); return true })
	h.mu.Lock()
	h.recs = append(h.recs, sb.String())
	h.mu.Unlock()
	return nil
}
func (h *pruneWarnLog) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *pruneWarnLog) WithGroup(string) slog.Handler      { return h }

func (h *pruneWarnLog) records() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.recs)
}

// TestPruneWhileWorkerRuns prunes 200,000 finished rows while a worker
// runs tasks on the same database and 2,000 tasks are enqueued during the
// prune: the worker logs no problem, every task ends SUCCESSFUL, and the
// READY and RUNNING rows are untouched. (SQLite under -race: 5,000 rows
// and 500 tasks; see pruneScaled.)
func TestPruneWhileWorkerRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("prunes 200,000 rows; skipped with -short")
	}
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		const chunks = 20
		chunk := pruneScaled(t, dsn, "tasks per chunk", 100, 25) // tasks enqueued per chunk
		oldRows := pruneScaled(t, dsn, "rows", 200_000, 5_000)
		batchSize := min(oldRows/20, database.DefaultPruneBatchSize)
		ctx := context.Background()
		b := pruneOpen(t, dsn, "prune-load-"+pruneDialect(dsn))
		t.Cleanup(tasks.RegisterBackend(b))
		// The prune has a connection pool of its own, as cmd/prune run
		// from cron has: on SQLite the two take turns at the database's
		// write lock through busy_timeout, not through the backend's mutex.
		pb := pruneOpen(t, dsn, b.Name())

		t0 := time.Now()
		want := pruneInsertFinished(t, b, "old", oldRows, pruneLongAgo)
		var sentinels []pruneRow
		for i := range 50 {
			// READY not due for a year and RUNNING without a heartbeat or
			// attempt time: the worker neither claims nor rescues them.
			sentinels = append(sentinels,
				pruneRow{id: fmt.Sprintf("ready-%02d", i), status: tasks.StatusReady, finished: pruneLongAgo},
				pruneRow{id: fmt.Sprintf("running-%02d", i), status: tasks.StatusRunning, finished: pruneLongAgo})
		}
		pruneInsertRows(t, b, sentinels...)
		if _, err := b.DB().DB.ExecContext(ctx, `UPDATE gotasks_task SET run_after = $1, started_at = NULL
			WHERE id LIKE 'ready-%' OR id LIKE 'running-%'`, pruneTS(b, time.Now().Add(365*pruneDay))); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: inserted %d finished rows in %v", pruneDialect(dsn), oldRows, time.Since(t0).Round(time.Millisecond))

		logs := &pruneWarnLog{}
		// No heartbeat during the test: on PostgreSQL the worker's own
		// heartbeat UPDATE and its batched completion UPDATE lock the same
		// RUNNING rows in different orders and can deadlock each other
		// (40P01, logged and retried), with or without a prune running;
		// that would hide what this test looks for. The prune never locks
		// READY or RUNNING rows.
		w, err := database.NewWorker(b, database.WorkerConfig{Concurrency: 16, PollInterval: 20 * time.Millisecond,
			HeartbeatInterval: time.Hour, RescueAfter: 2 * time.Hour, Logger: slog.New(logs)})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Start(ctx); err != nil {
			t.Fatal(err)
		}
		stopped := false
		defer func() {
			if !stopped {
				_ = w.StopAndCancel(ctx)
			}
		}()

		// The enqueuer adds a chunk after each batch the prune commits, so
		// that enqueues, claims and completions interleave with the
		// deletes, then the chunks that are left.
		task := pruneNoop.Using(tasks.WithBackend(b.Name()))
		batches := make(chan struct{}, 1000)
		var (
			enqWG  sync.WaitGroup
			enqErr error
			ids    []string
		)
		enqWG.Go(func() {
			for c := range chunks {
				<-batches // after a batch; at once when the prune has ended
				args := make([]int, chunk)
				for i := range args {
					args[i] = c*chunk + i
				}
				rs, err := task.EnqueueMany(ctx, args)
				if err != nil {
					enqErr = err
					return
				}
				for _, r := range rs {
					ids = append(ids, r.ID)
				}
			}
		})
		t1 := time.Now()
		rep, err := pb.Prune(ctx, database.PruneOptions{BatchSize: batchSize, Progress: func(database.PruneReport) {
			select {
			case batches <- struct{}{}:
			default:
			}
		}})
		pruneTime := time.Since(t1)
		close(batches)
		doneDuringPrune := pruneCount(t, b, `task_name = $1 AND status = 'SUCCESSFUL'`, pruneNoop.Name())
		if err != nil {
			t.Fatalf("prune: %v", err)
		}
		t.Logf("%s: pruned %d rows in %d batches in %v; %d tasks completed meanwhile", pruneDialect(dsn),
			rep.Total(), rep.Batches, pruneTime.Round(time.Millisecond), doneDuringPrune)
		if diff := cmp.Diff(want, database.PruneReport{Successful: rep.Successful, Cancelled: rep.Cancelled,
			Failed: rep.Failed}); diff != "" {
			t.Errorf("report (-want +got):\n%s", diff)
		}
		enqWG.Wait()
		if enqErr != nil {
			t.Fatalf("enqueue: %v", enqErr)
		}

		deadline := time.Now().Add(60 * time.Second)
		for pruneCount(t, b, `task_name = $1 AND status = 'SUCCESSFUL'`, pruneNoop.Name()) < int64(chunks*chunk) {
			if time.Now().After(deadline) {
				t.Fatalf("tasks not all SUCCESSFUL after 60 s: %d of %d", pruneCount(t, b,
					`task_name = $1 AND status = 'SUCCESSFUL'`, pruneNoop.Name()), chunks*chunk)
			}
			time.Sleep(20 * time.Millisecond)
		}
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		stopped = true
		if err := w.Stop(sctx); err != nil {
			t.Errorf("worker stop: %v", err)
		}
		if recs := logs.records(); len(recs) > 0 {
			t.Errorf("the worker logged %d warnings or errors, first: %s", len(recs), recs[0])
		}

		if len(ids) != chunks*chunk {
			t.Fatalf("enqueued %d tasks, want %d", len(ids), chunks*chunk)
		}
		for _, id := range ids {
			r, err := b.GetResult(ctx, id)
			if err != nil {
				t.Fatalf("task %s: %v", id, err)
			}
			if r.Status != tasks.StatusSuccessful || len(r.Errors) != 0 || r.Attempts != 1 {
				t.Fatalf("task %s: status %s, %d attempts, errors %v; want SUCCESSFUL at the first attempt",
					id, r.Status, r.Attempts, r.Errors)
			}
		}
		if n := pruneCount(t, b, `id LIKE 'old-%'`); n != 0 {
			t.Errorf("%d old finished rows left", n)
		}
		for _, s := range []string{"READY", "RUNNING"} {
			if n := pruneCount(t, b, `status = $1 AND id LIKE $2`, s, strings.ToLower(s)+"-%"); n != 50 {
				t.Errorf("%d %s rows left of 50", n, s)
			}
		}
	})
}
