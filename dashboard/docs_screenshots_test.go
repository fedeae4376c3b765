package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// EnvDocsScreenshots names the directory TestDocsScreenshots writes the
// documentation's screenshots into (docs/ of the repository); unset, the
// test is skipped.
const EnvDocsScreenshots = "GOTASKS_DOCS_SCREENSHOTS"

// The demo shop's tasks, for the screenshots.
type (
	receiptArgs struct {
		OrderID string `json:"order_id"`
		To      string `json:"to"`
	}
	chargeArgs struct {
		OrderID     string `json:"order_id"`
		AmountCents int    `json:"amount_cents"`
		Currency    string `json:"currency"`
	}
	reportArgs struct {
		Report string `json:"report"`
		Month  string `json:"month"`
		Format string `json:"format"`
	}
	imageArgs struct {
		ImageID string `json:"image_id"`
		Sizes   []int  `json:"sizes"`
	}
)

var (
	demoReceipt = tasks.Define("shop.send_receipt", func(ctx context.Context, a receiptArgs) (map[string]string, error) {
		if strings.HasPrefix(a.To, "bounce") {
			return nil, fmt.Errorf("smtp: 550 5.1.1 <%s>: recipient address rejected: user unknown", a.To)
		}
		return map[string]string{"message_id": "<" + a.OrderID + ".receipt@mail.shop.example>"}, nil
	}, tasks.WithQueue("emails"), tasks.WithMaxAttempts(1))

	demoCharge = tasks.Define("shop.charge_card", func(ctx context.Context, a chargeArgs) (map[string]any, error) {
		if a.AmountCents%7 == 0 {
			return nil, fmt.Errorf("payment gateway: card declined (insufficient_funds) for order %s", a.OrderID)
		}
		return map[string]any{"charge_id": "ch_" + a.OrderID, "captured": true}, nil
	}, tasks.WithQueue("payments"), tasks.WithPriority(10), tasks.WithMaxAttempts(1))

	demoReport = tasks.Define("shop.build_report", func(ctx context.Context, a reportArgs) (string, error) {
		var totals [12]int
		month := len(a.Month) + 5 // a bug: 12 for "2026-11"
		if a.Format == "xlsx" {
			totals[month%13]++ // index out of range [12] with length 12
		}
		return "s3://reports/" + a.Report + "-" + a.Month + "." + a.Format, nil
	}, tasks.WithQueue("reports"), tasks.WithMaxAttempts(3), tasks.WithBackoff(tasks.ConstantBackoff(0)))

	demoImage = tasks.Define("shop.resize_image", func(ctx context.Context, a imageArgs) ([]string, error) {
		out := make([]string, len(a.Sizes))
		for i, s := range a.Sizes {
			out[i] = fmt.Sprintf("%s_%dw.webp", a.ImageID, s)
		}
		return out, nil
	}, tasks.WithQueue("images"))
)

