package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
)

// schedulesDoc is the shape of schedules --json.
type schedulesDoc struct {
	Schedules []struct {
		Name      string          `json:"name"`
		Task      string          `json:"task"`
		Args      json.RawMessage `json:"args"`
		Queue     string          `json:"queue"`
		Cron      string          `json:"cron"`
		TimeZone  string          `json:"time_zone"`
		Every     string          `json:"every"`
		Paused    bool            `json:"paused"`
		NextRunAt time.Time       `json:"next_run_at"`
		LastRunAt *time.Time      `json:"last_run_at"`
	} `json:"schedules"`
}

func TestSchedules(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		f := setup(t, dsn)
		if out := f.ok(t, "schedules"); out != "no schedules\n" {
			t.Errorf("schedules: %q", out)
		}
		ctx := context.Background()
		for _, s := range []database.Schedule{
			{Name: "nightly", TaskName: "gotasks_test.ok", Args: json.RawMessage(`{"n":1}`), Cron: "30 2 * * *",
				TimeZone: "Europe/Paris"},
			{Name: "poll", TaskName: "gotasks_test.ok", Queue: "emails", Every: 90 * time.Second},
		} {
			if err := f.b.SetSchedule(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
		table := f.ok(t, "schedules")
		for _, re := range []string{`(?m)^NAME +TASK +QUEUE +WHEN +PAUSED +NEXT RUN +LAST RUN$`,
			`(?m)^nightly +gotasks_test\.ok +default +30 2 \* \* \* \(Europe/Paris\) +no +\d{4}-`,
			`(?m)^poll +gotasks_test\.ok +emails +every 1m30s +no +\d{4}-`} {
			if !regexp.MustCompile(re).MatchString(table) {
				t.Errorf("schedules table does not match %s:\n%s", re, table)
			}
		}
		if out := f.ok(t, "schedule", "pause", "poll"); out != "paused schedule poll\n" {
			t.Errorf("pause: %q", out)
		}
		var d schedulesDoc
		decode(t, f.ok(t, "schedules", "--json"), &d)
		type brief struct {
			Name, Cron, TimeZone, Every, Args string
			Paused, HasLast                   bool
		}
		var got []brief
		for _, s := range d.Schedules {
			got = append(got, brief{s.Name, s.Cron, s.TimeZone, s.Every, compact(t, s.Args), s.Paused, s.LastRunAt != nil})
			if s.NextRunAt.IsZero() {
				t.Errorf("schedule %s: no next run", s.Name)
			}
		}
		want := []brief{{"nightly", "30 2 * * *", "Europe/Paris", "", `{"n":1}`, false, false},
			{"poll", "", "", "1m30s", "null", true, false}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("schedules --json (-want +got):\n%s", diff)
		}
		if out := f.ok(t, "schedule", "resume", "poll"); out != "resumed schedule poll\n" {
			t.Errorf("resume: %q", out)
		}
		if out := f.ok(t, "schedule", "delete", "nightly"); out != "deleted schedule nightly\n" {
			t.Errorf("delete: %q", out)
		}
		d = schedulesDoc{}
		decode(t, f.ok(t, "schedules", "--json"), &d)
		if len(d.Schedules) != 1 || d.Schedules[0].Name != "poll" || d.Schedules[0].Paused {
			t.Errorf("schedules after resume and delete: %+v", d.Schedules)
		}
		code, stdout, stderr := f.run(t, "schedule", "delete", "nightly")
		if code != exitError || stdout != "" || !strings.Contains(stderr, "schedule not found") {
			t.Errorf("delete of a deleted schedule: exit %d, stdout %q, stderr %q; want 1 and not found", code, stdout, stderr)
		}
	})
}

func TestScheduleUsage(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"schedule"}, {"schedule", "stop", "x"}, {"schedule", "pause"},
		{"schedule", "pause", "a", "b"}, {"schedules", "extra"}} {
		args = append(args, "--database", "postgres://postgres@127.0.0.1:1/none")
		code, stdout, stderr := gotasks(t, nil, args...)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, "Usage: gotasks") {
			t.Errorf("gotasks %q: exit %d, stdout %q, stderr %q; want exit 2 and the usage on stderr", args, code, stdout, stderr)
		}
	}
}
