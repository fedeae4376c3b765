package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// The worker's metrics and health endpoints (--metrics-addr), on the real
// example worker process.

// metricsAddrRe finds the address the worker logs when it serves metrics
// (text logs).
var metricsAddrRe = regexp.MustCompile(`msg="gotasks: serving metrics and health checks" addr=(\S+)`)

// metricsBase waits (at most 20 s) for the worker to log its metrics
// address and returns the base URL.
func metricsBase(t *testing.T, p *proc) string {
	t.Helper()
	var addr string
	waitUntil(t, 20*time.Second, "the metrics address in the log", func() bool {
		select {
		case <-p.done:
			t.Fatalf("the worker exited before it served metrics; stderr:\n%s", p.stderr.String())
		default:
		}
		if m := metricsAddrRe.FindStringSubmatch(p.stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	return "http://" + addr
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

// get returns the status and body of url; status 0 when it cannot be
// reached.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := httpClient.Get(url)
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

// waitStatus polls url until it answers code (at most timeout) and returns
// the body.
func waitStatus(t *testing.T, url string, code int, timeout time.Duration) string {
	t.Helper()
	var got int
	var body string
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if got, body = get(t, url); got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d %q for %v; want %d", url, got, body, timeout, code)
		}
		<-tick.C
	}
}

// sampleSum scrapes base/metrics and sums the samples of the metric name
// whose labels include every one of labels (name="value" pairs).
func sampleSum(t *testing.T, base, name string, labels ...string) float64 {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	return sumSamples(t, body, name, labels...)
}

// sumSamples sums the samples of name in a Prometheus text exposition
// whose labels include each of labels.
func sumSamples(t *testing.T, exposition, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
lines:
	for l := range strings.Lines(exposition) {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		series, value, ok := cutLast(l, " ")
		if !ok {
			t.Fatalf("unreadable sample %q", l)
		}
		metric, lbls, _ := strings.Cut(series, "{")
		if metric != name {
			continue
		}
		for _, want := range labels {
			if !strings.Contains(lbls, want) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("sample %q: %v", l, err)
		}
		sum += v
	}
	return sum
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// TestProcessMetrics: with --metrics-addr on loopback, the example worker
// serves /healthz and /readyz, and /metrics in the Prometheus text format
// with the task counters moving as it runs tasks; it stops by itself at the
// first signal, server included.
func TestProcessMetrics(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		b := openBackend(t, dsn)
		p := start(t, exampleBinary, workerArgs(b, dsn, "--metrics-addr", "127.0.0.1:0")...)
		base := metricsBase(t, p)

		if code, body := get(t, base+"/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("/healthz: %d %q; want 200 \"ok\\n\"", code, body)
		}
		waitStatus(t, base+"/readyz", http.StatusOK, 10*time.Second)

		backend := `backend="` + b.Name() + `"`
		success := []string{backend, `task="examples.sum"`, `outcome="success"`}
		before := sampleSum(t, base, "gotasks_attempts_finished_total", success...)
		const n = 5
		sum := exampletasks.Sum.Using(tasks.WithBackend(b.Name()))
		for i := range n {
			if _, err := sum.Enqueue(ctx, []int{i, 1}); err != nil {
				t.Fatal(err)
			}
		}
		// A deferred task keeps its queue observed (scheduled).
		if _, err := sum.Using(tasks.WithDelay(time.Hour)).Enqueue(ctx, []int{1}); err != nil {
			t.Fatal(err)
		}
		failing, err := exampletasks.Divide.Using(tasks.WithBackend(b.Name()), tasks.WithMaxAttempts(1)).Enqueue(ctx, [2]int{1, 0})
		if err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 20*time.Second, "the finished attempts to be counted", func() bool {
			return sampleSum(t, base, "gotasks_attempts_finished_total", success...) == before+n &&
				sampleSum(t, base, "gotasks_attempts_finished_total", backend, `outcome="failure"`) == 1
		})
		// The queue gauges may lag (oteltasks serves a reading of the
		// depths to the scrapes of the next second): wait for one that
		// sees the deferred task alone.
		var exposition string
		waitUntil(t, 20*time.Second, "the queue gauges to show the deferred task alone", func() bool {
			code, body := get(t, base+"/metrics")
			if code != http.StatusOK {
				t.Fatalf("/metrics: %d %q", code, body)
			}
			exposition = body
			depth := func(state string) float64 {
				return sumSamples(t, body, "gotasks_queue_depth", backend, `queue="default"`, `state="`+state+`"`)
			}
			return strings.Contains(body, "\ngotasks_queue_depth{") &&
				depth("scheduled") == 1 && depth("ready") == 0 && depth("running") == 0
		})
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"gotasks_attempts_started_total", []string{backend, `task="examples.sum"`}, n},
			{"gotasks_attempt_duration_seconds_count", success, n},
			{"gotasks_attempt_wait_seconds_count", []string{backend, `task="examples.sum"`}, n},
			{"gotasks_queue_depth", []string{backend, `queue="default"`, `state="scheduled"`}, 1},
			{"gotasks_queue_depth", []string{backend, `queue="default"`, `state="ready"`}, 0},
			{"gotasks_queue_age_seconds", []string{backend, `queue="default"`}, 0},
		} {
			if got := sumSamples(t, exposition, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v; want %v", c.name, c.labels, got, c.want)
			}
		}
		for _, family := range []string{"gotasks_queue_depth{", "gotasks_queue_age_seconds{", "go_goroutines", "process_cpu_seconds_total"} {
			if !strings.Contains(exposition, "\n"+family) {
				t.Errorf("/metrics has no %s", family)
			}
		}
		if err := failing.Refresh(ctx); err != nil || failing.Status != tasks.StatusFailed {
			t.Errorf("divide by zero: %s, %v; want FAILED", failing.Status, err)
		}
		if testing.Verbose() {
			t.Logf("gotasks families:\n%s", familyNames(exposition))
		}

		p.signal(syscall.SIGTERM)
		if code := p.wait(); code != 0 {
			t.Fatalf("exit %d; want 0; stderr:\n%s", code, p.stderr.String())
		}
		if code, _ := get(t, base+"/healthz"); code != 0 {
			t.Errorf("/healthz after the worker exited: %d; want no answer", code)
		}
	})
}

