package database

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestTickerAfter: the first tick strictly after a time, for cron in a time
// zone across a DST change, with seconds, and for intervals (which keep
// their phase: a long gap gives one next tick, not one per missed tick).
func TestTickerAfter(t *testing.T) {
	t.Parallel()
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v.UTC()
	}
	for _, tc := range []struct {
		name   string
		s      Schedule
		from   time.Time
		anchor time.Time
		want   []time.Time // successive ticks
	}{
		{
			// New York moves to EDT on 2026-03-08: 09:00 local is 14:00 UTC
			// before and 13:00 UTC after.
			name: "DSTNewYork", s: Schedule{Cron: "0 9 * * *", TimeZone: "America/New_York"},
			from: utc("2026-03-06T15:00:00Z"),
			want: []time.Time{utc("2026-03-07T14:00:00Z"), utc("2026-03-08T13:00:00Z"), utc("2026-03-09T13:00:00Z")},
		},
		{
			// Paris moves to CET on 2026-10-25: 08:00 local is 06:00 UTC
			// before and 07:00 UTC after.
			name: "DSTParis", s: Schedule{Cron: "0 8 * * *", TimeZone: "Europe/Paris"},
			from: utc("2026-10-24T07:00:00Z"),
			want: []time.Time{utc("2026-10-25T07:00:00Z"), utc("2026-10-26T07:00:00Z")},
		},
		{
			name: "UTCDefault", s: Schedule{Cron: "@daily"},
			from: utc("2026-03-06T15:00:00Z"),
			want: []time.Time{utc("2026-03-07T00:00:00Z"), utc("2026-03-08T00:00:00Z")},
		},
		{
			name: "Seconds", s: Schedule{Cron: "*/2 * * * * *"},
			from: utc("2026-03-06T15:00:01Z"),
			want: []time.Time{utc("2026-03-06T15:00:02Z"), utc("2026-03-06T15:00:04Z")},
		},
		{
			name: "EveryKeepsPhase", s: Schedule{Every: 10 * time.Second},
			from: utc("2026-03-06T15:01:03Z"), anchor: utc("2026-03-06T15:00:05Z"),
			want: []time.Time{utc("2026-03-06T15:01:05Z"), utc("2026-03-06T15:01:15Z")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := newTicker(&tc.s)
			if err != nil {
				t.Fatal(err)
			}
			var got []time.Time
			at, anchor := tc.from, tc.anchor
			for range tc.want {
				next := k.after(at, anchor)
				got = append(got, next)
				at, anchor = next, next
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ticks (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUntilNext: the scheduler waits for the next run, at most a second,
// and retries soon when a schedule stays due.
func TestUntilNext(t *testing.T) {
	t.Parallel()
	at := time.Now()
	in := func(d time.Duration) *time.Time { v := at.Add(d); return &v }
	got := []time.Duration{untilNext(nil, at), untilNext(in(300*time.Millisecond), at), untilNext(in(time.Hour), at),
		untilNext(in(-time.Second), at)}
	want := []time.Duration{schedulerInterval, 300 * time.Millisecond, schedulerInterval, schedulerRetry}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("waits (-want +got):\n%s", diff)
	}
}

// TestBrokenSchedulePutOff: a schedule that cannot tick on this host (its
// stored time zone is unknown) enqueues nothing and is put off by
// brokenRetry, so it is not retried, and logged, at every round.
func TestBrokenSchedulePutOff(t *testing.T) {
	t.Parallel()
	for _, dialect := range []string{"sqlite", "postgres"} {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			fx := newStoreFixture(t, dialect)
			ctx := fx.ctx
			if err := fx.b.SetSchedule(ctx, Schedule{Name: "broken", TaskName: "t", Cron: "0 * * * *",
				TimeZone: "Europe/Paris"}); err != nil {
				t.Fatal(err)
			}
			due := now().Add(-time.Second)
			if _, err := fx.db.ExecContext(ctx, `UPDATE gotasks_schedule SET timezone = 'Mars/Olympus', next_run_at = $1
				WHERE name = 'broken'`, fx.ts(due)); err != nil {
				t.Fatal(err)
			}
			before := now()
			n, err := fx.b.enqueueDue(ctx, 10)
			if err != nil || n != 0 {
				t.Fatalf("enqueueDue = %d, %v; want 0 tasks and no error", n, err)
			}
			s, err := fx.b.GetSchedule(ctx, "broken")
			if err != nil {
				t.Fatal(err)
			}
			if s.NextRunAt.Before(before.Add(brokenRetry)) || !s.LastRunAt.IsZero() {
				t.Errorf("after a round: next run %v, last run %v; want at least %v from now, and no last run",
					s.NextRunAt, s.LastRunAt, brokenRetry)
			}
			if n, err := fx.b.enqueueDue(ctx, 10); err != nil || n != 0 {
				t.Errorf("a second round = %d, %v; want nothing due", n, err)
			}
		})
	}
}
