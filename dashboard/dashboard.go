// Package dashboard is a web dashboard for the tasks of a database backend:
// an overview of the queues with a live chart of finished tasks, a task list
// with filters, cursor pagination and bulk actions, a task page with the
// arguments, the return value and every attempt's error, and pages for the
// queues (pause / resume), the durable schedules (pause / resume) and the
// live workers.
//
// New returns an http.Handler that an application mounts under any path
// prefix, behind its own authentication:
//
//	h := dashboard.New(backend, dashboard.Options{})
//	mux.Handle("/admin/tasks/", requireAdmin(http.StripPrefix("/admin/tasks", h)))
//
// # Paths
//
// The handler serves its pages at "/" (the overview), "/tasks" (the list;
// its query string is the filter, so a filtered list is a link to share),
// "/tasks/{id}", "/queues", "/schedules" and "/workers", the overview's
// JSON at "/api/stats", and its embedded CSS and JavaScript at "/static/",
// all relative to the path it receives; it is mounted with
// http.StripPrefix (with or without the prefix's trailing slash). Every link,
// form action, redirect and asset URL it emits is relative (for example
// "../tasks?status=FAILED" from a task's page), so the same handler works
// under any prefix, and behind a reverse proxy that adds one, without being
// told the prefix. A request for the bare prefix ("/admin/tasks") is
// redirected to the prefix with its slash ("/admin/tasks/").
//
// # Cost
//
// Each page is one query of the admin API: the overview and api/stats one
// Backend.Stats, the list one Backend.ListTasks (one page, by cursor), a
// task one Backend.GetTask, the queues one Backend.ListQueues, the
// schedules one Backend.ListSchedules, the workers one Backend.Workers.
// The overview polls api/stats every Options.RefreshInterval while it is
// visible.
//
// # Security
//
// The handler does no authentication: wrap it in the application's own
// middleware. It renders everything with html/template (task arguments,
// return values and error messages are shown as text, never as markup) and
// sends a Content-Security-Policy that allows only its own script and style.
// Every request that changes something is a POST carrying a CSRF token (an
// HMAC under Options.CSRFKey of a timestamp and of a random cookie the
// dashboard gives each browser, in a hidden form field) and is also checked
// by net/http.CrossOriginProtection (Sec-Fetch-Site / Origin).
// Options.ReadOnly hides the buttons and refuses every POST with 403. The
// handler never shows the backend's DSN or any connection detail: database
// errors are logged, and the page says only that the operation failed.
package dashboard

