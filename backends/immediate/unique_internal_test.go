package immediate

import (
	"context"
	"strconv"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// uniqueEcho returns its argument; the tests make it unique per call.
var uniqueEcho = tasks.Define("immediate.unique_echo", func(_ context.Context, s string) (string, error) { return s, nil })

// TestUniqueKeysBounded: the unique keys of a long run of unique tasks with
// distinct keys are kept no longer than their results (WithKeep), while a
// kept result still makes its key's next task a duplicate.
func TestUniqueKeysBounded(t *testing.T) {
	t.Parallel()
	const keep, n = 3, 100
	b := New(WithConfig(tasks.WithName("immediate-unique-bounded")), WithKeep(keep))
	t.Cleanup(tasks.RegisterBackend(b))
	// SUCCESSFUL included: a finished task keeps its key while its result
	// is kept.
	statuses := []tasks.Status{tasks.StatusReady, tasks.StatusRunning, tasks.StatusSuccessful}
	byKey := func(key string) *tasks.Task[string, string] {
		return uniqueEcho.Using(tasks.WithBackend(b.Name()), tasks.WithUnique(tasks.UniqueOpts{Key: key, Statuses: statuses}))
	}
	ctx := t.Context()
	first := map[string]string{} // key → id of its first task
	for i := range n {
		key := "key" + strconv.Itoa(i)
		res, err := byKey(key).Enqueue(ctx, key)
		if err != nil {
			t.Fatalf("Enqueue %s: %v", key, err)
		}
		if res.Duplicate || res.Status != tasks.StatusSuccessful {
			t.Fatalf("Enqueue %s: Duplicate %v, Status %s; want a new SUCCESSFUL task", key, res.Duplicate, res.Status)
		}
		first[key] = res.ID
	}
	t.Run("index bounded by keep", func(t *testing.T) {
		if got := b.results.KeyLen(); got > keep {
			t.Errorf("after %d unique tasks with distinct keys, %d keys are indexed; want at most WithKeep, %d", n, got, keep)
		}
	})
	t.Run("kept key is a duplicate, forgotten key is not", func(t *testing.T) {
		type outcome struct {
			Duplicate bool
			SameID    bool
		}
		got := map[string]outcome{}
		for _, key := range []string{"key0", "key" + strconv.Itoa(n-1)} {
			res, err := byKey(key).Enqueue(ctx, key)
			if err != nil {
				t.Fatalf("Enqueue %s again: %v", key, err)
			}
			got[key] = outcome{Duplicate: res.Duplicate, SameID: res.ID == first[key]}
		}
		want := map[string]outcome{
			"key0":                    {}, // its result is forgotten: a new task
			"key" + strconv.Itoa(n-1): {Duplicate: true, SameID: true},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("enqueue again (-want +got):\n%s", d)
		}
	})
}
