package database_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// schedTick is the task of the schedule tests.
var schedTick = tasks.Define("database_test.sched_tick", func(_ context.Context, a wkIntArgs) (int, error) {
	return a.X, nil
})

// schedRuns returns the run-after times of the tasks of schedTick on b,
// oldest first.
func schedRuns(t *testing.T, b *database.Backend) []time.Time {
	t.Helper()
	p, err := b.ListTasks(context.Background(), database.ListParams{
		TaskFilter: database.TaskFilter{TaskNames: []string{schedTick.Name()}},
		Order:      database.OldestFirst, Limit: database.MaxPageSize,
	})
	if err != nil {
		t.Fatalf("list tasks: %v", err)
	}
	var out []time.Time
	for _, r := range p.Tasks {
		out = append(out, r.RunAfter)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Before(out[j]) })
	return out
}

// schedCheckTicks fails unless runs (sorted) are on ticks of a schedule
// ticking every step (a whole number of seconds, from the minute: whole
// seconds, multiples of step) and distinct: no tick has two tasks (a
// duplicate enqueue). Gaps are allowed: a round late by a whole step (a
// loaded machine) merges ticks by design (the catch-up policy), so the
// exact cadence is not checked.
func schedCheckTicks(t *testing.T, what string, runs []time.Time, step time.Duration) {
	t.Helper()
	for i, r := range runs {
		if !r.Equal(r.Truncate(time.Second)) || r.Unix()%int64(step/time.Second) != 0 {
			t.Errorf("%s: run %d at %v: not on a tick (every %v)", what, i, r, step)
		}
		if i > 0 && !r.After(runs[i-1]) {
			t.Errorf("%s: two tasks for the tick %v (a duplicate enqueue)", what, r)
		}
	}
}

func after(runs []time.Time, t time.Time) []time.Time {
	var out []time.Time
	for _, r := range runs {
		if r.After(t) {
			out = append(out, r)
		}
	}
	return out
}

func stopAll(t *testing.T, ws ...*database.Worker) {
	t.Helper()
	for _, w := range ws {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := w.Stop(ctx); err != nil {
			t.Errorf("stop worker: %v", err)
		}
		cancel()
	}
}

