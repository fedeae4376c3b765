package tasks

import (
	"context"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/recent"
)

var fallbackEcho = Define("tasks.fallback_echo", func(_ context.Context, s string) (string, error) { return s, nil })

// TestFallbackUniqueKeysBounded: the implicit default keeps the unique keys
// of unique tasks no longer than their results, while a kept result still
// makes its key's next task a duplicate.
func TestFallbackUniqueKeysBounded(t *testing.T) {
	t.Parallel()
	const keep, n = 3, 100
	b := newFallback()
	b.results = recent.NewKeys[*RawResult](keep) // fallbackKeep, made small
	b.Apply(WithName("fallback-unique-bounded"))
	statuses := MaskOf(StatusReady, StatusRunning, StatusSuccessful)
	enqueue := func(t *testing.T, key string) *RawResult {
		t.Helper()
		r, err := b.Enqueue(t.Context(), &EnqueueRequest{ID: NewID(), TaskName: fallbackEcho.Name(),
			Args: json.RawMessage(strconv.Quote(key)), Queue: DefaultQueue, UniqueKey: key, UniqueStatuses: statuses})
		if err != nil {
			t.Fatalf("Enqueue %s: %v", key, err)
		}
		return r
	}
	first := map[string]string{} // key → id of its first task
	for i := range n {
		key := "key" + strconv.Itoa(i)
		r := enqueue(t, key)
		if r.Status != StatusSuccessful {
			t.Fatalf("Enqueue %s: %s, want SUCCESSFUL", key, r.Status)
		}
		first[key] = r.ID
	}
	t.Run("index bounded by keep", func(t *testing.T) {
		if got := b.results.KeyLen(); got > keep {
			t.Errorf("after %d unique tasks with distinct keys, %d keys are indexed; want at most %d", n, got, keep)
		}
	})
	t.Run("kept key is a duplicate, forgotten key is not", func(t *testing.T) {
		last := "key" + strconv.Itoa(n-1)
		got := map[string]bool{}
		for _, key := range []string{"key0", last} {
			got[key] = enqueue(t, key).ID == first[key]
		}
		want := map[string]bool{"key0": false, last: true}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("enqueue again returns the first task (-want +got):\n%s", d)
		}
	})
}
