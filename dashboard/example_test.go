package dashboard_test

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
)

// requireAdmin is the application's own authentication: here HTTP basic
// auth with one fixed user.
func requireAdmin(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="tasks"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The dashboard mounted under /admin/tasks/ of an application's mux, behind
// basic auth. http.StripPrefix gives the dashboard the paths below the
// prefix; its links are relative, so it needs to know nothing else.
func Example() {
	dir, err := os.MkdirTemp("", "dashboard-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	backend, err := database.Open(ctx, "sqlite://"+filepath.Join(dir, "tasks.db"), database.WithAutoMigrate(true))
	if err != nil {
		log.Fatal(err)
	}
	defer backend.Close()

	dash := dashboard.New(backend, dashboard.Options{Title: "Shop tasks"})
	mux := http.NewServeMux()
	mux.Handle("/admin/tasks/", requireAdmin("admin", "s3cret", http.StripPrefix("/admin/tasks", dash)))
	// … the application's other routes …

	srv := httptest.NewServer(mux) // in an application: http.ListenAndServe(addr, mux)
	defer srv.Close()

	for _, auth := range []bool{false, true} {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/admin/tasks/queues", nil)
		if auth {
			req.SetBasicAuth("admin", "s3cret")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		resp.Body.Close()
		fmt.Println("with auth:", auth, "→", resp.Status)
	}
	// Output:
	// with auth: false → 401 Unauthorized
	// with auth: true → 200 OK
}
