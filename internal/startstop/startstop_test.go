package startstop

import (
	"context"
	"testing"
	"time"
)

type loop struct {
	Base
	runs chan struct{}
}

func (l *loop) Start(ctx context.Context) error {
	ctx, ok, stopped := l.StartInit(ctx)
	if !ok {
		return nil
	}
	go func() {
		defer close(stopped)
		l.runs <- struct{}{}
		<-ctx.Done()
	}()
	return nil
}

func TestBase(t *testing.T) {
	t.Parallel()

	t.Run("StopWithoutStart", func(t *testing.T) {
		t.Parallel()
		var l loop
		l.Stop() // no-op, does not block
		if err := l.StopContext(t.Context()); err != nil {
			t.Fatalf("StopContext = %v, want nil", err)
		}
	})

	t.Run("StartTwiceRunsOnce", func(t *testing.T) {
		t.Parallel()
		l := &loop{runs: make(chan struct{}, 2)}
		if err := l.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := l.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		<-l.runs
		l.Stop()
		l.Stop() // twice: no-op
		if n := len(l.runs); n != 0 {
			t.Fatalf("loop ran %d more times, want once", n)
		}
		select {
		case <-l.Stopped():
		default:
			t.Fatal("Stopped not closed after Stop")
		}
	})

	t.Run("StopContextBounded", func(t *testing.T) {
		t.Parallel()
		var b Base
		_, _, stopped := b.StartInit(t.Context())
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
		defer cancel()
		if err := b.StopContext(ctx); err == nil {
			t.Fatal("StopContext returned nil while the goroutine still runs")
		}
		close(stopped)
		b.Stop()
	})

	t.Run("ParentCancelStops", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		l := &loop{runs: make(chan struct{}, 1)}
		_ = l.Start(ctx)
		cancel()
		<-l.Stopped()
	})
}
