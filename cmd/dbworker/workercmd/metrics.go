package workercmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/oteltasks"
	"github.com/gotasks/gotasks/tasks"
)

// The worker's metrics and health endpoints (--metrics-addr).

// MetricsAddrEnv names the environment variable that is the default of
// --metrics-addr.
const MetricsAddrEnv = "GOTASKS_METRICS_ADDR"

const (
	// readyTimeout bounds the database check of one /readyz request.
	readyTimeout = 2 * time.Second
	// metricsShutdownTimeout bounds the graceful shutdown of the server;
	// connections still open after it are closed.
	metricsShutdownTimeout = 5 * time.Second
	// providerShutdownTimeout bounds the shutdown of the meter provider,
	// which starts after the server's.
	providerShutdownTimeout = 5 * time.Second
	// maxScrapes bounds the /metrics requests served at once; more are
	// answered 503 at once. Each scrape reads the queue depths from the
	// database: on an unauthenticated port, many concurrent scrapes must
	// not pile up queries.
	maxScrapes = 4
	// scrapeTimeout bounds a /metrics answer (503 after it). It is longer
	// than oteltasks' bound on one reading of the queue depths (5 s), so
	// that a slow database makes the scrape slow, not failed.
	scrapeTimeout = 10 * time.Second
)

// checkMetricsAddr validates a --metrics-addr value: host:port, the host
// optional (":9090" listens on every interface), the port a number (0: one
// chosen by the system).
func checkMetricsAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want host:port, such as 127.0.0.1:9090 or :9090: %w", err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("want host:port with a port number from 0 to 65535, such as 127.0.0.1:9090; got port %q", port)
	}
	return nil
}

// metricsServer serves, on its own listener, mux and Prometheus registry:
//
//   - /metrics: the registry in the Prometheus text format: the worker's
//     task metrics (package oteltasks) and the Go runtime and process
//     collectors;
//   - /healthz: 200 while the process runs;
//   - /readyz: 200 when the backend's Check passes (database reachable,
//     schema current) and the worker's Ready is nil; 503 otherwise, with a
//     short fixed line per failed check (see readyReasons): the port is
//     usually unauthenticated, and driver errors name hosts, users and
//     databases. The full errors are logged when readiness changes.
//
// The task metrics are OpenTelemetry instruments (package oteltasks)
// exported by the OpenTelemetry Prometheus exporter, the reader of a meter
// provider of the server's own, rather than a hand-made Prometheus
// collector: one set of instruments, with one set of names, labels and
// buckets, serves OTLP users (who give oteltasks their own meter
// provider) and Prometheus users (who scrape this server) alike, and it
// cannot drift from what the docs describe for either.
//
// The server's goroutine is owned by the metricsServer: shutdown stops it
// and waits for it.
type metricsServer struct {
	log      *slog.Logger
	secrets  []string // redacted from the logged errors: the DSN and its password
	provider *sdkmetric.MeterProvider
	srv      *http.Server
	ln       net.Listener
	served   chan struct{} // closed by the Serve goroutine when it returns

	// target is what /readyz checks; nil until the worker is created.
	target atomic.Pointer[readyTarget]
	// mw is the task metrics' middleware, set by instrument before the
	// backend is used and read by shutdown.
	mw *oteltasks.Middleware

	// readyMu guards the readiness last answered, so that its changes are
	// logged once, not at every probe.
	readyMu  sync.Mutex
	ready    bool // the latest /readyz answer was 200
	wasReady bool // some /readyz answer was 200
	stopOnce sync.Once
}

// readyTarget is the backend and the worker /readyz checks.
type readyTarget struct {
	backend *database.Backend
	worker  *database.Worker
}

