// Package backendtest is the conformance suite that every gotasks backend
// runs (SPEC §4: "the same task, args and options must behave the same on
// every backend, up to what its flags say it lacks").
//
// A backend's test file provides a Factory and calls Run:
//
//	func TestConformance(t *testing.T) {
//		backendtest.Run(t, func(t *testing.T, opts ...tasks.BackendOption) *backendtest.Harness {
//			b := dummy.New(opts...)
//			return &backendtest.Harness{
//				Backend: b,
//				Drain: func(ctx context.Context) error { _, err := b.RunReady(ctx); return err },
//			}
//		})
//	}
//
// Every subtest calls the factory itself, with a backend name of its own
// (tasks.WithName, first among opts), registers the backend under that name
// for the duration of the subtest, and runs in parallel with the others.
// For each capability the backend claims the suite checks the observable
// behaviour; for each it does not claim, that the option is rejected with
// tasks.ErrInvalidTask or the operation fails with tasks.ErrNotSupported.
//
// The tasks the suite enqueues are defined by this package under names that
// start with "backendtest.", so a test binary that imports it can run them.
package backendtest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// Harness is what a backend gives the suite.
type Harness struct {
	// Backend is a fresh backend, already configured with the options passed
	// to the factory (its name among them). The suite registers it.
	Backend tasks.Backend

	// Drain runs every READY task that is due until none is left, one at a
	// time in claim order (the suite checks priority order through the
	// order of TaskStarted signals), retries that are due at once included,
	// and returns when they have finished and their TaskFinished signals
	// have been sent. Tasks deferred into the future are left alone. It is
	// nil for backends that run tasks inline during Enqueue (immediate).
	// Where a task calls runtime.Goexit, the suite calls Drain (or Enqueue,
	// for an inline backend) in a goroutine of its own, which may then exit
	// instead of returning.
	Drain func(ctx context.Context) error

	// BeginTx, when non-nil, starts a real transaction of the backend's own
	// database and returns a context carrying it (see tasks.ContextWithTx
	// and tasks.TxJoiner: the backend's JoinsTx must report true for it),
	// plus functions that commit it (and then run the commit hooks) and
	// roll it back. The suite uses it to check CanTransact.
	BeginTx func(ctx context.Context) (txCtx context.Context, commit func() error, rollback func() error)
}

// Factory returns a new harness for a backend configured with opts. It is
// called once per subtest, with t the subtest; opts always starts with
// tasks.WithName. The factory registers its own cleanups with t.Cleanup.
type Factory func(t *testing.T, opts ...tasks.BackendOption) *Harness

// Run runs the conformance suite against the backends that factory makes.
// Each check is a parallel subtest of t.
func Run(t *testing.T, factory Factory) {
	t.Helper()
	if factory == nil {
		t.Fatal("backendtest.Run: nil factory")
	}
	for _, c := range suite {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, factory)
		})
	}
}

// The modes of the suite's work task.
const (
	modeOK        = "ok"                   // returns out{Echo: Text, N: 2*N}
	modeFail      = "fail"                 // returns a *failure wrapped by fmt.Errorf
	modePanic     = "panic"                // panics
	modeSleep     = "sleep-until-ctx-done" // blocks until its context is done
	modeFlaky     = "flaky"                // fails on attempt 1 (per Key), succeeds after
	modeBadReturn = "bad-return"           // returns a value that does not encode (NaN)
	modeTypedNil  = "typed-nil"            // returns a nil *failure as its error
	modeGoexit    = "goexit"               // calls runtime.Goexit, as testing.T.FailNow does
	modeContext   = "context"              // records its tasks.TaskContext (per Key); fails while attempt < N
	modeNoRetry   = "no-retry"             // returns tasks.NoRetry of a wrapped *failure
	modeSnooze    = "snooze"               // snoozes N seconds on attempt 1 (per Key), succeeds after
	modeFollowUp  = "follow-up"            // enqueues otherTask (no backend of its own; delayed N seconds), returns its id
	modeTrace     = "trace"                // appends "task" to the *traceLog in its context (see middleware.go)
)

// args are the arguments of the suite's tasks.
type args struct {
	Mode string  `json:"mode"`
	Key  string  `json:"key,omitempty"`
	Text string  `json:"text,omitempty"`
	N    int     `json:"n,omitempty"`
	F    float64 `json:"f,omitempty"`
}

// out is the return value of the suite's tasks.
type out struct {
	Echo string  `json:"echo"`
	N    int     `json:"n"`
	F    float64 `json:"f,omitempty"`
}

