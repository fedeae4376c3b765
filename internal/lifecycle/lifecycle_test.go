package lifecycle_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/lifecycle"
)

// described is a payload that describes itself for logs.
type described struct{ id string }

func (d described) LogValue() slog.Value {
	return slog.GroupValue(slog.String("id", d.id), slog.String("kind", "described"))
}

func TestSignal(t *testing.T) {
	t.Run("receivers in connection order", func(t *testing.T) {
		t.Parallel()
		s := lifecycle.New[int]("order")
		if s.Name() != "order" || s.Len() != 0 {
			t.Fatalf("New: name %q len %d", s.Name(), s.Len())
		}
		var got []string
		for _, name := range []string{"a", "b", "c"} {
			s.Connect(func(_ context.Context, sender string, n int) {
				got = append(got, name+":"+sender+":"+string(rune('0'+n)))
			})
		}
		s.Send(t.Context(), "x", 7)
		if d := cmp.Diff([]string{"a:x:7", "b:x:7", "c:x:7"}, got); d != "" {
			t.Errorf("calls (-want +got):\n%s", d)
		}
	})

	t.Run("disconnect", func(t *testing.T) {
		t.Parallel()
		s := lifecycle.New[int]("disconnect")
		var got []string
		s.Connect(func(context.Context, string, int) { got = append(got, "a") })
		off := s.Connect(func(context.Context, string, int) { got = append(got, "b") })
		var self func()
		self = s.Connect(func(context.Context, string, int) { got = append(got, "self"); self() })
		off()
		off() // harmless
		s.Send(t.Context(), "x", 1)
		s.Send(t.Context(), "x", 2)
		if d := cmp.Diff([]string{"a", "self", "a"}, got); d != "" {
			t.Errorf("calls (-want +got):\n%s", d)
		}
		if s.Len() != 1 {
			t.Errorf("Len() = %d, want 1", s.Len())
		}
	})

	t.Run("concurrent use", func(t *testing.T) {
		t.Parallel()
		s := lifecycle.New[int]("concurrent")
		var calls atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for range 200 {
					off := s.Connect(func(context.Context, string, int) { calls.Add(1) })
					s.Send(t.Context(), "x", 1)
					off()
				}
			})
		}
		wg.Wait()
		if s.Len() != 0 || calls.Load() < 8*200 {
			t.Errorf("Len() = %d, %d calls; want 0 and at least %d", s.Len(), calls.Load(), 8*200)
		}
	})

	t.Run("the task life-cycle signals", func(t *testing.T) {
		t.Parallel()
		names := []string{lifecycle.TaskEnqueued.Name(), lifecycle.TaskStarted.Name(), lifecycle.TaskFinished.Name()}
		if d := cmp.Diff([]string{"task_enqueued", "task_started", "task_finished"}, names); d != "" {
			t.Errorf("names (-want +got):\n%s", d)
		}
	})
}

// TestPanickingReceiver: the panic is recovered and logged, with the
// payload's own log attributes when it has them, and the other receivers
// still run. Not parallel: it swaps the default slog logger.
func TestPanickingReceiver(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })

	for _, c := range []struct {
		name    string
		payload any
		want    []string
		notWant []string
	}{
		{"a payload that describes itself", described{id: "id-7"},
			[]string{"signal=panics", "sender=sender-x", "id=id-7", "kind=described", "panic=\"receiver boom\"", "stack="}, nil},
		{"any other payload", "secret payload",
			[]string{"signal=panics", "sender=sender-x", "panic=\"receiver boom\""}, []string{"secret"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			buf.Reset()
			s := lifecycle.New[any]("panics")
			var got []string
			s.Connect(func(context.Context, string, any) { got = append(got, "before") })
			s.Connect(func(context.Context, string, any) { panic("receiver boom") })
			s.Connect(func(context.Context, string, any) { got = append(got, "after") })
			s.Send(t.Context(), "sender-x", c.payload)
			if d := cmp.Diff([]string{"before", "after"}, got); d != "" {
				t.Errorf("calls (-want +got):\n%s", d)
			}
			log := buf.String()
			if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "gotasks: signal receiver panicked") {
				t.Errorf("no ERROR record of the panic:\n%s", log)
			}
			for _, want := range c.want {
				if !strings.Contains(log, want) {
					t.Errorf("the log does not say %q:\n%s", want, log)
				}
			}
			for _, no := range c.notWant {
				if strings.Contains(log, no) {
					t.Errorf("the log says %q:\n%s", no, log)
				}
			}
		})
	}
}
