package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
)

// AuthEnv names the environment variable with the dashboard's basic-auth
// credentials, "user:password".
const AuthEnv = "GOTASKS_DASHBOARD_AUTH"

// dashboardOptions are the flags of dashboard.
type dashboardOptions struct {
	listen, prefix string
	readOnly       bool
	// user and password are read from AuthEnv by check; empty: no auth.
	user, password string
}

var dashboardCmd = &command{
	name: "dashboard",
	args: "[--listen 127.0.0.1:8080] [--read-only] [--prefix /]",
	help: `Serves the web dashboard: the queues with a live chart, the task list with
filters and bulk actions, each task, the queues (pause / resume) and the live
workers. It stops on SIGINT or SIGTERM.

Authentication is HTTP basic auth with the credentials of $` + AuthEnv + `
("user:password"). It is required unless --listen is a loopback address
(127.0.0.1, ::1, localhost): on any other address the command refuses to
start without it. Serve it over TLS (a reverse proxy) beyond localhost.`,
	flags: func(fs *flag.FlagSet, c *cmdEnv) {
		o := &dashboardOptions{}
		fs.StringVar(&o.listen, "listen", "127.0.0.1:8080", "serve on this `address` (host:port)")
		fs.BoolVar(&o.readOnly, "read-only", false, "hide the buttons and refuse every change")
		fs.StringVar(&o.prefix, "prefix", "/", "serve the dashboard under this URL `path`")
		c.opts = o
	},
	check:  checkDashboard,
	run:    runDashboard,
	noJSON: true,
}

func checkDashboard(c *cmdEnv) string {
	o := c.opts.(*dashboardOptions)
	if msg := noArgs(c); msg != "" {
		return msg
	}
	host, _, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Sprintf("--listen %q: want host:port (127.0.0.1:8080)", o.listen)
	}
	if !strings.HasPrefix(o.prefix, "/") || strings.ContainsAny(o.prefix, "?#") || strings.Contains(o.prefix, "//") {
		return fmt.Sprintf("--prefix %q: want a URL path such as / or /admin/tasks", o.prefix)
	}
	if auth := c.getenv(AuthEnv); auth != "" {
		user, pass, ok := strings.Cut(auth, ":")
		if !ok || user == "" || pass == "" {
			return "$" + AuthEnv + ": want user:password, both non-empty"
		}
		o.user, o.password = user, pass
	} else if !isLoopback(host) {
		return fmt.Sprintf("--listen %s is not a loopback address: set $%s (user:password) to require credentials, "+
			"or listen on 127.0.0.1", o.listen, AuthEnv)
	}
	return ""
}

// isLoopback reports whether host names only the loopback interface ("" and
// 0.0.0.0 are every interface).
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func runDashboard(ctx context.Context, c *cmdEnv) error {
	o := c.opts.(*dashboardOptions)
	var h http.Handler = dashboard.New(c.b, dashboard.Options{ReadOnly: o.readOnly})
	prefix := strings.TrimSuffix(o.prefix, "/")
	if prefix != "" {
		mux := http.NewServeMux()
		strip := http.StripPrefix(prefix, h)
		mux.Handle(prefix+"/", strip)
		mux.Handle(prefix, strip) // redirected to prefix/ by the dashboard
		h = mux
	}
	if o.user != "" {
		h = basicAuth(h, o.user, o.password)
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      time.Minute,
		IdleTimeout:       2 * time.Minute,
	}
	auth := "basic auth from $" + AuthEnv
	if o.user == "" {
		auth = "no authentication: loopback only"
	}
	mode := ""
	if o.readOnly {
		mode = ", read-only"
	}
	fmt.Fprintf(c.stderr, "gotasks dashboard: backend %q of %s on http://%s%s/ (%s%s)\n",
		c.backend, database.RedactDSN(c.dsn), ln.Addr(), prefix, auth, mode)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	fmt.Fprintln(c.stderr, "gotasks dashboard: stopped")
	return nil
}

// basicAuth requires the credentials user and password, compared in
// constant time (of hashes, so that their lengths do not leak either).
func basicAuth(next http.Handler, user, password string) http.Handler {
	wantUser, wantPass := sha256.Sum256([]byte(user)), sha256.Sum256([]byte(password))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		gotUser, gotPass := sha256.Sum256([]byte(u)), sha256.Sum256([]byte(p))
		userOK := subtle.ConstantTimeCompare(gotUser[:], wantUser[:])
		passOK := subtle.ConstantTimeCompare(gotPass[:], wantPass[:])
		if !ok || userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="gotasks", charset="UTF-8"`)
			http.Error(w, "401 unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
