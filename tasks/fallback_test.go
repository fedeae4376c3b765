package tasks_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/backendtest"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// TestFallbackConformance: the implicit default passes the conformance
// suite as an inline backend, with the flags of the immediate backend.
func TestFallbackConformance(t *testing.T) {
	t.Parallel()
	if got, want := tasks.NewFallback().Capabilities(), immediate.New().Capabilities(); got != want {
		t.Errorf("Capabilities() = %v, want those of the immediate backend, %v", got, want)
	}
	backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
		return &backendtest.Harness{Backend: tasks.NewFallback(opts...)}
	})
}

// TestRunInline: the life-cycle of an inline run, stored at each step with
// a copy, and the signals in order.
func TestRunInline(t *testing.T) {
	t.Parallel()
	cfg := &tasks.BackendConfig{BackendName: uniqueName(t)}
	var events []string
	for _, s := range []*signals.Signal{signals.TaskEnqueued, signals.TaskStarted, signals.TaskFinished} {
		t.Cleanup(s.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
			if sender == cfg.Name() {
				events = append(events, s.Name()+" "+string(r.Status))
			}
		}))
	}
	for _, c := range []struct {
		task   string
		status tasks.Status
	}{
		{addTask.Name(), tasks.StatusSuccessful},
		{failTask.Name(), tasks.StatusFailed},
	} {
		t.Run(c.task, func(t *testing.T) {
			events = nil
			var stored []tasks.Status
			req := &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: c.task, Args: json.RawMessage(`{"a":1,"b":2}`),
				Queue: tasks.DefaultQueue, MaxAttempts: 5}
			r := tasks.RunInline(t.Context(), nil, cfg, req, func(r *tasks.RawResult) {
				stored = append(stored, r.Status)
				r.Status = "changed by the store" // a copy
			})
			if d := cmp.Diff([]tasks.Status{tasks.StatusReady, tasks.StatusRunning, c.status}, stored); d != "" {
				t.Errorf("stored (-want +got):\n%s", d)
			}
			want := []string{"task_enqueued READY", "task_started RUNNING", "task_finished " + string(c.status)}
			if d := cmp.Diff(want, events); d != "" {
				t.Errorf("signals (-want +got):\n%s", d)
			}
			if r.Status != c.status || r.Attempts != 1 || r.Backend != cfg.Name() || r.ID != req.ID ||
				len(r.WorkerIDs) != 1 || !strings.HasSuffix(r.WorkerIDs[0], ":inline") || r.FinishedAt == nil {
				t.Errorf("result %+v, want %s after one attempt by a worker id ending in :inline", r, c.status)
			}
			if c.status == tasks.StatusSuccessful && string(r.ReturnValue) != "3" {
				t.Errorf("ReturnValue = %s, want 3", r.ReturnValue)
			}
			if c.status == tasks.StatusFailed && (len(r.Errors) != 1 || r.Errors[0].Message != "always fails") {
				t.Errorf("Errors = %+v, want the one failure: no retry inline", r.Errors)
			}
		})
	}
}
