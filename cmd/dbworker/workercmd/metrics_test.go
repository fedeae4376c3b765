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

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/internal/dbtest"
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
	var addr string
	waitUntil(t, 10*time.Second, "the metrics address in the log", func() bool {
		if m := servingRe.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := get("/healthz"); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz: %d %q", code, body)
	}
	waitUntil(t, 10*time.Second, "/readyz to answer 200", func() bool { code, _ := get("/readyz"); return code == http.StatusOK })
	if code, _ := get("/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d; want 404", code)
	}
	resp, err := http.Post("http://"+addr+"/readyz", "text/plain", nil)
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
