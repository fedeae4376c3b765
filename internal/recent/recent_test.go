package recent_test

import (
	"strconv"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/recent"
)

// kept returns which of the ids 0..n-1 s keeps, and their values.
func kept(s *recent.Store[int], n int) map[string]int {
	out := map[string]int{}
	for i := range n {
		if v, ok := s.Get(strconv.Itoa(i)); ok {
			out[strconv.Itoa(i)] = v
		}
	}
	return out
}

func TestStore(t *testing.T) {
	t.Parallel()
	t.Run("keeps the most recent", func(t *testing.T) {
		t.Parallel()
		s := recent.New[int](2)
		s.Put("0", 0)
		s.Put("1", 1)
		s.Put("0", 10) // a replaced value keeps its place
		s.Put("2", 2)
		if d := cmp.Diff(map[string]int{"1": 1, "2": 2}, kept(s, 3)); d != "" {
			t.Errorf("kept (-want +got):\n%s", d)
		}
		if s.Len() != 2 {
			t.Errorf("Len() = %d, want 2", s.Len())
		}
	})
	t.Run("unbounded", func(t *testing.T) {
		t.Parallel()
		s := recent.New[int](0)
		for i := range 100 {
			s.Put(strconv.Itoa(i), i)
		}
		if s.Len() != 100 {
			t.Errorf("Len() = %d, want 100", s.Len())
		}
	})
	t.Run("concurrent use", func(t *testing.T) {
		t.Parallel()
		s := recent.New[int](10)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				for i := range 100 {
					id := strconv.Itoa(g*1000 + i)
					s.Put(id, i)
					s.Get(id)
				}
			})
		}
		wg.Wait()
		if s.Len() != 10 {
			t.Errorf("Len() = %d, want 10", s.Len())
		}
	})
}
