package database

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The claim and completion statements are planned afresh as the worker's
// work grows (a plan made on an empty table must not stay), but only a few
// times: each generation is a new prepared statement on every connection.
func TestPlanGeneration(t *testing.T) {
	t.Parallel()
	type at struct {
		n       int64
		elapsed time.Duration
	}
	cases := []at{
		{0, 0}, {999, 0}, {1000, 0}, {1999, 0}, {2000, 0}, {4000, 0}, {1_000_000, 0},
		{0, 9 * time.Minute}, {0, 10 * time.Minute}, {4000, 25 * time.Minute},
	}
	want := []int{0, 0, 1, 1, 2, 3, 10, 0, 1, 5}
	got := make([]int, len(cases))
	for i, c := range cases {
		got[i] = planGeneration(c.n, c.elapsed)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("planGeneration (-want +got):\n%s", diff)
	}
}

// appendJSONString writes what encoding/json reads back as the same string.
func TestAppendJSONString(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"", "abc", `"quoted" \ back`, "ctl \x00\x01\x1f\n\r\t", "ü € 😀", `\u0041`} {
		var got string
		if err := json.Unmarshal(appendJSONString(nil, s), &got); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if diff := cmp.Diff(s, got); diff != "" {
			t.Errorf("round trip (-want +got):\n%s", diff)
		}
	}
}
