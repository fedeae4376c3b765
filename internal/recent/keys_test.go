package recent_test

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/recent"
)

// always and never are the holds functions of the tests.
func always(string) bool { return true }
func never(string) bool  { return false }

// claim is the outcome of a Claim.
type claim struct {
	Held string
	Dup  bool
}

func doClaim(k *recent.Keys[string], key, id string, holds func(string) bool) claim {
	held, dup := k.Claim(key, id, "value of "+id, holds)
	return claim{Held: held, Dup: dup}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	t.Run("bounded by the store", func(t *testing.T) {
		t.Parallel()
		k := recent.NewKeys[string](3)
		for i := range 100 {
			if got := doClaim(k, "key"+strconv.Itoa(i), "id"+strconv.Itoa(i), always); got.Dup {
				t.Fatalf("claim of the new key %d: %+v, want no duplicate", i, got)
			}
			if k.KeyLen() > 3 {
				t.Fatalf("after %d claims, KeyLen() = %d, want at most 3", i+1, k.KeyLen())
			}
		}
		if d := cmp.Diff([]int{3, 3}, []int{k.Len(), k.KeyLen()}); d != "" {
			t.Errorf("Len(), KeyLen() (-want +got):\n%s", d)
		}
		// Ids without keys evict the holders too.
		for i := range 3 {
			k.Put("plain"+strconv.Itoa(i), "plain")
		}
		if k.KeyLen() != 0 {
			t.Errorf("after the holders are forgotten, KeyLen() = %d, want 0", k.KeyLen())
		}
	})
	t.Run("kept key blocks, forgotten key does not", func(t *testing.T) {
		t.Parallel()
		k := recent.NewKeys[string](2)
		got := []claim{
			doClaim(k, "a", "a1", always),
			doClaim(k, "a", "a2", always), // a1 is kept: a duplicate
			doClaim(k, "b", "b1", always),
			doClaim(k, "c", "c1", always), // forgets a1
			doClaim(k, "a", "a3", always), // a1 is forgotten: a3 holds a
			doClaim(k, "a", "a4", always), // a3 is kept: a duplicate
		}
		want := []claim{
			{},
			{Held: "value of a1", Dup: true},
			{},
			{},
			{},
			{Held: "value of a3", Dup: true},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("claims (-want +got):\n%s", d)
		}
		if v, ok := k.Get("a2"); ok {
			t.Errorf("the duplicate a2 was stored: %q", v)
		}
		if v, ok := k.Get("a3"); !ok || v != "value of a3" {
			t.Errorf("Get(a3) = %q, %v; want the claimed value", v, ok)
		}
	})
	t.Run("holds of the holder decides", func(t *testing.T) {
		t.Parallel()
		k := recent.NewKeys[string](10)
		isReady := func(v string) bool { return v == "READY" }
		if _, dup := k.Claim("k", "1", "READY", isReady); dup {
			t.Fatal("first claim is a duplicate")
		}
		// A claim with another condition is judged by the holder's.
		if held, dup := k.Claim("k", "2", "READY", never); !dup || held != "READY" {
			t.Errorf("claim while the holder is READY = %q, %v; want READY, true", held, dup)
		}
		k.Put("1", "SUCCESSFUL") // no longer holds the key
		if _, dup := k.Claim("k", "3", "READY", never); dup {
			t.Error("claim after the holder finished is a duplicate")
		}
		// 3 claimed with never: the key is free again at once.
		if _, dup := k.Claim("k", "4", "READY", always); dup {
			t.Error("claim of a key held with never is a duplicate")
		}
		if k.KeyLen() != 1 {
			t.Errorf("KeyLen() = %d, want 1", k.KeyLen())
		}
	})
	t.Run("unbounded", func(t *testing.T) {
		t.Parallel()
		k := recent.NewKeys[string](0)
		for i := range 100 {
			doClaim(k, "key"+strconv.Itoa(i), "id"+strconv.Itoa(i), always)
		}
		if got := doClaim(k, "key0", "again", always); !got.Dup {
			t.Errorf("claim of key0 = %+v, want the duplicate of id0", got)
		}
		if k.Len() != 100 || k.KeyLen() != 100 {
			t.Errorf("Len(), KeyLen() = %d, %d; want 100, 100", k.Len(), k.KeyLen())
		}
	})
	t.Run("concurrent claims of a key", func(t *testing.T) {
		t.Parallel()
		k := recent.NewKeys[string](100)
		var won atomic.Int32
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				if _, dup := k.Claim("k", strconv.Itoa(g), "v", always); !dup {
					won.Add(1)
				}
			})
		}
		wg.Wait()
		if won.Load() != 1 {
			t.Errorf("%d claims of one key won, want 1", won.Load())
		}
	})
	t.Run("concurrent claims evicting", func(t *testing.T) {
		t.Parallel()
		k := recent.NewKeys[string](5)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 100 {
					id := strconv.Itoa(g*1000 + i)
					k.Claim("key"+strconv.Itoa(i%10), id, "v", never)
					k.Claim("own"+id, id+"own", "v", always)
					k.Put("plain"+id, "v")
				}
			})
		}
		wg.Wait()
		if k.Len() != 5 || k.KeyLen() > 5 {
			t.Errorf("Len(), KeyLen() = %d, %d; want 5 and at most 5", k.Len(), k.KeyLen())
		}
	})
}