// failure is the error type of modeFail and of the first attempt of
// modeFlaky; results record it as "*backendtest.failure".
type failure struct{ Text string }

func (f *failure) Error() string { return "backendtest: failing on purpose: " + f.Text }

const failureType = "*backendtest.failure"

// flakyAttempts counts the attempts of modeFlaky and modeSnooze per
// args.Key.
var flakyAttempts sync.Map // string → *atomic.Int32

// seenContexts records the task contexts of modeContext per args.Key.
var seenContexts sync.Map // string → *contextLog

// contextLog is what modeContext saw, attempt by attempt.
type contextLog struct {
	mu   sync.Mutex
	seen []seenContext
}

// seenContext is one attempt's view of its context.
type seenContext struct {
	tc      tasks.TaskContext
	ok      bool
	logger  bool // tasks.Logger(ctx) is tc.Logger
	running string
}

func (l *contextLog) all() []seenContext {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]seenContext(nil), l.seen...)
}

func work(ctx context.Context, a args) (out, error) {
	switch a.Mode {
	case modeOK:
		return out{Echo: a.Text, N: 2 * a.N}, nil
	case modeFail:
		return out{}, fmt.Errorf("mode fail: %w", &failure{Text: a.Text})
	case modePanic:
		panic("backendtest: panic on purpose: " + a.Text)
	case modeSleep:
		select {
		case <-ctx.Done():
			return out{}, ctx.Err()
		case <-time.After(10 * time.Second):
			return out{}, errors.New("backendtest: the task's context was never cancelled")
		}
	case modeFlaky:
		v, _ := flakyAttempts.LoadOrStore(a.Key, new(atomic.Int32))
		n := v.(*atomic.Int32).Add(1)
		if n == 1 {
			return out{}, &failure{Text: "flaky attempt 1"}
		}
		return out{Echo: a.Text, N: int(n)}, nil
	case modeBadReturn:
		return out{Echo: a.Text, F: math.NaN()}, nil
	case modeTypedNil:
		var f *failure // not a nil error: its Error method dereferences it
		return out{}, f
	case modeGoexit:
		runtime.Goexit()
	case modeContext:
		tc, ok := tasks.FromContext(ctx)
		sc := seenContext{tc: tc, ok: ok, logger: ok && tasks.Logger(ctx) == tc.Logger}
		if b := tc.Backend(); b != nil {
			sc.running = b.Name()
		}
		v, _ := seenContexts.LoadOrStore(a.Key, &contextLog{})
		l := v.(*contextLog)
		l.mu.Lock()
		l.seen = append(l.seen, sc)
		l.mu.Unlock()
		if tc.Attempt < a.N {
			return out{}, &failure{Text: fmt.Sprintf("context attempt %d", tc.Attempt)}
		}
		return out{Echo: a.Text, N: tc.Attempt}, nil
	case modeNoRetry:
		return out{}, tasks.NoRetry(fmt.Errorf("mode no-retry: %w", &failure{Text: a.Text}))
	case modeSnooze:
		v, _ := flakyAttempts.LoadOrStore(a.Key, new(atomic.Int32))
		if v.(*atomic.Int32).Add(1) == 1 {
			return out{}, fmt.Errorf("not yet: %w", tasks.Snooze(time.Duration(a.N)*time.Second))
		}
		return out{Echo: a.Text, N: a.N}, nil
	case modeTrace:
		l, ok := ctx.Value(traceKey{}).(*traceLog)
		if !ok {
			return out{}, errors.New("backendtest: the middleware's context value did not reach the task")
		}
		tc, _ := tasks.FromContext(ctx)
		l.add("task " + tc.Metadata["backendtest.key"])
		return out{Echo: a.Text}, nil
	case modeFollowUp:
		task := otherTask // no WithBackend: the backend running this task
		if a.N > 0 {
			task = task.Using(tasks.WithDelay(time.Duration(a.N) * time.Second))
		}
		res, err := task.Enqueue(ctx, args{Mode: modeOK, Text: "follow-up"})
		if err != nil {
			return out{}, err
		}
		return out{Echo: res.ID}, nil
	}
	return out{}, fmt.Errorf("backendtest: unknown mode %q", a.Mode)
}

// chanArgs, funcArgs and oneWayArgs do not survive a JSON round trip.
type chanArgs struct{ Ch chan int }

type funcArgs struct{ Fn func() }

// oneWayArgs encodes to a JSON string that does not decode back into it.
type oneWayArgs struct{ X int }