import (
	"crypto/rand"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options configures the dashboard. The zero value works.
type Options struct {
	// Title is shown in the header and the window title (default
	// "gotasks").
	Title string
	// ReadOnly hides every button and refuses every POST with 403
	// Forbidden.
	ReadOnly bool
	// CSRFKey is the secret of the CSRF tokens. Empty, each handler makes
	// a random one, so a form is only accepted by the process that served
	// it: give the replicas behind a load balancer the same key (at least
	// 32 random bytes).
	CSRFKey []byte
	// TrustedOrigins are origins (such as "https://admin.example.com")
	// allowed to POST across origins (see
	// net/http.CrossOriginProtection.AddTrustedOrigin). Rarely needed.
	TrustedOrigins []string
	// PageSize is the default number of tasks per page of the list
	// (default database.DefaultPageSize).
	PageSize int
	// ChartWindow is the span of the overview's chart (default one hour).
	ChartWindow time.Duration
	// RefreshInterval is how often the overview refreshes its chart and
	// counts (default 5 s).
	RefreshInterval time.Duration
	// Logger receives the errors of the database (default: the backend's
	// logger).
	Logger *slog.Logger
}

// Handler is the dashboard; see New.
type Handler struct {
	b     *database.Backend
	opts  Options
	log   *slog.Logger
	mux   *http.ServeMux
	pages map[string]*template.Template
	cop   *http.CrossOriginProtection
	key   []byte
	// assetVersion busts browser caches of the embedded assets.
	assetVersion string
}

// New returns the dashboard of b. It panics if the embedded templates do
// not parse or an entry of opts.TrustedOrigins is not an origin, both of
// which are programming errors.
func New(b *database.Backend, opts Options) *Handler {
	if opts.Title == "" {
		opts.Title = "gotasks"
	}
	if opts.PageSize <= 0 {
		opts.PageSize = database.DefaultPageSize
	}
	opts.PageSize = min(opts.PageSize, database.MaxPageSize)
	if opts.ChartWindow <= 0 {
		opts.ChartWindow = time.Hour
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = 5 * time.Second
	}
	h := &Handler{b: b, opts: opts, log: opts.Logger}
	if h.log == nil {
		h.log = b.BackendLogger()
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.key = opts.CSRFKey
	if len(h.key) == 0 {
		h.key = make([]byte, 32)
		_, _ = rand.Read(h.key)
	}
	h.cop = http.NewCrossOriginProtection()
	for _, o := range opts.TrustedOrigins {
		if err := h.cop.AddTrustedOrigin(o); err != nil {
			panic("dashboard: " + err.Error())
		}
	}
	h.cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.forbidden(w, r, "cross-origin request refused")
	}))
	h.pages = mustParsePages()
	h.assetVersion = assetVersion()

	static, _ := fs.Sub(staticFS, "static")
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", h.overview)
	m.HandleFunc("GET /api/stats", h.apiStats)
	m.HandleFunc("GET /tasks", h.taskList)
	m.HandleFunc("GET /tasks/{id}", h.taskDetail)
	m.HandleFunc("GET /queues", h.queueList)
	m.HandleFunc("GET /schedules", h.scheduleList)
	m.HandleFunc("GET /workers", h.workerList)
	m.Handle("GET /static/", http.StripPrefix("/static/", staticHandler(static)))
	m.HandleFunc("POST /tasks/bulk", h.post(h.bulkAction))
	m.HandleFunc("POST /tasks/{id}/{action}", h.post(h.taskAction))
	m.HandleFunc("POST /queues/{action}", h.post(h.queueAction))
	m.HandleFunc("POST /schedules/{action}", h.post(h.scheduleAction))
	m.HandleFunc("/", h.notFound)
	h.mux = m
	return h
}

// ServeHTTP serves the dashboard. r.URL.Path is the path below the
// dashboard's prefix (see the package documentation).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if p == "" || p[0] != '/' {
		if p == "" && !strings.HasSuffix(originalPath(r), "/") {
			// The bare prefix: send the browser to prefix + "/", so that
			// relative links resolve under it.
			target := lastSegment(originalPath(r)) + "/"
			if r.URL.RawQuery != "" {
				target += "?" + r.URL.RawQuery
			}
			seeOther(w, target, http.StatusMovedPermanently)
			return
		}
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		u.Path = "/" + p
		u.RawPath = ""
		r2.URL = &u
		r = r2
	}
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "same-origin")
	h.mux.ServeHTTP(w, r)
}

// originalPath is the path the client asked for, before any StripPrefix.
func originalPath(r *http.Request) string {
	if u, err := url.ParseRequestURI(r.RequestURI); err == nil {
		return u.Path
	}
	return r.URL.Path
}

func lastSegment(p string) string {
	p = strings.TrimSuffix(p, "/")
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		p = p[i+1:]
	}
	if p == "" {
		return "."
	}
	return "./" + url.PathEscape(p)
}

// rootOf is the relative URL of the dashboard's root from the page at path
// p (a path below the prefix, starting with "/"): "./" for "/" and
// "/tasks", "../" for "/tasks/{id}", and so on.
func rootOf(p string) string {
	n := strings.Count(strings.TrimPrefix(p, "/"), "/")
	if n == 0 {
		return "./"
	}
	return strings.Repeat("../", n)
}

// seeOther redirects to a URL relative to the request's URL. (http.Redirect
// would resolve it against r.URL.Path, which StripPrefix has shortened.)
func seeOther(w http.ResponseWriter, target string, code int) {
	w.Header().Set("Location", target)
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
}
