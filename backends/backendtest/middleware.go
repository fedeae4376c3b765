package backendtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/tasks"
)

// The suite's checks of middleware and metadata (SPEC §12).

// traceKey is the context key under which middleware hands modeTrace its
// *traceLog.
type traceKey struct{}

// traceLog records the order in which middleware and tasks ran.
type traceLog struct {
	mu     sync.Mutex
	events []string
}

func (l *traceLog) add(ev string) {
	l.mu.Lock()
	l.events = append(l.events, ev)
	l.mu.Unlock()
}

func (l *traceLog) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.events...)
}

// metaKey is the metadata entry that tells the suite's global middleware
// which test an enqueue or attempt belongs to: global middleware sees the
// tasks of every backend of the process.
const metaKey = "backendtest.key"

// tracer returns middleware named name that logs to l around enqueues and
// executions of the tasks whose metadata has metaKey = key (every task
// when key is empty), and puts l in the task's context.
func tracer(name, key string, l *traceLog) tasks.Middleware {
	return &tracingMiddleware{name: name, key: key, l: l}
}

type tracingMiddleware struct {
	name, key string
	l         *traceLog
}

func (m *tracingMiddleware) Enqueue(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
	if m.key != "" && reqs[0].Metadata[metaKey] != m.key {
		return next(ctx, reqs)
	}
	m.l.add(m.name + " enqueue >")
	for _, r := range reqs {
		r.SetMetadata("enqueued-through", strings.TrimPrefix(r.Metadata["enqueued-through"]+","+m.name, ","))
	}
	rs, err := next(ctx, reqs)
	m.l.add(m.name + " enqueue <")
	return rs, err
}

func (m *tracingMiddleware) Execute(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
	if m.key != "" && x.Metadata[metaKey] != m.key {
		return next(ctx)
	}
	m.l.add(fmt.Sprintf("%s execute > %s attempt %d", m.name, x.TaskName, x.Attempt))
	err := next(context.WithValue(ctx, traceKey{}, m.l))
	m.l.add(fmt.Sprintf("%s execute < %s", m.name, x.Outcome(err)))
	return err
}

// testMiddlewareOrder: global middleware (tasks.Use) wraps the backend's
// own (tasks.WithMiddleware), each in registration order, around enqueue
// and around every attempt; a context value set by middleware reaches the
// task; enqueue middleware sets metadata that is stored.
func testMiddlewareOrder(t *testing.T, f Factory) {
	l := &traceLog{}
	key := fmt.Sprintf("order#%d", keySeq.Add(1))
	e := newEnv(t, f, tasks.WithMiddleware(tracer("B", "", l), tracer("C", "", l)))
	t.Cleanup(tasks.Use(tracer("A", key, l)))
	res := e.enqueue(e.task(tasks.WithMetadata(map[string]string{metaKey: key})), args{Mode: modeTrace, Text: "t"})
	e.finish(res)
	if res.Status != tasks.StatusSuccessful {
		t.Fatalf("status %s (errors %+v), want SUCCESSFUL", res.Status, res.Errors)
	}
	execute := []string{
		"A execute > backendtest.work attempt 1", "B execute > backendtest.work attempt 1",
		"C execute > backendtest.work attempt 1", "task " + key,
		"C execute < success", "B execute < success", "A execute < success",
	}
	var want []string
	if e.inline() { // the task runs inside the enqueue
		want = append(want, "A enqueue >", "B enqueue >", "C enqueue >")
		want = append(want, execute...)
		want = append(want, "C enqueue <", "B enqueue <", "A enqueue <")
	} else {
		want = append([]string{"A enqueue >", "B enqueue >", "C enqueue >", "C enqueue <", "B enqueue <", "A enqueue <"}, execute...)
	}
	if d := cmp.Diff(want, l.all()); d != "" {
		t.Errorf("middleware order (-want +got):\n%s", d)
	}
	if got := res.Metadata["enqueued-through"]; got != "A,B,C" {
		t.Errorf(`stored metadata "enqueued-through" = %q, want "A,B,C"`, got)
	}
}