func (oneWayArgs) MarshalJSON() ([]byte, error) { return []byte(`"one-way"`), nil }

var (
	workTask   = tasks.Define("backendtest.work", work)
	otherTask  = tasks.Define("backendtest.other", func(context.Context, args) (out, error) { return out{Echo: "other"}, nil })
	chanTask   = tasks.Define("backendtest.chan-args", func(context.Context, chanArgs) (out, error) { return out{}, nil })
	funcTask   = tasks.Define("backendtest.func-args", func(context.Context, funcArgs) (out, error) { return out{}, nil })
	oneWayTask = tasks.Define("backendtest.one-way-args", func(context.Context, oneWayArgs) (out, error) { return out{}, nil })
)

// Signal names as recorded.
var (
	sigEnqueued = signals.TaskEnqueued.Name()
	sigStarted  = signals.TaskStarted.Name()
	sigFinished = signals.TaskFinished.Name()
)

// runToken makes backend names unique across test processes that share a
// database.
var runToken = fmt.Sprintf("%08x", uint32(time.Now().UnixNano())^uint32(fnvHash(tasks.NewID())))

func fnvHash(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// backendName derives a backend name (at most 64 bytes) from t.Name().
func backendName(t *testing.T) string {
	var b strings.Builder
	for _, r := range "bt-" + t.Name() {
		switch {
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9', r == '-', r == '_', r == '.':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	base := b.String()
	if len(base) > 46 {
		base = fmt.Sprintf("%s-%08x", base[:37], fnvHash(t.Name()))
	}
	return base + "-" + runToken
}

var keySeq atomic.Int64

// env is one subtest's backend, with a recorder of its signals.
type env struct {
	t    *testing.T
	h    *Harness
	name string
	caps tasks.Capabilities
	rec  *recorder
	ctx  context.Context
}

// newEnv calls the factory with a fresh name and opts, registers the
// backend and records its signals.
func newEnv(t *testing.T, factory Factory, opts ...tasks.BackendOption) *env {
	t.Helper()
	name := backendName(t)
	h := factory(t, append([]tasks.BackendOption{tasks.WithName(name)}, opts...)...)
	if h == nil || h.Backend == nil {
		t.Fatal("the factory returned no backend")
	}
	if got := h.Backend.Name(); got != name {
		t.Fatalf("Backend.Name() = %q, want %q (the factory must apply tasks.WithName)", got, name)
	}
	e := &env{t: t, h: h, name: name, caps: h.Backend.Capabilities(), rec: newRecorder(t, name)}
	t.Cleanup(tasks.RegisterBackend(h.Backend))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	e.ctx = ctx
	return e
}

func (e *env) has(c tasks.Capabilities) bool { return e.caps.Has(c) }

// inline reports whether the backend runs tasks during Enqueue.
func (e *env) inline() bool { return e.h.Drain == nil }

// task returns the work task bound to the backend, with opts.
func (e *env) task(opts ...tasks.Option) *tasks.Task[args, out] {
	return workTask.Using(append([]tasks.Option{tasks.WithBackend(e.name)}, opts...)...)
}

// once returns options that make a failing task fail at its first attempt.
func (e *env) once() []tasks.Option {
	if e.has(tasks.CanRetry) {
		return []tasks.Option{tasks.WithMaxAttempts(1)}
	}
	return nil
}

func (e *env) key() string { return fmt.Sprintf("%s#%d", e.name, keySeq.Add(1)) }

func (e *env) enqueue(task *tasks.Task[args, out], a args) *tasks.Result[out] {
	e.t.Helper()
	res, err := task.Enqueue(e.ctx, a)
	if err != nil {
		e.t.Fatalf("Enqueue(%+v): %v", a, err)
	}
	if res == nil {
		e.t.Fatalf("Enqueue(%+v) returned a nil result and no error", a)
	}
	return res
}

func (e *env) drain() {
	e.t.Helper()
	if e.h.Drain == nil {
		return
	}
	if err := e.h.Drain(e.ctx); err != nil {
		e.t.Fatalf("Drain: %v", err)
	}
}

// lookup returns the stored result id: by GetResult where the backend has
// it, else the result of the last signal sent for id.
func (e *env) lookup(id string) (*tasks.RawResult, error) {
	if e.has(tasks.CanGetResult) {
		return e.h.Backend.GetResult(e.ctx, id)
	}
	if r := e.rec.last(id); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("no signal for %s: %w", id, tasks.ErrResultNotFound)
}

func (e *env) mustLookup(id string) *tasks.RawResult {
	e.t.Helper()
	r, err := e.lookup(id)
	if err != nil {
		e.t.Fatalf("get result %s: %v", id, err)
	}
	return r
}

// refresh updates res from the backend (or from its last signal).
func (e *env) refresh(res *tasks.Result[out]) {
	e.t.Helper()
	if e.has(tasks.CanGetResult) {
		if err := res.Refresh(e.ctx); err != nil {
			e.t.Fatalf("Refresh: %v", err)
		}
		return
	}
	res.RawResult = *e.mustLookup(res.ID)
}

// finish drains the backend (if it has Drain) and refreshes res, which
// must then be finished.
func (e *env) finish(res *tasks.Result[out]) {
	e.t.Helper()
	e.drain()
	e.refresh(res)
	if !res.Status.Finished() {
		e.t.Fatalf("result %s is %s after Drain, want a final status", res.ID, res.Status)
	}
}

// wantNotStored checks that id is unknown to the backend and has no signal.
func (e *env) wantNotStored(id string) {
	e.t.Helper()
	if e.has(tasks.CanGetResult) {
		if r, err := e.h.Backend.GetResult(e.ctx, id); !errors.Is(err, tasks.ErrResultNotFound) {
			e.t.Errorf("GetResult(%s) = %v, %v; want an error matching ErrResultNotFound", id, r, err)
		}
	}
	if s := e.rec.seq(id); len(s) > 0 {
		e.t.Errorf("signals for %s that should not exist: %v", id, s)
	}
}

// wantNoSignals checks that the backend sent no signal at all.
func (e *env) wantNoSignals() {
	e.t.Helper()
	if evs := e.rec.all(); len(evs) > 0 {
		e.t.Errorf("the backend sent %d signals, want none; first: %s %s %s", len(evs), evs[0].signal, evs[0].result.ID, evs[0].result.Status)
	}
}

// event is one recorded signal.
type event struct {
	signal string
	result *tasks.RawResult
}

// recorder records the signals whose sender is one backend.
type recorder struct {
	mu     sync.Mutex
	events []event
}

func newRecorder(t *testing.T, sender string) *recorder {
	r := &recorder{}
	for _, s := range []*signals.Signal{signals.TaskEnqueued, signals.TaskStarted, signals.TaskFinished} {
		name := s.Name()
		t.Cleanup(s.Connect(func(_ context.Context, from string, res *tasks.RawResult) {
			if from != sender {
				return
			}
			r.mu.Lock()
			r.events = append(r.events, event{signal: name, result: res})
			r.mu.Unlock()
		}))
	}
	return r
}

func (r *recorder) all() []event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]event(nil), r.events...)
}