// TestScheduleWorkers: a cron schedule ticking every second enqueues one
// task per tick with 4 workers on the database, catches the ticks missed
// while no worker ran up once, and can be paused, resumed, changed and
// deleted while workers run.
func TestScheduleWorkers(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := wkOpen(t, dsn)
		task := wkOn(schedTick, b)
		if err := database.ScheduleTask(ctx, b, "tick", task, wkIntArgs{X: 7}, database.Cron("* * * * * *")); err != nil {
			t.Fatal(err)
		}
		s, err := b.GetSchedule(ctx, "tick")
		if err != nil {
			t.Fatal(err)
		}
		var args bytes.Buffer // PostgreSQL's jsonb adds spaces
		if err := json.Compact(&args, s.Args); err != nil {
			t.Fatal(err)
		}
		s.Args = args.Bytes()
		want := &database.Schedule{Name: "tick", TaskName: schedTick.Name(), Args: []byte(`{"x":7}`),
			Queue: tasks.DefaultQueue, Cron: "* * * * * *"}
		if diff := cmp.Diff(want, s, cmp.FilterPath(func(p cmp.Path) bool {
			switch p.Last().String() {
			case ".NextRunAt", ".CreatedAt", ".UpdatedAt":
				return true
			}
			return false
		}, cmp.Ignore())); diff != "" {
			t.Errorf("schedule (-want +got):\n%s", diff)
		}

		// Four workers, each on a backend of its own on the database (as
		// four processes would be).
		cfg := database.WorkerConfig{PollInterval: 50 * time.Millisecond}
		ws := []*database.Worker{wkStart(t, b, cfg)}
		for range 3 {
			ws = append(ws, wkStart(t, wkOpenNamed(t, dsn, b.Name()), cfg))
		}
		dbtest.WaitUntil(t, 15*time.Second, "5 ticks", func() bool { return len(schedRuns(t, b)) >= 5 })
		stopAll(t, ws...)
		runs := schedRuns(t, b)
		schedCheckTicks(t, "4 workers", runs, time.Second)
		last := runs[len(runs)-1]
		// The first tick missed: last+1s, unless the last round was late
		// by a whole second (then it skipped to a later tick).
		stopped, err := b.GetSchedule(ctx, "tick")
		if err != nil {
			t.Fatal(err)
		}
		missed := stopped.NextRunAt
		if missed.Before(last.Add(time.Second)) {
			t.Fatalf("next run %v after the stop: not after the last run %v", missed, last)
		}

		// No worker for 3 ticks or more; then one: one catch-up task, due
		// at the first tick missed, then one task per tick again.
		time.Sleep(time.Until(missed.Add(2500 * time.Millisecond)))
		restart := time.Now()
		w := wkStart(t, wkOpenNamed(t, dsn, b.Name()), cfg)
		dbtest.WaitUntil(t, 10*time.Second, "2 ticks after the restart", func() bool {
			return len(after(schedRuns(t, b), restart)) >= 2
		})
		runs = after(schedRuns(t, b), last)
		if len(runs) < 3 || !runs[0].Equal(missed) || !runs[1].After(restart) {
			t.Fatalf("runs after the restart %v: want exactly one at %v (the catch-up), then ticks after %v", runs,
				missed, restart)
		}
		schedCheckTicks(t, "after the restart", runs[1:], time.Second)

		// Paused: nothing enqueued. Resumed: the ticks missed meanwhile
		// are not caught up.
		if err := b.PauseSchedule(ctx, "tick"); err != nil {
			t.Fatal(err)
		}
		paused := time.Now()
		n := len(schedRuns(t, b))
		time.Sleep(2500 * time.Millisecond)
		if got := schedRuns(t, b); len(got) > n+1 { // one tick may have been enqueued as the pause came
			t.Fatalf("paused schedule enqueued %v", got[n:])
		} else {
			n = len(got)
		}
		if err := b.ResumeSchedule(ctx, "tick"); err != nil {
			t.Fatal(err)
		}
		resumed := time.Now()
		dbtest.WaitUntil(t, 10*time.Second, "a tick after the resume", func() bool { return len(schedRuns(t, b)) > n })
		if got := schedRuns(t, b)[n]; !got.After(resumed.Add(-time.Second)) || !got.After(paused.Add(time.Second)) {
			t.Errorf("first run after the resume at %v (paused %v, resumed %v): a missed tick was caught up", got,
				paused, resumed)
		}

		// Changed at run time: every 2 seconds.
		if err := database.ScheduleTask(ctx, b, "tick", task, wkIntArgs{X: 8}, database.Cron("*/2 * * * * *")); err != nil {
			t.Fatal(err)
		}
		changed := time.Now()
		dbtest.WaitUntil(t, 10*time.Second, "2 ticks after the change", func() bool {
			return len(after(schedRuns(t, b), changed)) >= 2
		})
		runs = after(schedRuns(t, b), changed)
		schedCheckTicks(t, "after the change", runs, 2*time.Second)
		if runs[0].Second()%2 != 0 {
			t.Errorf("run after the change at %v: want an even second", runs[0])
		}

		// Deleted: nothing more.
		if err := b.DeleteSchedule(ctx, "tick"); err != nil {
			t.Fatal(err)
		}
		n = len(schedRuns(t, b))
		time.Sleep(2500 * time.Millisecond)
		if got := schedRuns(t, b); len(got) != n {
			t.Errorf("deleted schedule enqueued %v", got[n:])
		}
		if _, err := b.GetSchedule(ctx, "tick"); !errors.Is(err, database.ErrScheduleNotFound) {
			t.Errorf("GetSchedule after delete: %v, want ErrScheduleNotFound", err)
		}
		stopAll(t, w)
	})
}

