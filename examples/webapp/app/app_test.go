package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/examples/webapp/app"
	"github.com/gotasks/gotasks/tasks"
)

// fakeMailer records the mails it is given.
type fakeMailer struct {
	mu    sync.Mutex
	mails []app.Mail
}

func (m *fakeMailer) Send(_ context.Context, mail app.Mail) (string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.mails = append(m.mails, mail)
	return fmt.Sprintf("msg-%d", len(m.mails)), nil
}

func (m *fakeMailer) sent() []app.Mail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]app.Mail(nil), m.mails...)
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// openSQLite opens a SQLite database backend in a temporary directory, with
// the application's table. It is not registered.
func openSQLite(t *testing.T) *database.Backend {
	t.Helper()
	ctx := context.Background()
	b, err := database.Open(ctx, "sqlite://"+filepath.Join(t.TempDir(), "shop.db"),
		database.WithLogger(discard))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := app.CreateSchema(ctx, b.DB()); err != nil {
		t.Fatal(err)
	}
	return b
}

func newApp(b *database.Backend, m app.Mailer) *app.App {
	return &app.App{DB: b.DB(), Mailer: m, Payments: &app.FakePayments{},
		Logger: discard}
}

// useDummy registers a fresh dummy backend as the default backend for the
// test.
func useDummy(t *testing.T) *dummy.Backend {
	t.Helper()
	d := dummy.New(tasks.WithLogger(discard))
	t.Cleanup(tasks.RegisterBackend(d))
	return d
}

func post(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body)))
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("decode %q: %v", rec.Body.String(), err)
	}
	return v
}

