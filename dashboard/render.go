package dashboard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gotasks/gotasks/tasks"
)

// pageNames are the templates of templates/ that are pages (each with the
// layout).
var pageNames = []string{"overview", "tasks", "task", "queues", "schedules", "workers", "error"}

var funcs = template.FuncMap{
	"time":       fmtTime,
	"ptime":      fmtPtime,
	"ago":        fmtAgo,
	"dur":        fmtDuration,
	"json":       prettyJSON,
	"lower":      strings.ToLower,
	"statuses":   func() []tasks.Status { return allStatuses },
	"finished":   isFinished,
	"retryable":  func(s tasks.Status) bool { return s == tasks.StatusFailed || s == tasks.StatusCancelled },
	"cancelable": func(s tasks.Status) bool { return s == tasks.StatusReady },
	"count": func(m map[tasks.Status]int64, s tasks.Status) int64 {
		return m[s]
	},
	"add":   func(a, b int) int { return a + b },
	"short": shortID,
	"join":  strings.Join,
	"clip":  clip,
	"args":  argsText,
	// pathesc escapes a path segment (a task id) for a URL.
	"pathesc": url.PathEscape,
}

func mustParsePages() map[string]*template.Template {
	out := make(map[string]*template.Template, len(pageNames))
	for _, name := range pageNames {
		out[name] = template.Must(template.New("layout.html").Funcs(funcs).
			ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
	return out
}

// page is what every template gets.
type page struct {
	AppTitle     string
	Title        string
	Nav          string // the active menu entry
	Root         string // relative URL of the dashboard's root, with its slash
	ReadOnly     bool
	CSRF         string
	Flash        string
	FlashError   bool
	Backend      string
	Dialect      string
	AssetVersion string
	Now          time.Time
	Data         any

	// csrfCookie is a new binding cookie value to set with the page (see
	// csrfBinding); empty when the browser has one.
	csrfCookie string
}

func (h *Handler) newPage(r *http.Request, nav, title string, data any) *page {
	q := r.URL.Query()
	binding, fresh := csrfBinding(r)
	newCookie := ""
	if fresh {
		newCookie = binding
	}
	return &page{
		AppTitle:     h.opts.Title,
		Title:        title,
		Nav:          nav,
		Root:         rootOf(r.URL.Path),
		ReadOnly:     h.opts.ReadOnly,
		CSRF:         h.csrfToken(binding, time.Now()),
		csrfCookie:   newCookie,
		Flash:        q.Get("flash"),
		FlashError:   q.Get("flash_kind") == "error",
		Backend:      h.b.Name(),
		Dialect:      string(h.b.Dialect()),
		AssetVersion: h.assetVersion,
		Now:          time.Now(),
		Data:         data,
	}
}

// render executes a page into a buffer first, so that a template error
// becomes a 500 instead of half a page.
func (h *Handler) render(w http.ResponseWriter, r *http.Request, code int, name string, p *page) {
	var buf bytes.Buffer
	if err := h.pages[name].Execute(&buf, p); err != nil {
		h.log.ErrorContext(r.Context(), "dashboard: render", "page", name, "error", err)
		http.Error(w, "internal error (see the server log)", http.StatusInternalServerError)
		return
	}
	if p.csrfCookie != "" {
		setCSRFCookie(w, r, p.csrfCookie)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(buf.Bytes())
}

// errorData is the error page's content.
type errorData struct {
	Code    int
	Status  string
	Message string
}

func (h *Handler) renderError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	h.render(w, r, code, "error", h.newPage(r, "", http.StatusText(code),
		errorData{Code: code, Status: http.StatusText(code), Message: msg}))
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	h.renderError(w, r, http.StatusNotFound, "no such page")
}

// dbError logs a database error and shows a page that says only what
// failed: the error's text could name the server, its user or worse.
func (h *Handler) dbError(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.log.ErrorContext(r.Context(), "dashboard: "+what, "backend", h.b.Name(), "error", err)
	h.renderError(w, r, http.StatusInternalServerError, what+" failed: database error (details in the server log)")
}

// staticHandler serves the embedded assets, cached for a day (their URLs
// carry the assets' hash).
func staticHandler(fsys fs.FS) http.Handler {
	fh := http.FileServerFS(fsys)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/") || r.URL.Path == "" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "public, max-age=86400")
		fh.ServeHTTP(w, r)
	})
}

func assetVersion() string {
	s := sha256.New()
	_ = fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := staticFS.ReadFile(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(s, "%s\x00%d\x00", path.Base(p), len(b))
		s.Write(b)
		return nil
	})
	return hex.EncodeToString(s.Sum(nil))[:12]
}

func isFinished(s tasks.Status) bool {
	return s == tasks.StatusSuccessful || s == tasks.StatusFailed || s == tasks.StatusCancelled
}

// clip shortens s to at most n runes, with an ellipsis when it cut.
func clip(s string, n int) string {
	i := 0
	for range n {
		if i >= len(s) {
			return s
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	if i >= len(s) {
		return s
	}
	return s[:i] + "…"
}

// argsText is a schedule's arguments as compact text: the JSON with the
// HTML-safe escapes of encoding/json (\u003c and the like) turned back into
// the characters, as on the task page; html/template escapes the result.
func argsText(raw json.RawMessage) string {
	return unescapeHTMLSafe(string(raw))
}

const timeLayout = "2006-01-02 15:04:05Z"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format(timeLayout)
}

func fmtPtime(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return fmtTime(*t)
}

// fmtAgo is "3m ago", "in 2h", or "—" for the zero time.
func fmtAgo(now time.Time, t any) string {
	var tt time.Time
	switch v := t.(type) {
	case time.Time:
		tt = v
	case *time.Time:
		if v == nil {
			return "—"
		}
		tt = *v
	}
	if tt.IsZero() {
		return "—"
	}
	d := now.Sub(tt)
	if d < 0 {
		return "in " + fmtDuration(-d)
	}
	return fmtDuration(d) + " ago"
}

// fmtDuration is a short, rounded duration: 850ms, 12s, 4m10s, 3h5m, 2d4h.
func fmtDuration(d time.Duration) string {
	switch {
	case d <= 0:
		return "0s"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d/time.Minute), int(d%time.Minute/time.Second))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%dd%02dh", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

// prettyJSON indents a JSON document, keeping its keys in order, and shows
// the characters encoding/json escapes for HTML (\u003c, \u003e, \u0026) as
// themselves; what is not JSON is returned as is. The result is text: the
// template escapes it.
func prettyJSON(raw json.RawMessage) string {
	if len(raw) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return unescapeHTMLSafe(buf.String())
}

// unescapeHTMLSafe replaces the escapes \u003c, \u003e and \u0026 of a JSON
// document with the characters; other escapes (such as an escaped backslash
// followed by "u003c") are kept.
func unescapeHTMLSafe(s string) string {
	if !strings.Contains(s, `\u00`) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		if s[i+1] == 'u' && i+5 < len(s) {
			switch strings.ToLower(s[i+2 : i+6]) {
			case "003c":
				b.WriteByte('<')
				i += 5
				continue
			case "003e":
				b.WriteByte('>')
				i += 5
				continue
			case "0026":
				b.WriteByte('&')
				i += 5
				continue
			}
		}
		b.WriteByte(c)
		b.WriteByte(s[i+1])
		i++
	}
	return b.String()
}

// shortID is the end of a long task id, for narrow tables: ids are UUIDv7,
// whose start is a timestamp shared by the tasks of the same minute and
// whose end is random.
func shortID(id string) string {
	if len(id) <= 16 {
		return id
	}
	return "…" + id[len(id)-12:]
}
