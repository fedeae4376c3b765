package workercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/gotasks/gotasks/backends/database"
)

// The pieces of the metrics server that the in-process and process tests
// cannot stage: every /readyz reason, the logging of readiness changes,
// and the bounds of /metrics.

// driverErr stands for a driver's message: it names the host, the user and
// the database, and it must not reach /readyz.
const driverErr = `failed to connect to host=db.internal user=app database=prod: password authentication failed (password s3cret)`

// TestReadyReasons: one fixed line per failed check, told apart with
// errors.Is, whatever the errors say.
func TestReadyReasons(t *testing.T) {
	t.Parallel()
	// checkErr wraps errs the way Backend.Check does.
	checkErr := func(errs ...error) error {
		format := "gotasks backend %q: %d problem(s): " + strings.TrimSuffix(strings.Repeat("%w; ", len(errs)), "; ")
		args := []any{"default", len(errs)}
		for _, e := range errs {
			args = append(args, e)
		}
		return fmt.Errorf(format, args...)
	}
	notReady := func(why error, more ...error) error {
		return fmt.Errorf("%w: %w%w", database.ErrNotReady, why, errors.Join(more...))
	}
	unreachable := fmt.Errorf("%w: postgres database: %s", database.ErrUnreachable, driverErr)
	for _, tc := range []struct {
		name               string
		checkErr, readyErr error
		want               []string
	}{
		{"ready", nil, nil, nil},
		{"not created", nil, errWorkerNotCreated, []string{"worker: not started"}},
		{"unreachable", checkErr(unreachable), nil, []string{"database: unreachable"}},
		{"schema", checkErr(fmt.Errorf("%w: 1 migration(s) pending (x) on the postgres database", database.ErrSchemaMissing)), nil,
			[]string{"database: schema not current"}},
		{"timed out", checkErr(fmt.Errorf("gotasks: check schema: %w", context.DeadlineExceeded)), nil,
			[]string{"database: check timed out"}},
		{"other", checkErr(errors.New(driverErr)), nil, []string{"database: check failed"}},
		{"not started", nil, notReady(database.ErrWorkerNotStarted), []string{"worker: not started"}},
		{"stopping", nil, notReady(database.ErrWorkerStopping), []string{"worker: stopping"}},
		{"claims", nil, notReady(database.ErrClaimFailed, unreachable), []string{"worker: claims failing"}},
		{"unknown", nil, errors.New(driverErr), []string{"worker: not ready"}},
		{"both", checkErr(unreachable), notReady(database.ErrClaimFailed, unreachable),
			[]string{"database: unreachable", "worker: claims failing"}},
	} {
		if diff := cmp.Diff(tc.want, readyReasons(tc.checkErr, tc.readyErr)); diff != "" {
			t.Errorf("%s: readyReasons(%v, %v) (-want +got):\n%s", tc.name, tc.checkErr, tc.readyErr, diff)
		}
	}
}

// record is a log record, its attributes as text.
type record struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

// recorder is a slog.Handler that keeps the records.
type recorder struct {
	mu      sync.Mutex
	records []record
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }

func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	out := record{Level: rec.Level, Msg: rec.Message}
	rec.Attrs(func(a slog.Attr) bool {
		if out.Attrs == nil {
			out.Attrs = map[string]string{}
		}
		out.Attrs[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	r.records = append(r.records, out)
	return nil
}

// take returns the records logged since the last take.
func (r *recorder) take() []record {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.records
	r.records = nil
	return out
}

// TestNoteReadiness: the changes of readiness are logged, the full errors
// at WARN (without the DSN's password) when a ready worker becomes not
// ready (at INFO when it is stopping) and at INFO when it is ready again;
// the start-up and the probes that change nothing are not.
func TestNoteReadiness(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	m := &metricsServer{log: slog.New(rec), secrets: secretsOf("postgres://app:s3cret@db.internal/prod")}
	unreachable := fmt.Errorf("%w: postgres database: %s", database.ErrUnreachable, driverErr)
	claims := fmt.Errorf("%w: %w: %w", database.ErrNotReady, database.ErrClaimFailed, unreachable)
	stopping := fmt.Errorf("%w: %w", database.ErrNotReady, database.ErrWorkerStopping)
	const (
		notReady   = "gotasks: not ready (/readyz answers 503)"
		readyAgain = "gotasks: ready again (/readyz answers 200)"
	)
	for i, step := range []struct {
		checkErr, readyErr error
		want               []record
	}{
		{nil, errWorkerNotCreated, nil}, // start-up
		{nil, nil, nil},                 // ready the first time
		{nil, nil, nil},
		{unreachable, nil, []record{{slog.LevelWarn, notReady, map[string]string{
			"database_err": strings.ReplaceAll(unreachable.Error(), "s3cret", "xxxxx")}}}},
		{unreachable, claims, nil}, // still not ready
		{nil, nil, []record{{slog.LevelInfo, readyAgain, nil}}},
		{nil, nil, nil},
		{nil, claims, []record{{slog.LevelWarn, notReady, map[string]string{
			"worker_err": strings.ReplaceAll(claims.Error(), "s3cret", "xxxxx")}}}},
		{nil, nil, []record{{slog.LevelInfo, readyAgain, nil}}},
		// A stop is no fault: INFO.
		{nil, stopping, []record{{slog.LevelInfo, notReady, map[string]string{"worker_err": stopping.Error()}}}},
	} {
		m.noteReadiness(step.checkErr, step.readyErr)
		if diff := cmp.Diff(step.want, rec.take()); diff != "" {
			t.Errorf("step %d (%v, %v): logs (-want +got):\n%s", i, step.checkErr, step.readyErr, diff)
		}
	}
}

// blockingCollector's Collect reports each call on entered and waits for
// release.
type blockingCollector struct {
	entered chan struct{}
	release chan struct{}
	desc    *prometheus.Desc
}

func newBlockingCollector() *blockingCollector {
	return &blockingCollector{
		entered: make(chan struct{}, 100),
		release: make(chan struct{}),
		desc:    prometheus.NewDesc("slow", "A collector that waits.", nil, nil),
	}
}

func (c *blockingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *blockingCollector) Collect(ch chan<- prometheus.Metric) {
	c.entered <- struct{}{}
	<-c.release
	ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1)
}

// TestScrapeBounds: scrapes beyond the bound in flight are refused at once
// with 503, and a scrape that outlasts the timeout is answered 503; the
// refusals are counted.
func TestScrapeBounds(t *testing.T) {
	t.Parallel()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Error(err)
			return 0, ""
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	quiet := slog.New(slog.DiscardHandler)

	t.Run("InFlight", func(t *testing.T) {
		t.Parallel()
		c := newBlockingCollector()
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		srv := httptest.NewServer(scrapeHandler(reg, quiet, maxScrapes, time.Minute))
		defer srv.Close()
		var wg sync.WaitGroup
		codes := make([]int, maxScrapes)
		for i := range maxScrapes {
			wg.Go(func() { codes[i], _ = get(srv.URL) })
		}
		deadline := time.After(10 * time.Second)
		for range maxScrapes {
			select {
			case <-c.entered:
			case <-deadline:
				t.Fatalf("fewer than %d scrapes reached the collector in 10 s", maxScrapes)
			}
		}
		code, body := get(srv.URL)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "Limit of concurrent requests reached") {
			t.Errorf("scrape %d with %d in flight: %d %q; want 503, the limit reached", maxScrapes+1, maxScrapes, code, body)
		}
		close(c.release)
		wg.Wait()
		want := make([]int, maxScrapes)
		for i := range want {
			want[i] = http.StatusOK
		}
		if diff := cmp.Diff(want, codes); diff != "" {
			t.Errorf("the scrapes in flight (-want +got):\n%s", diff)
		}
		_, exposition := get(srv.URL)
		for _, want := range []string{`promhttp_metric_handler_requests_total{code="503"} 1`, "\nslow 1\n"} {
			if !strings.Contains(exposition, want) {
				t.Errorf("/metrics has no %q:\n%s", want, exposition)
			}
		}
	})

	t.Run("Timeout", func(t *testing.T) {
		t.Parallel()
		c := newBlockingCollector()
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		srv := httptest.NewServer(scrapeHandler(reg, quiet, maxScrapes, 50*time.Millisecond))
		defer srv.Close()
		defer close(c.release) // first: the collection goes on after the answer
		code, body := get(srv.URL)
		if code != http.StatusServiceUnavailable || !strings.Contains(body, "Exceeded configured timeout") {
			t.Errorf("a scrape that outlasts the timeout: %d %q; want 503, the timeout", code, body)
		}
	})
}