// startMetrics listens on addr and serves the endpoints until shutdown.
// name is the command's (the service.name of the metrics' resource); dsn
// is kept out of the answers.
func startMetrics(name, addr, dsn string, log *slog.Logger) (*metricsServer, error) {
	reg := prometheus.NewRegistry() // never the global DefaultRegisterer
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// service.name is the command's, unless OTEL_SERVICE_NAME or
	// OTEL_RESOURCE_ATTRIBUTES say otherwise.
	res, err := resource.New(context.Background(),
		resource.WithAttributes(attribute.String("service.name", name)),
		resource.WithFromEnv(), resource.WithTelemetrySDK())
	switch {
	case errors.Is(err, resource.ErrPartialResource), errors.Is(err, resource.ErrSchemaURLConflict):
		// A malformed OTEL_RESOURCE_ATTRIBUTES (an entry without "="): the
		// SDK returns the attributes it could read with the error. The
		// metrics are worth more with a partial target_info than a worker
		// that does not start.
		log.Warn("gotasks: metrics resource: using the attributes that could be read", "err", err)
	case err != nil:
		return nil, fmt.Errorf("metrics: resource: %w", err)
	}
	provider := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter), sdkmetric.WithResource(res))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = provider.Shutdown(context.Background())
		return nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	m := &metricsServer{
		log:      log,
		secrets:  secretsOf(dsn),
		provider: provider,
		ln:       ln,
		served:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", scrapeHandler(reg, log, maxScrapes, scrapeTimeout))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { plain(w, http.StatusOK, "ok\n") })
	mux.HandleFunc("GET /readyz", m.readyz)
	m.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(m.served)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("gotasks: metrics server failed", "err", err)
		}
	}()
	// The address actually listened on: with port 0, the system chose it.
	log.Info("gotasks: serving metrics and health checks", "addr", ln.Addr().String(),
		"paths", "/metrics /healthz /readyz")
	return m, nil
}

// scrapeHandler serves reg in the Prometheus text format with bounded
// scrapes: at most inFlight at once (more are answered 503 at once: on an
// unauthenticated port, many concurrent scrapes must not pile up the
// queries of the queue-depth gauges), each answered within timeout (503
// after it; the collection it started still holds its place until it
// ends). A failed collection (the queue depths while the database is away)
// is logged at WARN and counted (promhttp_metric_handler_errors_total), and
// the rest is served. promhttp_metric_handler_requests_total and
// promhttp_metric_handler_requests_in_flight count the scrapes, the
// refused ones included.
func scrapeHandler(reg *prometheus.Registry, log *slog.Logger, inFlight int, timeout time.Duration) http.Handler {
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		Registry:            reg,
		MaxRequestsInFlight: inFlight,
		Timeout:             timeout,
	})
	return promhttp.InstrumentMetricHandler(reg, h)
}

// instrument installs the task metrics' middleware on b (its own
// middleware, not the process's) with b's queue depths. It must be called
// before b is used: right after it is opened, before it is registered,
// handed to Setup or served by the worker. (The middleware cannot be
// passed to database.Open: it observes the queue depths of the opened
// backend.)
func (m *metricsServer) instrument(b *database.Backend) error {
	// Metrics only: tracing is the binary's choice (oteltasks.New with
	// tasks.Use in Setup); spans from this instance too would double them.
	// WithoutTracing, not a no-op tracer provider: with a no-op tracer this
	// instance still extracted the trace context stored with the task and
	// handed it to the task, replacing the consumer span of the binary's
	// own tracing middleware in the task's context (the task's spans and
	// follow-ups then hung from the enqueuer's span, not the attempt's).
	// WithoutTracing starts no span and neither extracts nor injects: ctx
	// goes through untouched.
	mw, err := oteltasks.New(oteltasks.WithMeterProvider(m.provider), oteltasks.WithQueueDepth(b),
		oteltasks.WithoutTracing())
	if err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	b.Apply(tasks.WithMiddleware(mw))
	m.mw = mw
	return nil
}

// watch makes /readyz check b and w.
func (m *metricsServer) watch(b *database.Backend, w *database.Worker) {
	m.target.Store(&readyTarget{backend: b, worker: w})
}

// readyz answers 200 "ok" when the database is reachable with a current
// schema and the worker is claiming, and 503 with one fixed line per failed
// check otherwise (readyReasons).
func (m *metricsServer) readyz(w http.ResponseWriter, r *http.Request) {
	var checkErr error
	readyErr := errWorkerNotCreated
	if t := m.target.Load(); t != nil {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		checkErr = t.backend.Check(ctx)
		cancel()
		readyErr = t.worker.Ready()
	}
	m.noteReadiness(checkErr, readyErr)
	if reasons := readyReasons(checkErr, readyErr); len(reasons) > 0 {
		plain(w, http.StatusServiceUnavailable, strings.Join(reasons, "\n")+"\n")
		return
	}
	plain(w, http.StatusOK, "ok\n")
}

// errWorkerNotCreated is the worker's readiness before it is created
// (watch).
var errWorkerNotCreated = fmt.Errorf("%w: %w (the worker is not created yet)", database.ErrNotReady, database.ErrWorkerNotStarted)