// testMiddlewareOutcome: execution middleware sees each attempt, the
// task's error, and what it means (Execution.Outcome): a retry, a final
// failure, a success.
func testMiddlewareOutcome(t *testing.T, f Factory) {
	type seen struct {
		Attempt int
		Outcome tasks.Outcome
		Err     string
	}
	var mu sync.Mutex
	got := map[string][]seen{}
	mw := tasks.ExecuteMiddlewareFunc(func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
		err := next(ctx)
		s := seen{Attempt: x.Attempt, Outcome: x.Outcome(err)}
		var fe *failure
		if errors.As(err, &fe) {
			s.Err = fe.Text
		}
		mu.Lock()
		got[x.ResultID] = append(got[x.ResultID], s)
		mu.Unlock()
		return err
	})
	e := newEnv(t, f, tasks.WithMiddleware(mw), tasks.WithDefaultBackoff(tasks.ConstantBackoff(0)))
	flakyOpts := []tasks.Option{tasks.WithMaxAttempts(2)}
	if !e.has(tasks.CanRetry) {
		flakyOpts = nil
	}
	ok := e.enqueue(e.task(), args{Mode: modeOK})
	flaky := e.enqueue(e.task(flakyOpts...), args{Mode: modeFlaky, Key: e.key()})
	fail := e.enqueue(e.task(e.once()...), args{Mode: modeFail, Text: "no"})
	for _, r := range []*tasks.Result[out]{ok, flaky, fail} {
		e.finish(r)
	}
	want := map[string][]seen{
		ok.ID:    {{1, tasks.OutcomeSuccess, ""}},
		flaky.ID: {{1, tasks.OutcomeRetry, "flaky attempt 1"}, {2, tasks.OutcomeSuccess, ""}},
		fail.ID:  {{1, tasks.OutcomeFailure, "no"}},
	}
	if !e.has(tasks.CanRetry) {
		want[flaky.ID] = []seen{{1, tasks.OutcomeFailure, "flaky attempt 1"}}
	}
	mu.Lock()
	defer mu.Unlock()
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("attempts seen by middleware (-want +got):\n%s", d)
	}
}

// testMiddlewareRecover: execution middleware can turn a failure into a
// success; a panic in middleware fails the attempt like a panic of the
// task, and the backend goes on.
func testMiddlewareRecover(t *testing.T, f Factory) {
	mw := tasks.ExecuteMiddlewareFunc(func(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
		err := next(ctx)
		switch x.Metadata["recover"] {
		case "swallow":
			return nil
		case "panic":
			panic("backendtest: middleware panics on purpose")
		}
		return err
	})
	e := newEnv(t, f, tasks.WithMiddleware(mw))
	swallowed := e.enqueue(e.task(tasks.WithMetadata(map[string]string{"recover": "swallow"})), args{Mode: modePanic, Text: "p"})
	panicked := e.enqueue(e.task(append(e.once(), tasks.WithMetadata(map[string]string{"recover": "panic"}))...), args{Mode: modeOK})
	after := e.enqueue(e.task(), args{Mode: modeOK, N: 1})
	for _, r := range []*tasks.Result[out]{swallowed, panicked, after} {
		e.finish(r)
	}
	if swallowed.Status != tasks.StatusSuccessful || len(swallowed.Errors) != 0 {
		t.Errorf("a panic swallowed by middleware: status %s, errors %+v; want SUCCESSFUL without errors", swallowed.Status, swallowed.Errors)
	}
	if v, err := swallowed.Value(); err != nil || v != (out{}) {
		t.Errorf("Value() of a failure turned into a success = %+v, %v; want the zero value", v, err)
	}
	if panicked.Status != tasks.StatusFailed || len(panicked.Errors) != 1 || panicked.Errors[0].Type != "panic" ||
		!strings.Contains(panicked.Errors[0].Message, "middleware panics on purpose") {
		t.Errorf("a panicking middleware: status %s, errors %+v; want FAILED with the panic recorded", panicked.Status, panicked.Errors)
	}
	if after.Status != tasks.StatusSuccessful {
		t.Errorf("a task after the panic: status %s, want SUCCESSFUL", after.Status)
	}
}

// testEnqueueMiddlewareError: an error from enqueue middleware is returned
// by Enqueue (matchable with errors.Is) and nothing is stored.
func testEnqueueMiddlewareError(t *testing.T, f Factory) {
	errRefused := errors.New("backendtest: refused by middleware")
	var seen []string
	mw := tasks.EnqueueMiddlewareFunc(func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
		for _, r := range reqs {
			seen = append(seen, r.ID)
		}
		return nil, errRefused
	})
	e := newEnv(t, f, tasks.WithMiddleware(mw))
	res, err := e.task().Enqueue(e.ctx, args{Mode: modeOK})
	if !errors.Is(err, errRefused) || res != nil {
		t.Fatalf("Enqueue = %v, %v; want nil and an error matching the middleware's", res, err)
	}
	if len(seen) != 1 {
		t.Fatalf("the middleware saw %d requests, want 1", len(seen))
	}
	e.wantNotStored(seen[0])
	e.wantNoSignals()
}