// seq returns "signal STATUS" for every signal of id, in order.
func (r *recorder) seq(id string) []string {
	var out []string
	for _, ev := range r.all() {
		if ev.result.ID == id {
			out = append(out, ev.signal+" "+string(ev.result.Status))
		}
	}
	return out
}

// count returns how many signals named signal were sent for id ("" = any).
func (r *recorder) count(signal, id string) int {
	n := 0
	for _, ev := range r.all() {
		if ev.signal == signal && (id == "" || ev.result.ID == id) {
			n++
		}
	}
	return n
}

// ids returns the ids of the signals named signal, in order.
func (r *recorder) ids(signal string) []string {
	var out []string
	for _, ev := range r.all() {
		if ev.signal == signal {
			out = append(out, ev.result.ID)
		}
	}
	return out
}

// last returns the result of the last signal for id, or nil.
func (r *recorder) last(id string) *tasks.RawResult {
	evs := r.all()
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].result.ID == id {
			return evs[i].result.Clone()
		}
	}
	return nil
}

// eventually polls cond until it holds, failing t after a deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// clockPast waits until the wall clock is past tm, so that the next enqueue
// gets a strictly later time.
func clockPast(t *testing.T, tm time.Time) {
	t.Helper()
	eventually(t, "the clock to advance", func() bool { return time.Now().After(tm.Add(time.Millisecond)) })
}

// wantUTC checks that tm is set and in UTC.
func wantUTC(t *testing.T, field string, tm *time.Time) {
	t.Helper()
	switch {
	case tm == nil || tm.IsZero():
		t.Errorf("%s is not set", field)
	case tm.Location() != time.UTC:
		t.Errorf("%s = %v is in %v, want UTC", field, *tm, tm.Location())
	}
}

// wantErrIs checks errors.Is(err, target).
func wantErrIs(t *testing.T, what string, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Errorf("%s: err = %v, want an error matching %q", what, err, target)
	}
}
