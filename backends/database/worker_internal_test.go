package database

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/dbtest"
)

// Internal tests of the worker's helpers: plan generations, the JSON
// encoding and decoding of the worker's statements, and eachBackend. The
// fetcher's internals are tested in worker_fetcher_internal_test.go, one
// cycle of each service in worker_services_internal_test.go.

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

// decodeStrings (worker_ids of every claimed row) agrees with encoding/json
// on every input: the same strings, or an error for both.
func TestDecodeStrings(t *testing.T) {
	t.Parallel()
	for _, in := range decodeStringsSeeds {
		checkDecodeStrings(t, in)
	}
}

func FuzzDecodeStrings(f *testing.F) {
	for _, in := range decodeStringsSeeds {
		f.Add(in)
	}
	f.Fuzz(checkDecodeStrings)
}

var decodeStringsSeeds = []string{
	`[]`, ` [ ] `, `["vm:1234:abcdef"]`, `["a", "b" ,"c"]`, "[\n\"a\"\n]", `["é"]`, `["a\"b"]`, `["a\\b"]`,
	`["\u0041"]`, `[1]`, `["a",]`, `["a"`, `["a"]x`, `[`, ``, `null`, `{}`, `["a" "b"]`, `[""]`, "[\"a\tb\"]",
	`[null]`, `["a"],`,
}

func checkDecodeStrings(t *testing.T, in string) {
	var want []string
	wantErr := json.Unmarshal([]byte(in), &want)
	var got []string
	gotErr := decodeStrings([]byte(in), &got)
	if (wantErr != nil) != (gotErr != nil) {
		t.Fatalf("decodeStrings(%q): error %v; encoding/json: %v", in, gotErr, wantErr)
	}
	if wantErr == nil {
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("decodeStrings(%q) (-encoding/json +got):\n%s", in, diff)
		}
	}
}

// eachBackend runs f as a parallel subtest per dialect, with a fresh
// migrated backend.
func eachBackend(t *testing.T, f func(t *testing.T, ctx context.Context, be *Backend)) {
	t.Helper()
	for _, dialect := range dbtest.Dialects {
		t.Run(dialect, func(t *testing.T) {
			t.Parallel()
			f(t, context.Background(), wbBackend(t, dialect))
		})
	}
}