// TestDocsScreenshots writes docs/dashboard-{overview,tasks,task,queues}.png
// of a demo shop, 1200×800: GOTASKS_DOCS_SCREENSHOTS=$PWD/docs go test
// ./dashboard/ -run TestDocsScreenshots. The demo's finished tasks are
// spread over the last hour by rewriting their times in the database, so
// that the chart has an hour to show.
func TestDocsScreenshots(t *testing.T) {
	dir := os.Getenv(EnvDocsScreenshots)
	if dir == "" {
		t.Skipf("set %s to the directory for the screenshots", EnvDocsScreenshots)
	}
	ctx := context.Background()
	b, err := database.Open(ctx, dbtest.SQLiteDSN(t), database.WithAutoMigrate(true), database.WithName("shop"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(tasks.RegisterBackend(b))
	on := func(o ...tasks.Option) []tasks.Option { return append([]tasks.Option{tasks.WithBackend("shop")}, o...) }

	// Three phases, in enqueue (id) order, mapped onto the last hour below:
	// normal traffic, a burst of declined cards, normal traffic again.
	order := 1040
	phase := func(n int, declines bool) {
		for i := range n {
			order++
			id := fmt.Sprintf("A-%d", order)
			user := fmt.Sprintf("user:%d", 100+order%37)
			amount := 1000 + order*13%9000
			if amount%7 == 0 && !declines {
				amount++
			}
			if declines && i%3 != 0 {
				amount = 7 * (200 + order%300)
			}
			mustEnqueue(t, demoCharge.Using(on(tasks.WithCreator(user), tasks.WithVerboseName("Charge order "+id))...), chargeArgs{id, amount, "EUR"})
			to := fmt.Sprintf("customer%d@example.com", order%500)
			if order%29 == 0 {
				to = fmt.Sprintf("bounce%d@example.net", order)
			}
			mustEnqueue(t, demoReceipt.Using(on(tasks.WithCreator(user), tasks.WithVerboseName("Receipt for "+id))...), receiptArgs{id, to})
			if i%2 == 0 {
				mustEnqueue(t, demoImage.Using(on(tasks.WithCreator("cms"))...), imageArgs{fmt.Sprintf("img_%05d", order*7), []int{320, 640, 1280}})
			}
		}
	}
	phase(40, false)
	phase(12, true)
	phase(30, false)
	mustEnqueue(t, demoReport.Using(on(tasks.WithCreator("user:7"), tasks.WithVerboseName("Monthly sales, November"))...),
		reportArgs{"monthly-sales", "2026-11", "xlsx"})
	runAll(t, b)
	spreadOverTheHour(t, b)

	// The backlog: READY tasks, some waiting for minutes, a paused queue,
	// a cancelled one.
	for i := range 9 {
		mustEnqueue(t, demoReceipt.Using(on(tasks.WithCreator("newsletter"))...), receiptArgs{fmt.Sprintf("N-%d", i), fmt.Sprintf("subscriber%d@example.com", i)})
	}
	for i := range 4 {
		mustEnqueue(t, demoReport.Using(on(tasks.WithCreator("scheduler"), tasks.WithVerboseName("Daily stock report"))...), reportArgs{"daily-stock", fmt.Sprintf("2026-12-0%d", i+1), "csv"})
	}
	for i := range 3 {
		mustEnqueue(t, demoImage.Using(on(tasks.WithCreator("cms"))...), imageArgs{fmt.Sprintf("img_9%04d", i), []int{320, 640}})
	}
	backdateReady(t, b)
	p, err := b.ListTasks(ctx, database.ListParams{TaskFilter: database.TaskFilter{Queues: []string{"images"}, Statuses: []tasks.Status{tasks.StatusReady}}, Limit: 1})
	if err != nil || len(p.Tasks) == 0 {
		t.Fatalf("list READY images: %v", err)
	}
	if _, err := b.CancelTasks(ctx, []string{p.Tasks[0].ID}); err != nil {
		t.Fatal(err)
	}
	if err := b.SetQueueLimit(ctx, "payments", 4); err != nil {
		t.Fatal(err)
	}
	if err := b.SetQueueRateLimit(ctx, "emails", 100, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := b.PauseQueue(ctx, "reports"); err != nil {
		t.Fatal(err)
	}
	rp, err := b.ListTasks(ctx, database.ListParams{TaskFilter: database.TaskFilter{TaskNames: []string{"shop.build_report"}, Statuses: []tasks.Status{tasks.StatusFailed}}})
	if err != nil || len(rp.Tasks) != 1 {
		t.Fatalf("the failed report: %v", err)
	}

	// Schedules: two active (one has run), one paused.
	for _, sc := range []struct {
		name string
		args reportArgs
		spec database.ScheduleSpec
	}{
		{"daily-stock-report", reportArgs{"daily-stock", "", "csv"}, database.ScheduleSpec{Cron: "0 6 * * *", TimeZone: "Europe/Paris"}},
		{"monthly-sales", reportArgs{"monthly-sales", "", "xlsx"}, database.Cron("0 7 1 * *")},
		{"stock-refresh", reportArgs{"stock-levels", "", "json"}, database.Every(15 * time.Minute)},
	} {
		if err := database.ScheduleTask(ctx, b, sc.name, demoReport, sc.args, sc.spec); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.PauseSchedule(ctx, "monthly-sales"); err != nil {
		t.Fatal(err)
	}
	last := time.Now().UTC().Add(-9 * time.Minute).Truncate(time.Second)
	if _, err := b.DB().ExecContext(ctx, `UPDATE gotasks_schedule SET last_run_at = ?, next_run_at = ?, last_task_id = ?
		WHERE name = ?`, last.Format(sqliteTime), last.Add(15*time.Minute).Format(sqliteTime), rp.Tasks[0].ID,
		"stock-refresh"); err != nil {
		t.Fatal(err)
	}

	bu := serve(t, b, dashboard.Options{Title: "Shop tasks"})
	browser := newBrowser(t)
	tb := newTab(t, browser, t.TempDir(), 60*time.Second)
	tb.do("viewport", chromedp.EmulateViewport(1200, 800))
	for _, s := range []struct{ name, path, wait string }{
		{"overview", "", "#chart svg"},
		{"tasks", "tasks?queue=payments,emails&status=SUCCESSFUL&status=FAILED&limit=25", "#tasks-table"},
		{"task", "tasks/" + rp.Tasks[0].ID, "#errors"},
		{"queues", "queues", "#queues-list"},
		{"schedules", "schedules", "#schedules-list"},
	} {
		tb.open(bu.base+s.path, s.wait)
		if s.name == "tasks" { // a selection, for the bulk buttons
			tb.do("select", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('#tasks-table tbody input[name=id]').forEach((c, i) => { c.checked = i === 1 || i === 2 })`))
		}
		buf, err := chromedp.Run(tb.ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", s.name, err)
		}
		p := filepath.Join(dir, "dashboard-"+s.name+".png")
		if err := os.WriteFile(p, buf, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d KB", p, len(buf)/1024)
	}
}

func mustEnqueue[A, R any](t *testing.T, task *tasks.Task[A, R], args A) {
	t.Helper()
	if _, err := task.Enqueue(context.Background(), args); err != nil {
		t.Fatal(err)
	}
}

const sqliteTime = "2006-01-02 15:04:05.000000"

// spreadOverTheHour rewrites the times of b's finished tasks (SQLite) so
// that, in id order, they ran over the last hour, busier lately.
func spreadOverTheHour(t *testing.T, b *database.Backend) {
	t.Helper()
	ctx := context.Background()
	p, err := b.ListTasks(ctx, database.ListParams{Order: database.OldestFirst, Limit: database.MaxPageSize})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	n := len(p.Tasks)
	for i, ti := range p.Tasks {
		x := float64(i) / float64(n)
		ago := time.Duration(float64(58*time.Minute) * (1 - math.Pow(x, 0.8)))
		enq := now.Add(-ago - 2*time.Minute)
		started := enq.Add(time.Duration(200+i*37%900) * time.Millisecond)
		fin := started.Add(time.Duration(40+i*53%700) * time.Millisecond)
		errs := slices.Clone(ti.Errors)
		for j := range errs {
			errs[j].At = fin
		}
		ej, err := json.Marshal(errs)
		if err != nil {
			t.Fatal(err)
		}
		if errs == nil {
			ej = []byte("[]")
		}
		if _, err := b.DB().ExecContext(ctx, `UPDATE gotasks_task SET enqueued_at = ?, run_after = ?, started_at = ?,
			last_attempted_at = ?, finished_at = ?, errors = ? WHERE id = ?`,
			enq.Format(sqliteTime), enq.Format(sqliteTime), started.Format(sqliteTime), started.Format(sqliteTime),
			fin.Format(sqliteTime), string(ej), ti.ID); err != nil {
			t.Fatal(err)
		}
	}
}

// backdateReady makes b's READY tasks due a few minutes ago.
func backdateReady(t *testing.T, b *database.Backend) {
	t.Helper()
	ctx := context.Background()
	p, err := b.ListTasks(ctx, database.ListParams{Order: database.OldestFirst, TaskFilter: database.TaskFilter{Statuses: []tasks.Status{tasks.StatusReady}}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i, ti := range p.Tasks {
		at := now.Add(-time.Duration(len(p.Tasks)-i) * 23 * time.Second)
		if _, err := b.DB().ExecContext(ctx, `UPDATE gotasks_task SET enqueued_at = ?, run_after = ? WHERE id = ?`,
			at.Format(sqliteTime), at.Format(sqliteTime), ti.ID); err != nil {
			t.Fatal(err)
		}
	}
}