// familyNames lists the # TYPE lines of the gotasks metrics.
func familyNames(exposition string) string {
	var out []string
	for l := range strings.Lines(exposition) {
		if strings.HasPrefix(l, "# TYPE gotasks_") || strings.HasPrefix(l, "# TYPE target_info") {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return strings.Join(out, "\n")
}

// TestProcessReadyz: /readyz on PostgreSQL follows the database. The
// worker reaches PostgreSQL through a TCP proxy the test owns: ready, then
// not ready (503, with fixed reasons that name neither the host, the user
// nor the database; the full error is logged once, at WARN) once the proxy
// and its connections are closed, then ready again (logged at INFO) once
// it listens again on the same port.
func TestProcessReadyz(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresDSN(t)
	b := openBackend(t, dsn) // migrates the schema
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	px := startProxy(t, u.Host)
	u.Host = px.addr
	workerDSN := u.String()
	p := start(t, exampleBinary, workerArgs(b, workerDSN, "--metrics-addr", "127.0.0.1:0")...)
	base := metricsBase(t, p)
	const (
		notReadyMsg   = `level=WARN msg="gotasks: not ready (/readyz answers 503)"`
		readyAgainMsg = `level=INFO msg="gotasks: ready again (/readyz answers 200)"`
	)

	waitStatus(t, base+"/readyz", http.StatusOK, 10*time.Second)
	t.Logf("ready; closing the proxy")
	px.close()
	body := waitStatus(t, base+"/readyz", http.StatusServiceUnavailable, 15*time.Second)
	// The worker's line comes once its claim has failed too.
	lines := strings.Split(strings.TrimSuffix(body, "\n"), "\n")
	if len(lines) == 2 && lines[1] == "worker: claims failing" {
		lines = lines[:1]
	}
	if diff := cmp.Diff([]string{"database: unreachable"}, lines); diff != "" {
		t.Errorf("/readyz with the database away says %q; want \"database: unreachable\" and maybe \"worker: claims failing\" (-want +got):\n%s", body, diff)
	}
	// What the log says instead: the driver's error, without the password.
	// (The process's stderr is copied to p.stderr as it comes.)
	warn := waitLogLine(t, p, notReadyMsg)
	if !strings.Contains(warn, "database_err=") || !strings.Contains(warn, "database unreachable") {
		t.Errorf("the not-ready log line has no database_err with the database's error:\n%s", warn)
	}
	if pw, ok := u.User.Password(); ok && strings.Contains(warn, pw) {
		t.Errorf("the not-ready log line shows the DSN's password:\n%s", warn)
	}
	if code, _ := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the database away: %d; want 200", code)
	}
	waitStatus(t, base+"/readyz", http.StatusServiceUnavailable, 5*time.Second) // another probe
	t.Logf("not ready: %q; reopening the proxy", body)
	px.reopen()
	// The worker's claims back off up to 5 s while the database is away.
	waitStatus(t, base+"/readyz", http.StatusOK, 20*time.Second)
	waitStatus(t, base+"/readyz", http.StatusOK, 5*time.Second)
	// Once the INFO is copied, so are the lines logged before it.
	waitLogLine(t, p, readyAgainMsg)
	for _, msg := range []string{notReadyMsg, readyAgainMsg} {
		if n := strings.Count(p.stderr.String(), msg); n != 1 {
			t.Errorf("%d lines %s; want 1 (one change each way); stderr:\n%s", n, msg, p.stderr.String())
		}
	}

	t.Logf("ready again")
	p.signal(syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Fatalf("exit %d; want 0; stderr:\n%s", code, p.stderr.String())
	}
}

// waitLogLine waits (at most 10 s) for a line of p's stderr that contains
// msg and returns the first one.
func waitLogLine(t *testing.T, p *proc, msg string) string {
	t.Helper()
	var line string
	waitUntil(t, 10*time.Second, "a log line "+msg, func() bool {
		for l := range strings.Lines(p.stderr.String()) {
			if strings.Contains(l, msg) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}

// tcpProxy forwards the connections it accepts on addr to upstream. close
// closes its listener and every connection; reopen listens on the same
// address again. Its goroutines end with close.
type tcpProxy struct {
	t        *testing.T
	upstream string
	addr     string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup // the accept loop and the copiers
}

// startProxy starts a proxy to upstream on a loopback port; it is closed
// when the test ends.
func startProxy(t *testing.T, upstream string) *tcpProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	px := &tcpProxy{t: t, upstream: upstream, addr: ln.Addr().String()}
	px.serve(ln)
	t.Cleanup(px.close)
	return px
}

func (px *tcpProxy) serve(ln net.Listener) {
	px.mu.Lock()
	px.ln, px.conns, px.closed = ln, map[net.Conn]struct{}{}, false
	px.mu.Unlock()
	px.wg.Add(1)
	go func() {
		defer px.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			up, err := net.DialTimeout("tcp", px.upstream, 5*time.Second)
			if err != nil {
				_ = c.Close()
				continue
			}
			if !px.track(c, up) {
				return
			}
			px.wg.Add(2)
			go px.pipe(c, up)
			go px.pipe(up, c)
		}
	}()
}

// track records a proxied pair; false (and both closed) when the proxy is
// closed.
func (px *tcpProxy) track(cs ...net.Conn) bool {
	px.mu.Lock()
	defer px.mu.Unlock()
	if px.closed {
		for _, c := range cs {
			_ = c.Close()
		}
		return false
	}
	for _, c := range cs {
		px.conns[c] = struct{}{}
	}
	return true
}

// pipe copies from src to dst, then closes both.
func (px *tcpProxy) pipe(dst, src net.Conn) {
	defer px.wg.Done()
	_, _ = io.Copy(dst, src)
	_ = dst.Close()
	_ = src.Close()
}

// close closes the listener and every proxied connection and waits for the
// proxy's goroutines. Closing a closed proxy does nothing.
func (px *tcpProxy) close() {
	px.mu.Lock()
	if px.closed {
		px.mu.Unlock()
		return
	}
	px.closed = true
	_ = px.ln.Close()
	for c := range px.conns {
		_ = c.Close()
	}
	px.mu.Unlock()
	px.wg.Wait()
}

// reopen listens on the proxy's address again (retrying for up to 5 s
// while the port is briefly unavailable).
func (px *tcpProxy) reopen() {
	px.t.Helper()
	var ln net.Listener
	var err error
	deadline := time.Now().Add(5 * time.Second)
	for {
		if ln, err = net.Listen("tcp", px.addr); err == nil {
			break
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			px.t.Fatalf("reopen the proxy on %s: %v", px.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	px.serve(ln)
}