func countOrders(t *testing.T, a *app.App) int {
	t.Helper()
	n, err := a.DB.NewSelect().Model((*app.Order)(nil)).Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

// The handler with the dummy backend: what the unit tests of an application
// check. The dummy backend ignores database.WithTx (its tasks are stored at
// once, docs/database.md), so the rollback is tested on SQLite below.
func TestCreateOrderDummy(t *testing.T) {
	ctx := context.Background()

	t.Run("enqueues one receipt", func(t *testing.T) {
		d := useDummy(t)
		a := newApp(openSQLite(t), &fakeMailer{})

		rec := post(t, a.Handler(), `{"email":"ada@example.com","total":4200,"card":"4242424242424242"}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d, body %s", rec.Code, rec.Body)
		}
		resp := decode[app.OrderResponse](t, rec)
		if got, want := rec.Header().Get("Location"), fmt.Sprintf("/orders/%d", resp.Order.ID); got != want {
			t.Errorf("Location = %q, want %q", got, want)
		}

		jobs, err := dummy.Enqueued(ctx, d, app.SendReceipt)
		if err != nil {
			t.Fatal(err)
		}
		var got []app.ReceiptArgs
		for _, j := range jobs {
			got = append(got, j.Args)
			if j.Result.ID != resp.ReceiptTaskID {
				t.Errorf("task id %s, response says %s", j.Result.ID, resp.ReceiptTaskID)
			}
		}
		want := []app.ReceiptArgs{{OrderID: resp.Order.ID}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("enqueued SendReceipt (-want +got):\n%s", diff)
		}
	})

	t.Run("invalid input enqueues nothing", func(t *testing.T) {
		d := useDummy(t)
		a := newApp(openSQLite(t), &fakeMailer{})

		rec := post(t, a.Handler(), `{"email":"not-an-address","total":4200}`)
		if rec.Code != http.StatusBadRequest {
			t.Fatalf("status %d, want 400; body %s", rec.Code, rec.Body)
		}
		if n := len(d.Results()); n != 0 {
			t.Errorf("%d tasks enqueued, want 0", n)
		}
		if n := countOrders(t, a); n != 0 {
			t.Errorf("%d orders, want 0", n)
		}
	})
}

// The handler on the SQLite database backend: the order and its task are
// written in the same bun transaction, or neither is.
func TestCreateOrderTransaction(t *testing.T) {
	ctx := context.Background()
	receipts := func(t *testing.T, b *database.Backend) []app.ReceiptArgs {
		t.Helper()
		rs, err := b.List(ctx, database.Filter{TaskName: app.SendReceipt.Name()})
		if err != nil {
			t.Fatal(err)
		}
		var args []app.ReceiptArgs
		for _, r := range rs {
			a, err := app.SendReceipt.DecodeArgs(r.Args)
			if err != nil {
				t.Fatal(err)
			}
			args = append(args, a)
		}
		return args
	}

	t.Run("commit writes the order and one task", func(t *testing.T) {
		b := openSQLite(t)
		t.Cleanup(tasks.RegisterBackend(b))
		a := newApp(b, &fakeMailer{})

		rec := post(t, a.Handler(), `{"email":"ada@example.com","total":4200,"card":"4242424242424242"}`)
		if rec.Code != http.StatusCreated {
			t.Fatalf("status %d, body %s", rec.Code, rec.Body)
		}
		resp := decode[app.OrderResponse](t, rec)
		if diff := cmp.Diff([]app.ReceiptArgs{{OrderID: resp.Order.ID}}, receipts(t, b)); diff != "" {
			t.Errorf("SendReceipt rows (-want +got):\n%s", diff)
		}

		get := httptest.NewRecorder()
		a.Handler().ServeHTTP(get, httptest.NewRequest(http.MethodGet, fmt.Sprintf("/orders/%d", resp.Order.ID), nil))
		if get.Code != http.StatusOK {
			t.Fatalf("GET: status %d, body %s", get.Code, get.Body)
		}
		o := decode[app.Order](t, get)
		want := app.Order{ID: resp.Order.ID, Email: "ada@example.com", Total: 4200, Status: app.StatusPaid}
		if diff := cmp.Diff(want, o, cmpOrder); diff != "" {
			t.Errorf("GET order (-want +got):\n%s", diff)
		}
	})

	t.Run("declined card rolls back the order and the task", func(t *testing.T) {
		b := openSQLite(t)
		t.Cleanup(tasks.RegisterBackend(b))
		a := newApp(b, &fakeMailer{})

		rec := post(t, a.Handler(), `{"email":"ada@example.com","total":4200,"card":"`+app.DeclinedCard+`"}`)
		if rec.Code != http.StatusPaymentRequired {
			t.Fatalf("status %d, want 402; body %s", rec.Code, rec.Body)
		}
		if got := receipts(t, b); len(got) != 0 {
			t.Errorf("SendReceipt rows after rollback: %v, want none", got)
		}
		if n := countOrders(t, a); n != 0 {
			t.Errorf("%d orders after rollback, want 0", n)
		}
	})

	t.Run("unknown order is 404", func(t *testing.T) {
		b := openSQLite(t)
		a := newApp(b, &fakeMailer{})
		rec := httptest.NewRecorder()
		a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders/99", nil))
		if rec.Code != http.StatusNotFound {
			t.Errorf("status %d, want 404; body %s", rec.Code, rec.Body)
		}
	})
}

// cmpOrder ignores CreatedAt, set by the handler.
var cmpOrder = cmp.FilterPath(func(p cmp.Path) bool { return p.String() == "CreatedAt" }, cmp.Ignore())

func insertOrder(t *testing.T, a *app.App, email string) *app.Order {
	t.Helper()
	o := &app.Order{Email: email, Total: 1999, Status: app.StatusPaid, CreatedAt: time.Now().UTC()}
	if _, err := a.DB.NewInsert().Model(o).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return o
}

// The tasks with the dummy backend: RunReady runs them with the App in
// their context, as the worker does.
func TestSendReceipt(t *testing.T) {
	ctx := context.Background()

	t.Run("mails the receipt and enqueues the review", func(t *testing.T) {
		d := useDummy(t)
		mailer := &fakeMailer{}
		a := newApp(openSQLite(t), mailer)
		o := insertOrder(t, a, "ada@example.com")

		receipt, err := app.SendReceipt.Enqueue(ctx, app.ReceiptArgs{OrderID: o.ID})
		if err != nil {
			t.Fatal(err)
		}
		n, err := d.RunReady(app.WithApp(ctx, a))
		if err != nil {
			t.Fatal(err)
		}
		if n != 1 {
			t.Errorf("RunReady ran %d tasks, want 1 (the review is an hour away)", n)
		}

		if err := receipt.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		got, err := receipt.Value()
		if err != nil {
			t.Fatalf("SendReceipt: %v (%s)", err, receipt.Status)
		}
		wantMails := []app.Mail{{
			To:             "ada@example.com",
			Subject:        fmt.Sprintf("Your order #%d", o.ID),
			Body:           "Thank you! We charged 19.99.",
			IdempotencyKey: receipt.ID,
		}}
		if diff := cmp.Diff(wantMails, mailer.sent()); diff != "" {
			t.Errorf("mails (-want +got):\n%s", diff)
		}

		reviews, err := dummy.Enqueued(ctx, d, app.RequestReview)
		if err != nil {
			t.Fatal(err)
		}
		if len(reviews) != 1 {
			t.Fatalf("%d RequestReview tasks, want 1", len(reviews))
		}
		r := reviews[0]
		if diff := cmp.Diff(app.ReceiptResult{MessageID: "msg-1", ReviewTaskID: r.Result.ID}, got); diff != "" {
			t.Errorf("SendReceipt value (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(app.ReviewArgs{OrderID: o.ID}, r.Args); diff != "" {
			t.Errorf("RequestReview args (-want +got):\n%s", diff)
		}
		if r.Result.Status != tasks.StatusReady {
			t.Errorf("RequestReview status %s, want READY", r.Result.Status)
		}
		if delay := r.Result.RunAfter.Sub(r.Result.EnqueuedAt); delay < app.ReviewDelay-time.Second || delay > app.ReviewDelay+time.Second {
			t.Errorf("RequestReview runs %v after its enqueue, want %v", delay, app.ReviewDelay)
		}
		var status string
		if err := a.DB.NewSelect().Model((*app.Order)(nil)).Column("status").Where("id = ?", o.ID).Scan(ctx, &status); err != nil {
			t.Fatal(err)
		}
		if status != app.StatusReceiptSent {
			t.Errorf("order status %q, want %q", status, app.StatusReceiptSent)
		}

		// RunAll also runs the deferred review.
		if _, err := d.RunAll(app.WithApp(ctx, a)); err != nil {
			t.Fatal(err)
		}
		if got := len(mailer.sent()); got != 2 {
			t.Errorf("%d mails after RunAll, want 2 (receipt, review request)", got)
		}
	})
}

// runWorker runs a database worker on b, with a in its tasks' context
// (nil: none), until no task is due.
func runWorker(t *testing.T, b *database.Backend, a *app.App) {
	t.Helper()
	cfg := database.WorkerConfig{ExitWhenEmpty: true, PollInterval: 20 * time.Millisecond}
	if a != nil {
		cfg.TaskContext = func(ctx context.Context) context.Context { return app.WithApp(ctx, a) }
	}
	w, err := database.NewWorker(b, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// The failures, on the database backend (the dummy backend gives every task
// a single attempt, so it cannot tell NoRetry from a retry).
func TestSendReceiptFailures(t *testing.T) {
	ctx := context.Background()

	t.Run("missing order fails without retry", func(t *testing.T) {
		b := openSQLite(t)
		t.Cleanup(tasks.RegisterBackend(b))
		mailer := &fakeMailer{}
		a := newApp(b, mailer)

		receipt, err := app.SendReceipt.Enqueue(ctx, app.ReceiptArgs{OrderID: 404})
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, b, a)
		if err := receipt.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if receipt.Status != tasks.StatusFailed || receipt.Attempts != 1 || receipt.MaxAttempts != 5 {
			t.Errorf("status %s after %d of %d attempts, want FAILED after 1 of 5", receipt.Status, receipt.Attempts, receipt.MaxAttempts)
		}
		if e := receipt.LastError(); e == nil || !strings.Contains(e.Message, app.ErrOrderNotFound.Error()) {
			t.Errorf("last error %v, want one saying %q", e, app.ErrOrderNotFound)
		}
		if n := len(mailer.sent()); n != 0 {
			t.Errorf("%d mails, want 0", n)
		}
	})

	t.Run("without an App it is retried", func(t *testing.T) {
		b := openSQLite(t)
		t.Cleanup(tasks.RegisterBackend(b))

		receipt, err := app.SendReceipt.Enqueue(ctx, app.ReceiptArgs{OrderID: 1})
		if err != nil {
			t.Fatal(err)
		}
		runWorker(t, b, nil)
		if err := receipt.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if receipt.Status != tasks.StatusReady || receipt.Attempts != 1 {
			t.Errorf("status %s after %d attempts, want READY (to be retried) after 1", receipt.Status, receipt.Attempts)
		}
	})
}

// End to end on SQLite: the handler writes an order and its task in one
// transaction, a database worker with the App in its tasks' context runs
// SendReceipt, and the follow-up is a READY row of the same database.
func TestEndToEndSQLite(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := openSQLite(t)
	t.Cleanup(tasks.RegisterBackend(b))
	mailer := &fakeMailer{}
	a := newApp(b, mailer)

	srv := httptest.NewServer(a.Handler())
	defer srv.Close()
	res, err := http.Post(srv.URL+"/orders", "application/json",
		bytes.NewBufferString(`{"email":"grace@example.com","total":1250,"card":"4242424242424242"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusCreated {
		body, _ := io.ReadAll(res.Body)
		t.Fatalf("POST /orders: %s: %s", res.Status, body)
	}
	var resp app.OrderResponse
	if err := json.NewDecoder(res.Body).Decode(&resp); err != nil {
		t.Fatal(err)
	}

	runWorker(t, b, a)

	receipt, err := app.SendReceipt.GetResult(ctx, resp.ReceiptTaskID)
	if err != nil {
		t.Fatal(err)
	}
	v, err := receipt.Value()
	if err != nil {
		t.Fatalf("SendReceipt: %s: %v", receipt.Status, err)
	}
	if n := len(mailer.sent()); n != 1 {
		t.Errorf("%d mails, want 1", n)
	}

	review, err := app.RequestReview.GetResult(ctx, v.ReviewTaskID)
	if err != nil {
		t.Fatalf("the follow-up is not a row of the worker's backend: %v", err)
	}
	if review.Status != tasks.StatusReady || review.Backend != b.Name() {
		t.Errorf("follow-up: status %s on backend %q, want READY on %q", review.Status, review.Backend, b.Name())
	}
	if until := time.Until(review.RunAfter); until < app.ReviewDelay-time.Minute {
		t.Errorf("follow-up due in %v, want about %v", until, app.ReviewDelay)
	}
	args, err := app.RequestReview.DecodeArgs(review.Args)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(app.ReviewArgs{OrderID: resp.Order.ID}, args); diff != "" {
		t.Errorf("follow-up args (-want +got):\n%s", diff)
	}
}
