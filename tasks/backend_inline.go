package tasks

import (
	"context"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/gotasks/gotasks/internal/lifecycle"
)

// RunInline is for backend authors: it runs the task of req at once, in the
// calling goroutine, with the full life-cycle of a backend that runs each
// task as it is enqueued (package backends/immediate, and the default when
// no backend is configured):
//
//  1. the READY result is stored and the TaskEnqueued signal sent;
//  2. the result is marked RUNNING (attempt 1, by the worker id
//     "host:pid:inline"), stored, and TaskStarted sent;
//  3. RunAttempt runs it with the policy of cfg, without retries, with b
//     as the running backend (follow-ups that name no backend go to b;
//     b may be nil) and cfg.Logger as the base of the task's logger;
//  4. the SUCCESSFUL or FAILED result is stored and TaskFinished sent.
//
// The signals are those of package signals, sent with cfg.Name() as the
// sender. store is called at each step with a copy of the result that it
// may keep (for GetResult). RunInline returns a copy of the finished
// result. The task's error or panic is recorded in it, never returned or
// raised.
//
// A task that calls runtime.Goexit (as testing.T.FailNow does) still gets
// step 4, with a FAILED result; then the calling goroutine exits, so
// RunInline does not return.
func RunInline(ctx context.Context, b Backend, cfg *BackendConfig, req *EnqueueRequest, store func(*RawResult)) *RawResult {
	name := cfg.Name()
	r := req.NewRawResult(name, time.Now().UTC())
	store(r.Clone())
	lifecycle.TaskEnqueued.Send(ctx, name, r)

	start := time.Now().UTC()
	r.Status, r.Attempts = StatusRunning, 1
	r.StartedAt, r.LastAttemptedAt = &start, &start
	r.WorkerIDs = []string{inlineWorkerID()}
	store(r.Clone())
	lifecycle.TaskStarted.Send(ctx, name, r)

	// Everything after the attempt happens in finish: it also runs when the
	// task calls runtime.Goexit.
	RunAttempt(ctx, r, AttemptConfig{Backend: cfg, Running: b}, func(a Attempt) {
		a.Apply(r)
		store(r.Clone())
		lifecycle.TaskFinished.Send(ctx, name, r)
	})
	return r.Clone()
}

// inlineWorkerID is the worker id of the tasks RunInline runs.
var inlineWorkerID = sync.OnceValue(func() string {
	host, _ := os.Hostname()
	return host + ":" + strconv.Itoa(os.Getpid()) + ":inline"
})
