package database_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

var smokeAdd = tasks.Define("database_test.smoke_add", func(ctx context.Context, a [2]int) (int, error) {
	if a[0] < 0 {
		return 0, fmt.Errorf("negative %d", a[0])
	}
	return a[0] + a[1], nil
}, tasks.WithMaxAttempts(2), tasks.WithBackoff(tasks.ConstantBackoff(0)))

func TestSmoke(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		if dsn[:6] == "postgr" {
			db, err := database.Open(ctx, dsn, database.WithAutoMigrate(true))
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
		}
		name := "smoke-" + t.Name()
		b, err := database.Open(ctx, dsn, database.WithName(name[:min(len(name), 60)]))
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		t.Cleanup(tasks.RegisterBackend(b))
		task := smokeAdd.Using(tasks.WithBackend(b.Name()))
		r1, err := task.Enqueue(ctx, [2]int{1, 2})
		if err != nil {
			t.Fatal(err)
		}
		rs, err := task.EnqueueMany(ctx, [][2]int{{3, 4}, {-1, 0}})
		if err != nil {
			t.Fatal(err)
		}
		w, err := database.NewWorker(b, database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Run(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r1.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		v, err := r1.Value()
		t.Logf("r1 %v %v %+v", v, err, r1.RawResult)
		for _, r := range rs {
			if err := r.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			v, err := r.Value()
			t.Logf("r %v %v status=%s attempts=%d errors=%v", v, err, r.Status, r.Attempts, r.Errors)
		}
	})
}
