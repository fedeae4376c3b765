package workercmd_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

// --metrics-addr, in-process. The real process on both dialects, with the
// database going away, is in cmd/dbworker (TestProcessMetrics,
// TestProcessReadyz).

// TestMetricsAddrUsage: a bad address is a one-line usage error naming
// the flag (and the variable when it came from there); an address that
// cannot be listened on is a runtime error naming the flag.
func TestMetricsAddrUsage(t *testing.T) {
	t.Parallel()
	dsn := dbtest.SQLiteDSN(t)
	for _, tc := range []struct {
		addr string
		want string
	}{
		{"9090", `--metrics-addr "9090": want host:port`},
		{"localhost", `--metrics-addr "localhost": want host:port`},
		{"127.0.0.1:http", `--metrics-addr "127.0.0.1:http": want host:port with a port number`},
		{"127.0.0.1:65536", `--metrics-addr "127.0.0.1:65536": want host:port with a port number`},
		{"[::1:9090", `--metrics-addr "[::1:9090"`},
	} {
		code, _, stderr := run(t, nil, "--database", dsn, "--batch", "--metrics-addr", tc.addr)
		if code != workercmd.ExitUsage {
			t.Errorf("--metrics-addr %q: exit %d; want %d", tc.addr, code, workercmd.ExitUsage)
		}
		oneLine(t, stderr, tc.want)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	code, _, stderr := run(t, nil, "--database", dsn, "--batch", "--log-level", "error", "--metrics-addr", busy.Addr().String())
	if code != workercmd.ExitError {
		t.Errorf("--metrics-addr in use: exit %d; want %d", code, workercmd.ExitError)
	}
	oneLine(t, stderr, "--metrics-addr "+busy.Addr().String(), "address already in use")
}

// TestMetricsAddrFromEnv: GOTASKS_METRICS_ADDR is the default of the flag,
// and a bad value says where it came from. (Not parallel: it sets the
// environment.)
func TestMetricsAddrFromEnv(t *testing.T) {
	t.Setenv(workercmd.MetricsAddrEnv, "nonsense")
	code, _, stderr := run(t, nil, "--database", dbtest.SQLiteDSN(t), "--batch")
	if code != workercmd.ExitUsage {
		t.Errorf("exit %d; want %d", code, workercmd.ExitUsage)
	}
	oneLine(t, stderr, `--metrics-addr "nonsense" (from GOTASKS_METRICS_ADDR)`)

	t.Setenv(workercmd.MetricsAddrEnv, "127.0.0.1:0")
	code, _, stderr = run(t, nil, "--database", dbtest.SQLiteDSN(t), "--batch")
	if code != workercmd.ExitOK || !strings.Contains(stderr, "gotasks: serving metrics and health checks") {
		t.Errorf("exit %d; want 0 and the metrics address logged; stderr:\n%s", code, stderr)
	}
}

var servingRe = regexp.MustCompile(`msg="gotasks: serving metrics and health checks" addr=(\S+)`)

// metricsBase waits (at most 10 s) for the command to log its metrics
// address in stderr and returns the base URL of its endpoints.
func metricsBase(t *testing.T, stderr *syncBuffer) string {
	t.Helper()
	var addr string
	waitUntil(t, 10*time.Second, "the metrics address in the log", func() bool {
		if m := servingRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return "http://" + addr
}

// httpGet returns the status and the body of url; status 0 and the error
// when it cannot be reached.
func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err.Error()
	}
	return resp.StatusCode, string(body)
}

// TestMetricsServer: the endpoints of a worker run in-process: /healthz,
// /readyz, /metrics with what Setup enqueued through the worker's backend
// counted; nothing is served once the command has returned. Without the
// flag, nothing is served and nothing logged.
func TestMetricsServer(t *testing.T) {
	t.Parallel()
	dsn := dbtest.SQLiteDSN(t)
	b := openBackend(t, dsn)
	cmd := workercmd.Command{Name: "dbworker", Setup: func(ctx context.Context, env workercmd.Env) (context.Context, error) {
		// Deferred: it stays in its queue, observed by the depth gauges.
		_, err := exampletasks.Sum.Using(tasks.WithBackend(env.Backend.Name()), tasks.WithDelay(time.Hour)).Enqueue(ctx, []int{1})
		return ctx, err
	}}
	sig := make(chan os.Signal, 2)
	var stdout, stderr syncBuffer
	wait := runCmdAsync(t, cmd, sig, &stdout, &stderr, workerArgs(b, dsn, "--metrics-addr", "127.0.0.1:0")...)
	base := metricsBase(t, &stderr)
	get := func(path string) (int, string) { return httpGet(base + path) }
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	waitUntil(t, 10*time.Second, "/readyz to answer 200", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if code, _ := get("/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d; want 404", code)
	}
	resp, err := http.Post(base+"/readyz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /readyz: %d; want 405", resp.StatusCode)
	}
	code, metrics := get("/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, want := range []string{
		`gotasks_tasks_enqueued_total{backend="` + b.Name() + `"`,
		`gotasks_queue_depth{backend="` + b.Name() + `"`,
		"\ngo_goroutines ",
		"\nprocess_cpu_seconds_total ",
		`target_info{service_name="dbworker"`,
		`promhttp_metric_handler_requests_total{code="503"} 0`,
		`promhttp_metric_handler_errors_total{cause="gathering"} 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	sig <- os.Interrupt
	if code := wait(); code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
	if code, _ := get("/healthz"); code != 0 {
		t.Errorf("/healthz after the command returned: %d; want no answer", code)
	}

	code, _, logs := run(t, nil, workerArgs(b, dsn, "--batch")...)
	if code != workercmd.ExitOK || strings.Contains(logs, "metrics") {
		t.Errorf("without --metrics-addr: exit %d; stderr:\n%s\nwant 0 and no metrics server", code, logs)
	}
}

// Log messages of the readiness changes (at WARN and INFO).
const (
	notReadyMsg   = `msg="gotasks: not ready (/readyz answers 503)"`
	readyAgainMsg = `msg="gotasks: ready again (/readyz answers 200)"`
)

// TestReadyzReasons: /readyz answers fixed lines, one per failed check,
// whatever the errors say; the full errors are logged once when the worker
// becomes not ready (not at each probe), and its return to ready once. The
// tables renamed away make the claims fail (the task table) and the schema
// look not current (the migrations table).
func TestReadyzReasons(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := dbtest.SQLiteDSN(t)
	b := openBackend(t, dsn)
	sig := make(chan os.Signal, 2)
	var stdout, stderr syncBuffer
	wait := runAsync(t, sig, &stdout, &stderr, workerArgs(b, dsn, "--metrics-addr", "127.0.0.1:0")...)
	base := metricsBase(t, &stderr)
	exec := func(q string) {
		t.Helper()
		if _, err := b.DB().ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	// readyz polls /readyz until it answers code with body (at most 20 s:
	// the worker's claims back off up to 5 s).
	readyz := func(code int, body string) {
		t.Helper()
		var gotCode int
		var gotBody string
		deadline := time.Now().Add(20 * time.Second)
		for {
			if gotCode, gotBody = httpGet(base + "/readyz"); gotCode == code && gotBody == body {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("/readyz: %d %q for 20 s; want %d %q", gotCode, gotBody, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	count := func(msg string) int { return strings.Count(stderr.String(), msg) }

	readyz(http.StatusOK, "ok\n")
	exec(`ALTER TABLE gotasks_task RENAME TO gotasks_task_away`)
	readyz(http.StatusServiceUnavailable, "worker: claims failing\n")
	exec(`ALTER TABLE gotasks_migrations RENAME TO gotasks_migrations_away`)
	readyz(http.StatusServiceUnavailable, "database: schema not current\nworker: claims failing\n")
	if n := count(notReadyMsg); n != 1 {
		t.Errorf("%d WARNs %s; want 1 (readiness changed once); stderr:\n%s", n, notReadyMsg, stderr.String())
	}
	// The full error is in the log, not in the answer.
	warn := logLine(stderr.String(), notReadyMsg)
	for _, want := range []string{"level=WARN", "worker_err=", "claiming tasks failed", "gotasks_task"} {
		if !strings.Contains(warn, want) {
			t.Errorf("the not-ready log line has no %q:\n%s", want, warn)
		}
	}
	exec(`ALTER TABLE gotasks_migrations_away RENAME TO gotasks_migrations`)
	exec(`ALTER TABLE gotasks_task_away RENAME TO gotasks_task`)
	readyz(http.StatusOK, "ok\n")
	readyz(http.StatusOK, "ok\n")
	if n, info := count(readyAgainMsg), logLine(stderr.String(), readyAgainMsg); n != 1 || !strings.Contains(info, "level=INFO") {
		t.Errorf("%d lines %s (%q); want 1 at INFO", n, readyAgainMsg, info)
	}
	if n := count(notReadyMsg); n != 1 {
		t.Errorf("%d WARNs %s after the recovery; want still 1", n, notReadyMsg)
	}

	sig <- os.Interrupt
	if code := wait(); code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
}

// logLine returns the first line of logs that contains msg, or "".
func logLine(logs, msg string) string {
	for l := range strings.Lines(logs) {
		if strings.Contains(l, msg) {
			return l
		}
	}
	return ""
}

// TestMetricsPartialResource: a malformed OTEL_RESOURCE_ATTRIBUTES (an
// entry without "=") is a WARN, not a failed start: target_info has the
// attributes that could be read. (Not parallel: it sets the environment.)
func TestMetricsPartialResource(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=staging,malformed")
	dsn := dbtest.SQLiteDSN(t)
	b := openBackend(t, dsn)
	sig := make(chan os.Signal, 2)
	var stdout, stderr syncBuffer
	wait := runAsync(t, sig, &stdout, &stderr, workerArgs(b, dsn, "--metrics-addr", "127.0.0.1:0")...)
	base := metricsBase(t, &stderr)
	code, metrics := httpGet(base + "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %q", code, metrics)
	}
	info := logLine(metrics, "target_info{")
	for _, want := range []string{`service_name="dbworker"`, `deployment_environment="staging"`} {
		if !strings.Contains(info, want) {
			t.Errorf("target_info has no %s: %q", want, info)
		}
	}
	warn := logLine(stderr.String(), "gotasks: metrics resource")
	for _, want := range []string{"level=WARN", "partial resource", "malformed"} {
		if !strings.Contains(warn, want) {
			t.Errorf("the resource's log line has no %q: %q", want, warn)
		}
	}
	sig <- os.Interrupt
	if code := wait(); code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr.String())
	}
}

// spanOf returns the trace and span ids in the task's context.
var spanOf = tasks.Define("workercmd_test.span", func(ctx context.Context, _ struct{}) (spanIDs, error) {
	sc := trace.SpanContextFromContext(ctx)
	return spanIDs{Trace: sc.TraceID().String(), Span: sc.SpanID().String()}, nil
}, tasks.WithMaxAttempts(1))

// spanIDs are the ids of a span.
type spanIDs struct{ Trace, Span string }

// TestMetricsKeepTheTraceContext: the metrics middleware of --metrics-addr
// leaves the attempt's context alone: a task sees the consumer span of the
// binary's own tracing middleware (tasks.Use), not the trace context stored
// with the task (the producer span). (Not parallel: tasks.Use is
// process-wide.)
func TestMetricsKeepTheTraceContext(t *testing.T) {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(ctx) })
	mw, err := oteltasks.New(oteltasks.WithTracerProvider(tp), oteltasks.WithMeterProvider(metricnoop.NewMeterProvider()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = mw.Close() })
	t.Cleanup(tasks.Use(mw))

	dsn := dbtest.SQLiteDSN(t)
	b := openBackend(t, dsn)
	r, err := spanOf.Using(tasks.WithBackend(b.Name())).Enqueue(ctx, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := run(t, nil, workerArgs(b, dsn, "--batch", "--metrics-addr", "127.0.0.1:0")...); code != workercmd.ExitOK {
		t.Fatalf("exit %d; stderr:\n%s", code, stderr)
	}
	if err := r.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r.Value()
	if err != nil {
		t.Fatal(err)
	}
	var producer, consumer []spanIDs
	for _, s := range rec.Ended() {
		ids := spanIDs{Trace: s.SpanContext().TraceID().String(), Span: s.SpanContext().SpanID().String()}
		switch s.SpanKind() {
		case trace.SpanKindProducer:
			producer = append(producer, ids)
		case trace.SpanKindConsumer:
			consumer = append(consumer, ids)
		}
	}
	if len(producer) != 1 || len(consumer) != 1 {
		t.Fatalf("%d producer and %d consumer spans; want one each", len(producer), len(consumer))
	}
	if diff := cmp.Diff(consumer[0], got); diff != "" {
		t.Errorf("the task's span (-consumer span +got; the producer span is %v):\n%s", producer[0], diff)
	}
}
