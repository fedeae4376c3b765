package signals_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/internal/lifecycle"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

func result(id string) *tasks.RawResult {
	return &tasks.RawResult{ID: id, TaskName: "signals_test.task", Status: tasks.StatusReady, Args: []byte(`{}`)}
}

func TestReceiversInConnectionOrder(t *testing.T) {
	s := signals.New("order")
	if s.Name() != "order" || s.Len() != 0 {
		t.Fatalf("New: name %q len %d", s.Name(), s.Len())
	}
	type key struct{}
	var got []string
	for _, name := range []string{"a", "b", "c"} {
		s.Connect(func(ctx context.Context, sender string, r *tasks.RawResult) {
			got = append(got, name+":"+sender+":"+r.ID+":"+ctx.Value(key{}).(string))
		})
	}
	if s.Len() != 3 {
		t.Errorf("Len() = %d, want 3", s.Len())
	}
	s.Send(context.WithValue(t.Context(), key{}, "v"), "backend", result("1"))
	if d := cmp.Diff([]string{"a:backend:1:v", "b:backend:1:v", "c:backend:1:v"}, got); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
}

func TestSendsCopies(t *testing.T) {
	s := signals.New("copies")
	orig := result("1")
	var second *tasks.RawResult
	s.Connect(func(_ context.Context, _ string, r *tasks.RawResult) {
		r.Status = tasks.StatusFailed
		r.Args[0] = 'X'
	})
	s.Connect(func(_ context.Context, _ string, r *tasks.RawResult) { second = r })
	s.Send(t.Context(), "b", orig)
	if orig.Status != tasks.StatusReady || string(orig.Args) != "{}" {
		t.Errorf("a receiver changed the sender's result: %+v", orig)
	}
	if second.Status != tasks.StatusReady || string(second.Args) != "{}" || second == orig {
		t.Errorf("a receiver saw another receiver's changes: %+v", second)
	}
}

func TestDisconnect(t *testing.T) {
	s := signals.New("disconnect")
	var got []string
	s.Connect(func(context.Context, string, *tasks.RawResult) { got = append(got, "a") })
	off := s.Connect(func(context.Context, string, *tasks.RawResult) { got = append(got, "b") })
	s.Connect(func(context.Context, string, *tasks.RawResult) { got = append(got, "c") })
	off()
	off() // harmless
	s.Send(t.Context(), "x", result("1"))
	if d := cmp.Diff([]string{"a", "c"}, got); d != "" {
		t.Errorf("after disconnect (-want +got):\n%s", d)
	}
	if s.Len() != 2 {
		t.Errorf("Len() = %d, want 2", s.Len())
	}
}

func TestDisconnectInsideReceiver(t *testing.T) {
	s := signals.New("self")
	n := 0
	var off func()
	off = s.Connect(func(context.Context, string, *tasks.RawResult) { n++; off() })
	s.Send(t.Context(), "x", result("1"))
	s.Send(t.Context(), "x", result("2"))
	if n != 1 {
		t.Errorf("a receiver that disconnected itself was called %d times, want 1", n)
	}
}

func TestZeroSignal(t *testing.T) {
	var s signals.Signal
	n := 0
	off := s.Connect(func(context.Context, string, *tasks.RawResult) { n++ })
	s.Send(t.Context(), "x", result("1"))
	off()
	s.Send(t.Context(), "x", result("2"))
	if n != 1 || s.Name() != "" || s.Len() != 0 {
		t.Errorf("zero Signal: %d calls, name %q, len %d; want 1 call, no name, no receiver left", n, s.Name(), s.Len())
	}
}

func TestConnectNilPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Connect(nil) did not panic")
		}
	}()
	signals.New("nil").Connect(nil)
}

// TestPanickingReceiver: the panic is recovered and logged, and the other
// receivers still run. Not parallel: it swaps the default slog logger.
func TestPanickingReceiver(t *testing.T) {
	var buf bytes.Buffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(old) })

	s := signals.New("panics")
	var got []string
	s.Connect(func(context.Context, string, *tasks.RawResult) { got = append(got, "before") })
	s.Connect(func(context.Context, string, *tasks.RawResult) { panic("receiver boom") })
	s.Connect(func(context.Context, string, *tasks.RawResult) { got = append(got, "after") })
	s.Send(t.Context(), "sender-x", result("id-7"))
	if d := cmp.Diff([]string{"before", "after"}, got); d != "" {
		t.Errorf("calls (-want +got):\n%s", d)
	}
	log := buf.String()
	for _, want := range []string{"receiver panicked", "receiver boom", "sender-x", "id-7", "signal=panics"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not mention %q:\n%s", want, log)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	s := signals.New("concurrent")
	var calls atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				off := s.Connect(func(context.Context, string, *tasks.RawResult) { calls.Add(1) })
				s.Send(t.Context(), "x", result("1"))
				_ = s.Len()
				off()
			}
		})
	}
	wg.Wait()
	if s.Len() != 0 {
		t.Errorf("Len() = %d after every receiver disconnected", s.Len())
	}
	if calls.Load() < 8*200 {
		t.Errorf("%d calls, want at least %d (each sender's own receiver)", calls.Load(), 8*200)
	}
}

// TestLifecycleSignals: the three signals of this package are the ones the
// core sends through (internal/lifecycle), so the events of the implicit
// default backend of package tasks reach their receivers, with the sender
// and a copy of the result, without any set-up.
func TestLifecycleSignals(t *testing.T) {
	names := []string{signals.TaskEnqueued.Name(), signals.TaskStarted.Name(), signals.TaskFinished.Name()}
	if d := cmp.Diff([]string{"task_enqueued", "task_started", "task_finished"}, names); d != "" {
		t.Errorf("signal names (-want +got):\n%s", d)
	}

	t.Run("the core's instances", func(t *testing.T) {
		for _, c := range []struct {
			core *lifecycle.Signal[any]
			s    *signals.Signal
		}{
			{lifecycle.TaskEnqueued, signals.TaskEnqueued},
			{lifecycle.TaskStarted, signals.TaskStarted},
			{lifecycle.TaskFinished, signals.TaskFinished},
		} {
			sender := "signals_test-" + c.s.Name()
			var got []string
			off := c.s.Connect(func(_ context.Context, from string, r *tasks.RawResult) {
				if from == sender {
					got = append(got, r.ID)
				}
			})
			c.core.Send(t.Context(), sender, result("sent"))
			off()
			if d := cmp.Diff([]string{"sent"}, got); d != "" {
				t.Errorf("%s sent by the core (-want +got):\n%s", c.s.Name(), d)
			}
		}
	})

	t.Run("the default backend", func(t *testing.T) {
		if slices.Contains(tasks.BackendNames(), tasks.DefaultBackendName) {
			t.Skip(`a backend is configured as "default"`)
		}
		var got []string
		for _, s := range []*signals.Signal{signals.TaskEnqueued, signals.TaskStarted, signals.TaskFinished} {
			t.Cleanup(s.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
				if r.TaskName == echo.Name() {
					got = append(got, s.Name()+":"+sender+":"+string(r.Status))
					r.Status = "changed by a receiver"
				}
			}))
		}
		res, err := echo.Enqueue(t.Context(), "hi")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"task_enqueued:default:READY", "task_started:default:RUNNING", "task_finished:default:SUCCESSFUL"}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("signals of the default backend (-want +got):\n%s", d)
		}
		if v, err := res.Value(); err != nil || v != "hi" {
			t.Errorf("Value() = %q, %v; receivers changed the result?", v, err)
		}
	})
}

var echo = tasks.Define("signals_test.echo", func(_ context.Context, s string) (string, error) { return s, nil })
