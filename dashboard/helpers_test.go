package dashboard_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// The tasks the tests enqueue and run.
var (
	// echoTask returns its argument.
	echoTask = tasks.Define("dashboard_test.echo", func(ctx context.Context, s string) (string, error) {
		return s, nil
	})
	// failTask fails at once, for good.
	failTask = tasks.Define("dashboard_test.fail", func(ctx context.Context, s string) (string, error) {
		return "", errors.New("boom: " + s)
	}, tasks.WithMaxAttempts(1))
	// panicTask panics: its error has a traceback.
	panicTask = tasks.Define("dashboard_test.panic", func(ctx context.Context, s string) (string, error) {
		panic("kaboom: " + s)
	}, tasks.WithMaxAttempts(1))
)

// dbtestTimeout bounds the waits for the database or a worker.
const dbtestTimeout = 10 * time.Second

// newServer serves h on loopback until the test ends and returns its URL.
func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

// prefix is where the tests mount the dashboard.
const prefix = "/admin/tasks"

// bundle is what a test starts from (see setup).
type bundle struct {
	b   *database.Backend
	srv *httptest.Server
	// base is the dashboard's root URL, with its slash.
	base string
	// client does not follow redirects.
	client *http.Client
}

var seq atomic.Int64

// setup opens a backend with a unique name on dsn (migrated, registered,
// closed at cleanup) and serves its dashboard under prefix on loopback.
func setup(t *testing.T, dsn string, opts dashboard.Options) *bundle {
	t.Helper()
	b := openBackend(t, dsn)
	return serve(t, b, opts)
}

func openBackend(t *testing.T, dsn string) *database.Backend {
	t.Helper()
	name := fmt.Sprintf("dash%d-%s", seq.Add(1), t.Name())
	b, err := database.Open(context.Background(), dsn, database.WithAutoMigrate(true),
		database.WithName(name[:min(len(name), 64)]), database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatalf("open backend: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(tasks.RegisterBackend(b))
	return b
}

// serve mounts the dashboard of b under prefix, as an application would.
func serve(t *testing.T, b *database.Backend, opts dashboard.Options) *bundle {
	t.Helper()
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", http.StripPrefix(prefix, dashboard.New(b, opts)))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return &bundle{
		b: b, srv: srv, base: srv.URL + prefix + "/",
		client: newClient(t),
	}
}

// newClient returns a browser-like client: it keeps cookies (the CSRF
// binding cookie) and does not follow redirects.
func newClient(t *testing.T) *http.Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{
		Timeout:       10 * time.Second,
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// enqueue enqueues task(arg) on bu's backend with opts.
func enqueue(t *testing.T, b *database.Backend, task *tasks.Task[string, string], arg string, opts ...tasks.Option) *tasks.Result[string] {
	t.Helper()
	r, err := task.Using(append([]tasks.Option{tasks.WithBackend(b.Name())}, opts...)...).Enqueue(context.Background(), arg)
	if err != nil {
		t.Fatalf("enqueue %s: %v", task.Name(), err)
	}
	return r
}

// runAll runs b's due tasks with a worker that stops when none is left.
func runAll(t *testing.T, b *database.Backend) {
	t.Helper()
	w, err := database.NewWorker(b, database.WorkerConfig{
		ExitWhenEmpty: true, PollInterval: 20 * time.Millisecond, Concurrency: 4,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatalf("run worker: %v", err)
	}
}

// startWorker starts a worker on b, stopped at cleanup.
func startWorker(t *testing.T, b *database.Backend, cfg database.WorkerConfig) *database.Worker {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	w, err := database.NewWorker(b, cfg)
	if err != nil {
		t.Fatalf("new worker: %v", err)
	}
	if err := w.Start(context.Background()); err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = w.StopAndCancel(ctx)
	})
	return w
}

// status returns the stored status of task id.
func status(t *testing.T, b *database.Backend, id string) tasks.Status {
	t.Helper()
	ti, err := b.GetTask(context.Background(), id)
	if err != nil {
		t.Fatalf("get task %s: %v", id, err)
	}
	return ti.Status
}

// waitStatus waits until task id has status want.
func waitStatus(t *testing.T, b *database.Backend, id string, want tasks.Status, timeout time.Duration) {
	t.Helper()
	dbtest.WaitUntil(t, timeout, fmt.Sprintf("task %s %s", id, want), func() bool {
		return status(t, b, id) == want
	})
}

// get fetches path (relative to the dashboard's root) and returns the
// response and its body.
func (bu *bundle) get(t *testing.T, path string) (*http.Response, string) {
	t.Helper()
	return bu.do(t, http.MethodGet, path, nil, nil)
}

// post posts form to path (relative to the root).
func (bu *bundle) post(t *testing.T, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	t.Helper()
	return bu.do(t, http.MethodPost, path, form, hdr)
}

func (bu *bundle) do(t *testing.T, method, path string, form url.Values, hdr http.Header) (*http.Response, string) {
	t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = bu.base + path
	}
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := bu.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, u, err)
	}
	return resp, string(b)
}

var csrfRE = regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)

// csrf returns a CSRF token from the page at path.
func (bu *bundle) csrf(t *testing.T, path string) string {
	t.Helper()
	_, body := bu.get(t, path)
	m := csrfRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token on %s", path)
	}
	return m[1]
}

// csrfForm is a form with the CSRF token tok and the fields kv (name,
// value, name, value…).
func csrfForm(tok string, kv ...string) url.Values {
	v := url.Values{"csrf_token": {tok}}
	for i := 0; i < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// wantCode checks a response's status code.
func wantCode(t *testing.T, resp *http.Response, body string, code int) {
	t.Helper()
	if resp.StatusCode != code {
		t.Fatalf("%s %s: status %d, want %d; body:\n%.2000s", resp.Request.Method, resp.Request.URL, resp.StatusCode, code, body)
	}
}

// location resolves a redirect's Location against its request URL.
func location(t *testing.T, resp *http.Response) *url.URL {
	t.Helper()
	loc := resp.Header.Get("Location")
	if loc == "" {
		t.Fatalf("%s %s: no Location (status %d)", resp.Request.Method, resp.Request.URL, resp.StatusCode)
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		t.Fatalf("bad Location %q: %v", loc, err)
	}
	return u
}