// TestScheduleAPI: validation, listing, pause and resume, not found.
func TestScheduleAPI(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := wkOpen(t, dsn)
		for _, bad := range []database.Schedule{
			{Name: "x", TaskName: "t"},
			{Name: "x", TaskName: "t", Cron: "* * * * *", Every: time.Minute},
			{Name: "x", TaskName: "t", Cron: "not cron"},
			{Name: "x", TaskName: "t", Cron: "* * * * *", TimeZone: "Mars/Olympus"},
			{Name: "x", TaskName: "t", Every: time.Millisecond},
			{Name: "", TaskName: "t", Every: time.Minute},
			{Name: "x", TaskName: "t", Every: time.Minute, Args: []byte("{")},
		} {
			if err := b.SetSchedule(ctx, bad); !errors.Is(err, tasks.ErrInvalidTask) {
				t.Errorf("SetSchedule(%+v) = %v, want ErrInvalidTask", bad, err)
			}
		}
		if err := b.SetSchedule(ctx, database.Schedule{Name: "b", TaskName: "t", Every: time.Hour}); err != nil {
			t.Fatal(err)
		}
		if err := b.SetSchedule(ctx, database.Schedule{Name: "a", TaskName: "t", Cron: "30 2 * * *",
			TimeZone: "Europe/Paris"}); err != nil {
			t.Fatal(err)
		}
		ss, err := b.ListSchedules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range ss {
			names = append(names, s.Name)
		}
		if diff := cmp.Diff([]string{"a", "b"}, names); diff != "" {
			t.Errorf("names (-want +got):\n%s", diff)
		}
		a := ss[0]
		if h, m, _ := a.NextRunAt.In(mustZone(t, "Europe/Paris")).Clock(); h != 2 || m != 30 {
			t.Errorf("next run of a at %v, want 02:30 in Paris", a.NextRunAt)
		}
		// A change that keeps the timing keeps the next run.
		if err := b.SetSchedule(ctx, database.Schedule{Name: "a", TaskName: "t2", Cron: "30 2 * * *",
			TimeZone: "Europe/Paris", Priority: 5}); err != nil {
			t.Fatal(err)
		}
		a2, err := b.GetSchedule(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if !a2.NextRunAt.Equal(a.NextRunAt) || a2.TaskName != "t2" || a2.Priority != 5 {
			t.Errorf("changed schedule %+v; want task t2, priority 5, next run kept at %v", a2, a.NextRunAt)
		}
		if err := b.PauseSchedule(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if a3, _ := b.GetSchedule(ctx, "a"); a3 == nil || !a3.Paused {
			t.Errorf("paused schedule %+v: not paused", a3)
		}
		// The application's start-up (ScheduleTask, SetSchedule) does not
		// resume a paused schedule, even with a change of timing.
		if err := database.ScheduleTask(ctx, b, "a", wkOn(schedTick, b), wkIntArgs{X: 1},
			database.ScheduleSpec{Cron: "30 2 * * *", TimeZone: "Europe/Paris"}); err != nil {
			t.Fatal(err)
		}
		if err := b.SetSchedule(ctx, database.Schedule{Name: "a", TaskName: "t", Cron: "45 3 * * *"}); err != nil {
			t.Fatal(err)
		}
		if a3, _ := b.GetSchedule(ctx, "a"); a3 == nil || !a3.Paused || a3.Cron != "45 3 * * *" {
			t.Errorf("paused schedule set again %+v: want still paused, cron 45 3 * * *", a3)
		}
		// A new schedule starts paused when asked.
		if err := b.SetSchedule(ctx, database.Schedule{Name: "c", TaskName: "t", Every: time.Hour, Paused: true}); err != nil {
			t.Fatal(err)
		}
		if c, _ := b.GetSchedule(ctx, "c"); c == nil || !c.Paused {
			t.Errorf("schedule created paused %+v: not paused", c)
		}
		if err := b.ResumeSchedule(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if a3, _ := b.GetSchedule(ctx, "a"); a3 == nil || a3.Paused {
			t.Errorf("resumed schedule %+v: paused", a3)
		}
		for name, f := range map[string]func(context.Context, string) error{
			"pause": b.PauseSchedule, "resume": b.ResumeSchedule, "delete": b.DeleteSchedule,
			"get": func(ctx context.Context, n string) error { _, err := b.GetSchedule(ctx, n); return err },
		} {
			if err := f(ctx, "nope"); !errors.Is(err, database.ErrScheduleNotFound) {
				t.Errorf("%s of an unknown schedule: %v, want ErrScheduleNotFound", name, err)
			}
		}
	})
}

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	l, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
