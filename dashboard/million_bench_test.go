package dashboard_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/internal/benchseed"
	"github.com/gotasks/gotasks/internal/dbtest"
)

// BenchmarkDashboardMillionRows serves the dashboard's pages over a table
// of 1,000,000 finished tasks (see benchseed.Finished), whole requests
// through the handler: query, render, write. The target is 200 ms per page
// on both dialects (issue 14):
//
//	go test ./dashboard -run '^$' -bench BenchmarkDashboardMillionRows -benchtime 20x
func BenchmarkDashboardMillionRows(b *testing.B) {
	for _, dialect := range dbtest.Dialects {
		b.Run(dialect, func(b *testing.B) {
			ctx := context.Background()
			be, err := database.Open(ctx, dbtest.DSN(b, dialect), database.WithAutoMigrate(true),
				database.WithName("bench"))
			if err != nil {
				b.Fatal(err)
			}
			defer be.Close()
			if err := benchseed.Finished(ctx, be, be.Name(), 1_000_000, 5, time.Now()); err != nil {
				b.Fatal(err)
			}
			h := dashboard.New(be, dashboard.Options{})
			for _, page := range []struct{ name, path string }{
				{"Overview", "/"},
				{"OverviewRefresh", "/api/stats"},
				{"Tasks", "/tasks"},
				{"TasksFailedInQueue", "/tasks?status=FAILED&queue=q3"},
				{"TasksOfATask", "/tasks?task=app.task_7&status=SUCCESSFUL"},
				{"Queues", "/queues"},
			} {
				b.Run(page.name, func(b *testing.B) {
					for b.Loop() {
						rec := httptest.NewRecorder()
						h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, page.path, nil))
						if rec.Code != http.StatusOK {
							b.Fatalf("GET %s: %d %s", page.path, rec.Code, rec.Body.String())
						}
					}
				})
			}
		})
	}
}
