package tasks_test

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// within reports whether got is want ±fraction.
func within(got, want time.Duration, fraction float64) bool {
	lo := time.Duration(float64(want) * (1 - fraction))
	hi := time.Duration(float64(want) * (1 + fraction))
	return got >= lo && got <= hi
}

// TestJitter: jittered delays stay within ±fraction and are not all equal.
func TestJitter(t *testing.T) {
	for _, c := range []struct {
		name     string
		b        tasks.Backoff
		base     tasks.Backoff
		fraction float64
	}{
		{"DefaultBackoff", tasks.DefaultBackoff, tasks.ExactBackoff, 0.1},
		{"Jitter 50%", tasks.Jitter(tasks.ConstantBackoff(time.Minute), 0.5), tasks.ConstantBackoff(time.Minute), 0.5},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, attempt := range []int{1, 3, 10} {
				seen := map[time.Duration]bool{}
				for range 1000 {
					got := c.b(attempt)
					if !within(got, c.base(attempt), c.fraction) {
						t.Fatalf("attempt %d: %v is not within %v ±%v", attempt, got, c.base(attempt), c.fraction)
					}
					seen[got] = true
				}
				if len(seen) < 100 {
					t.Errorf("attempt %d: only %d distinct delays in 1000 draws", attempt, len(seen))
				}
			}
		})
	}
	if got := tasks.Jitter(tasks.ConstantBackoff(time.Second), 0)(3); got != time.Second {
		t.Errorf("Jitter(…, 0) = %v, want 1s", got)
	}
	for _, f := range []float64{math.NaN(), -0.5, math.Inf(-1)} {
		if got := tasks.Jitter(tasks.ConstantBackoff(time.Second), f)(3); got != time.Second {
			t.Errorf("Jitter(…, %v) = %v, want 1s", f, got)
		}
	}
}

// TestUniqueKey: the key depends on exactly the chosen parts.
func TestUniqueKey(t *testing.T) {
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	key := func(u tasks.UniqueOpts, name, queue, args string, now time.Time) string {
		t.Helper()
		k, err := tasks.UniqueKey(u, name, queue, []byte(args), now)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	base := key(tasks.UniqueOpts{}, "t", "q", `{"a":1}`, at)
	if len(base) != 64 {
		t.Errorf("key %q is not a hex SHA-256", base)
	}
	for _, c := range []struct {
		name string
		a, b string
		same bool
	}{
		{"nothing but the name", base, key(tasks.UniqueOpts{}, "t", "other", `{"a":2}`, at.Add(time.Hour)), true},
		{"another name", base, key(tasks.UniqueOpts{}, "u", "q", `{"a":1}`, at), false},
		{"by args, same args reordered", key(tasks.UniqueOpts{ByArgs: true}, "t", "q", `{"b": 2, "a":1}`, at),
			key(tasks.UniqueOpts{ByArgs: true}, "t", "q", `{"a":1,"b":2}`, at), true},
		{"by args, other args", key(tasks.UniqueOpts{ByArgs: true}, "t", "q", `{"a":1}`, at),
			key(tasks.UniqueOpts{ByArgs: true}, "t", "q", `{"a":2}`, at), false},
		{"by queue", key(tasks.UniqueOpts{ByQueue: true}, "t", "q", `1`, at),
			key(tasks.UniqueOpts{ByQueue: true}, "t", "r", `1`, at), false},
		{"by period, same hour", key(tasks.UniqueOpts{ByPeriod: time.Hour}, "t", "q", `1`, at),
			key(tasks.UniqueOpts{ByPeriod: time.Hour}, "t", "q", `1`, at.Add(50*time.Minute)), true},
		{"by period, next hour", key(tasks.UniqueOpts{ByPeriod: time.Hour}, "t", "q", `1`, at),
			key(tasks.UniqueOpts{ByPeriod: time.Hour}, "t", "q", `1`, at.Add(56*time.Minute)), false},
		{"explicit key", key(tasks.UniqueOpts{Key: "x"}, "t", "q", `1`, at),
			key(tasks.UniqueOpts{Key: "y"}, "t", "q", `1`, at), false},
	} {
		if got := c.a == c.b; got != c.same {
			t.Errorf("%s: keys equal = %v, want %v", c.name, got, c.same)
		}
	}
}

// uniqueInvalidTask is defined once for the package (a second Define of a
// name panics, so not inside a test that -count runs again).
var uniqueInvalidTask = tasks.Define("tasks_test.unique-invalid", func(_ context.Context, a int) (int, error) { return a, nil })

// TestWithUniqueInvalid: statuses without READY or RUNNING, invalid
// statuses and bad periods are ErrInvalidTask.
func TestWithUniqueInvalid(t *testing.T) {
	task := uniqueInvalidTask
	for _, u := range []tasks.UniqueOpts{
		{Statuses: []tasks.Status{tasks.StatusReady}},
		{Statuses: []tasks.Status{tasks.StatusRunning, tasks.StatusSuccessful}},
		{Statuses: []tasks.Status{tasks.StatusReady, tasks.StatusRunning, "DONE"}},
		{ByPeriod: -time.Second},
		{ByPeriod: time.Millisecond},
	} {
		_, err := task.Using(tasks.WithUnique(u)).Enqueue(t.Context(), 1)
		if !errors.Is(err, tasks.ErrInvalidTask) {
			t.Errorf("%+v: err = %v, want ErrInvalidTask", u, err)
		}
	}
	if d := cmp.Diff(tasks.DefaultUniqueStatuses, tasks.MaskOf(tasks.StatusRunning, tasks.StatusReady)); d != "" {
		t.Errorf("DefaultUniqueStatuses (-want +got):\n%s", d)
	}
}

// TestStatusBits: the bits are those the database's unique index spells
// out (migration 20261205000001_unique): they must never change.
func TestStatusBits(t *testing.T) {
	got := map[tasks.Status]tasks.StatusMask{}
	for _, s := range []tasks.Status{tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful, tasks.StatusFailed, tasks.StatusCancelled, "DONE"} {
		got[s] = s.Bit()
	}
	want := map[tasks.Status]tasks.StatusMask{"READY": 1, "RUNNING": 2, "SUCCESSFUL": 4, "FAILED": 8, "CANCELLED": 16, "DONE": 0}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Bit (-want +got):\n%s", d)
	}
	m := tasks.MaskOf(tasks.StatusReady, tasks.StatusRunning, tasks.StatusFailed)
	if !m.Has(tasks.StatusFailed) || m.Has(tasks.StatusSuccessful) || m.Has("DONE") {
		t.Errorf("MaskOf(READY, RUNNING, FAILED) = %b: Has is wrong", m)
	}
}