// testMetadata: metadata set with WithMetadata (merged over Using calls)
// and by enqueue middleware is on the handle, stored, returned by
// GetResult, given to the task (TaskContext.Metadata) and kept in the
// finished result; each task of a batch has its own.
func testMetadata(t *testing.T, f Factory) {
	var mu sync.Mutex
	seen := map[string]map[string]string{}
	mw := tasks.Middleware(metaMiddleware{seen: seen, mu: &mu})
	e := newEnv(t, f, tasks.WithMiddleware(mw))
	odd := map[string]string{"ключ": "значение", `quote"s`: "line\nbreak <b>&amp;</b>", "empty": ""}
	task := e.task(tasks.WithMetadata(map[string]string{"a": "1", "b": "old"})).
		Using(tasks.WithMetadata(map[string]string{"b": "2"}), tasks.WithMetadata(odd))
	want := map[string]string{"a": "1", "b": "2", "added": "0"}
	for k, v := range odd {
		want[k] = v
	}
	one := e.enqueue(task, args{Mode: modeOK})
	if d := cmp.Diff(want, one.Metadata); d != "" {
		t.Errorf("metadata on the handle (-want +got):\n%s", d)
	}
	many, err := task.EnqueueMany(e.ctx, []args{{Mode: modeOK, N: 1}, {Mode: modeOK, N: 2}})
	if err != nil {
		t.Fatalf("EnqueueMany: %v", err)
	}
	wantMany := func(i int) map[string]string {
		w := map[string]string{}
		for k, v := range want {
			w[k] = v
		}
		w["added"] = fmt.Sprint(i)
		return w
	}
	if e.has(tasks.CanGetResult) && !e.inline() {
		for i, r := range append([]*tasks.Result[out]{one}, many...) {
			raw, err := e.h.Backend.GetResult(e.ctx, r.ID)
			if err != nil {
				t.Fatalf("GetResult(%s): %v", r.ID, err)
			}
			if d := cmp.Diff(wantMany(max(i-1, 0)), raw.Metadata); d != "" {
				t.Errorf("stored metadata of task %d (-want +got):\n%s", i, d)
			}
		}
	}
	for i, r := range append([]*tasks.Result[out]{one}, many...) {
		e.finish(r)
		w := wantMany(max(i-1, 0))
		if d := cmp.Diff(w, r.Metadata); d != "" {
			t.Errorf("metadata of finished task %d (-want +got):\n%s", i, d)
		}
		mu.Lock()
		got := seen[r.ID]
		mu.Unlock()
		if d := cmp.Diff(w, got); d != "" {
			t.Errorf("metadata in the TaskContext of task %d (-want +got):\n%s", i, d)
		}
	}
	plain := e.enqueue(e.task(), args{Mode: modeOK})
	e.finish(plain)
	if d := cmp.Diff(map[string]string{"added": "0"}, plain.Metadata); d != "" {
		t.Errorf("metadata of a task with middleware metadata only (-want +got):\n%s", d)
	}
}

// metaMiddleware numbers the requests of each enqueue in their metadata
// ("added") and records the metadata each attempt sees.
type metaMiddleware struct {
	mu   *sync.Mutex
	seen map[string]map[string]string
}

func (m metaMiddleware) Enqueue(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
	for i, r := range reqs {
		r.SetMetadata("added", fmt.Sprint(i))
	}
	return next(ctx, reqs)
}

func (m metaMiddleware) Execute(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
	tc, _ := tasks.FromContext(ctx)
	m.mu.Lock()
	m.seen[x.ResultID] = tc.Metadata
	m.mu.Unlock()
	return next(ctx)
}

// testInvalidMetadata: metadata that cannot be stored is an
// ErrInvalidTask at enqueue, whether the caller or middleware set it, and
// nothing is stored.
func testInvalidMetadata(t *testing.T, f Factory) {
	mw := tasks.EnqueueMiddlewareFunc(func(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
		for _, r := range reqs {
			if r.Metadata["break"] == "yes" {
				r.SetMetadata("", "empty key")
			}
		}
		return next(ctx, reqs)
	})
	e := newEnv(t, f, tasks.WithMiddleware(mw))
	tooMany := map[string]string{}
	for i := range tasks.MaxMetadataEntries + 1 {
		tooMany[fmt.Sprint(i)] = "x"
	}
	cases := []struct {
		name string
		md   map[string]string
	}{
		{"empty key", map[string]string{"": "x"}},
		{"invalid UTF-8", map[string]string{"k": "\xff"}},
		{"too many entries", tooMany},
		{"too long", map[string]string{"k": strings.Repeat("x", tasks.MaxMetadataBytes)}},
		{"empty key set by middleware", map[string]string{"break": "yes"}},
	}
	for _, c := range cases {
		res, err := e.task(tasks.WithMetadata(c.md)).Enqueue(e.ctx, args{Mode: modeOK})
		if !errors.Is(err, tasks.ErrInvalidTask) || res != nil {
			t.Errorf("%s: Enqueue = %v, %v; want an error matching ErrInvalidTask", c.name, res, err)
		}
	}
	e.wantNoSignals()
}
