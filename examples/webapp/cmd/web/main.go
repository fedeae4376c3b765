// Command web is the web process of examples/webapp: it opens the database
// backend, registers it as the default backend (so that the handlers'
// tasks become rows of that database), creates the application's table and
// serves the shop's HTTP API, and the gotasks dashboard under
// /admin/tasks/ behind basic auth (credentials "user:password" from
// $WEBAPP_ADMIN_AUTH; without them the dashboard refuses everyone). Run the
// worker (examples/webapp/cmd/worker) on the same database to run the
// tasks.
//
//	go run ./examples/webapp/cmd/web                  # sqlite://gotasks.db, 127.0.0.1:8080
//	go run ./examples/webapp/cmd/web --addr 127.0.0.1:9000 --database postgres://…
//
// Flags: --database (default $GOTASKS_DATABASE_URL, else sqlite://gotasks.db,
// as the worker), --addr.
package main

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/examples/webapp/app"
	"github.com/gotasks/gotasks/tasks"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "web:", err)
		os.Exit(1)
	}
}

func run() error {
	def := os.Getenv(database.DSNEnv)
	if def == "" {
		def = database.DefaultDSN
	}
	dsn := flag.String("database", def, "database DSN (env "+database.DSNEnv+")")
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.Default()

	// The backend: the tasks' table (SQLite migrates itself) and the
	// connection pool the application's own tables share.
	b, err := database.Open(ctx, *dsn)
	if err != nil {
		return err
	}
	defer b.Close()
	// Without this, Enqueue would go to the implicit "default" backend and
	// run every task inline, inside the request.
	defer tasks.RegisterBackend(b)()

	if err := app.CreateSchema(ctx, b.DB()); err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	a := &app.App{DB: b.DB(), Mailer: app.LogMailer{Logger: log}, Payments: &app.FakePayments{}, Logger: log}

	// The shop's API, and the task dashboard mounted under a prefix behind
	// the application's own auth (here basic auth).
	mux := http.NewServeMux()
	mux.Handle("/", a.Handler())
	dash := dashboard.New(b, dashboard.Options{Title: "Shop tasks"})
	mux.Handle("/admin/tasks/", adminOnly(os.Getenv("WEBAPP_ADMIN_AUTH"), http.StripPrefix("/admin/tasks", dash)))

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("web: listening", "addr", "http://"+*addr, "dashboard", "http://"+*addr+"/admin/tasks/",
		"database", database.RedactDSN(*dsn), "dialect", b.Dialect())

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// adminOnly lets through the requests with the basic-auth credentials
// creds ("user:password"), compared in constant time; with no credentials
// configured it refuses every request.
func adminOnly(creds string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(creds))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		got := sha256.Sum256([]byte(user + ":" + pass))
		if creds == "" || !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="shop admin"`)
			http.Error(w, "admin only (set WEBAPP_ADMIN_AUTH=user:password)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}