// readyReasons returns the lines of a 503 /readyz answer for the errors of
// the database check and of the worker's Ready (nil: passed), none when
// both passed. The lines are fixed, one per failed check: the endpoint is
// usually unauthenticated, and the errors name the database's host, user
// and database (noteReadiness logs them).
func readyReasons(checkErr, readyErr error) []string {
	var out []string
	switch {
	case checkErr == nil:
	case errors.Is(checkErr, database.ErrUnreachable):
		out = append(out, "database: unreachable")
	case errors.Is(checkErr, database.ErrSchemaMissing):
		out = append(out, "database: schema not current")
	case errors.Is(checkErr, context.DeadlineExceeded):
		out = append(out, "database: check timed out")
	default:
		out = append(out, "database: check failed")
	}
	switch {
	case readyErr == nil:
	case errors.Is(readyErr, database.ErrWorkerNotStarted):
		out = append(out, "worker: not started")
	case errors.Is(readyErr, database.ErrWorkerStopping):
		out = append(out, "worker: stopping")
	case errors.Is(readyErr, database.ErrClaimFailed):
		out = append(out, "worker: claims failing")
	default:
		out = append(out, "worker: not ready")
	}
	return out
}

// noteReadiness records the outcome of a /readyz check and logs its
// changes: at WARN, with the full errors, when a ready worker becomes not
// ready (at INFO when only because it is stopping: a stop is no fault);
// at INFO when it is ready again. Neither the probes that do not change it
// nor the start-up (not ready until the worker claims) are logged: the
// worker logs its claim failures itself.
func (m *metricsServer) noteReadiness(checkErr, readyErr error) {
	ready := checkErr == nil && readyErr == nil
	m.readyMu.Lock()
	defer m.readyMu.Unlock()
	switch {
	case ready == m.ready:
	case ready && m.wasReady:
		m.log.Info("gotasks: ready again (/readyz answers 200)")
	case !ready:
		var attrs []any
		if checkErr != nil {
			attrs = append(attrs, "database_err", m.reason(checkErr))
		}
		if readyErr != nil {
			attrs = append(attrs, "worker_err", m.reason(readyErr))
		}
		level := slog.LevelWarn
		if checkErr == nil && errors.Is(readyErr, database.ErrWorkerStopping) {
			level = slog.LevelInfo
		}
		m.log.Log(context.Background(), level, "gotasks: not ready (/readyz answers 503)", attrs...)
	}
	m.ready = ready
	m.wasReady = m.wasReady || ready
}

// reason is err's message on one line, without the DSN or its password.
func (m *metricsServer) reason(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	for _, secret := range m.secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
	}
	return s
}

// secretsOf returns what of dsn must not be shown: the DSN itself and its
// password (in the user information or a password parameter), as written
// and decoded.
func secretsOf(dsn string) []string {
	out := []string{dsn}
	u, err := url.Parse(dsn)
	if err != nil {
		return out
	}
	add := func(p string) {
		if p != "" {
			out = append(out, p, url.QueryEscape(p), url.PathEscape(p))
		}
	}
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			add(p)
			if _, raw, ok := strings.Cut(u.User.String(), ":"); ok {
				add(raw)
			}
		}
	}
	add(u.Query().Get("password"))
	return out
}

// plain writes a plain-text answer that is never cached.
func plain(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body)
}

// shutdown stops the server (gracefully, within metricsShutdownTimeout,
// then by closing what is left), waits for its goroutine, and releases the
// metrics (the meter provider within providerShutdownTimeout of its own).
// Called after the worker has stopped; calling it again is a no-op.
func (m *metricsServer) shutdown() {
	m.stopOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), metricsShutdownTimeout)
		defer cancel()
		if err := m.srv.Shutdown(ctx); err != nil {
			m.log.Warn("gotasks: metrics server did not shut down in time; closing it", "err", err)
			_ = m.srv.Close()
		}
		<-m.served
		_ = m.ln.Close() // in case Serve never ran
		if m.mw != nil {
			if err := m.mw.Close(); err != nil {
				m.log.Warn("gotasks: closing the task metrics", "err", err)
			}
		}
		// A context of its own: a scrape that held the server's shutdown
		// up to its deadline must not leave the provider an expired one.
		pctx, pcancel := context.WithTimeout(context.Background(), providerShutdownTimeout)
		defer pcancel()
		if err := m.provider.Shutdown(pctx); err != nil {
			m.log.Warn("gotasks: shutting the meter provider down", "err", err)
		}
	})
}
