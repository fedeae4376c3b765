// Package app is the shop of examples/webapp: a bun model (Order), the
// application's dependencies (App), its HTTP handlers and its tasks.
//
// The web process (cmd/web) serves Handler; the worker (cmd/worker) runs the
// tasks. Both import this package, which defines (registers) the tasks.
//
// The dependencies reach the tasks through the context, not through package
// globals: the worker puts its *App in the tasks' context with WithApp
// (workercmd.Command.Setup, or database.WorkerConfig.TaskContext), and a
// task reads it back with FromContext.
package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/tasks"
)

// Order is a customer's order: the application's own table, which lives in
// the same database as the tasks so that both are written in one
// transaction.
type Order struct {
	bun.BaseModel `bun:"table:webapp_orders"`

	ID        int64     `bun:",pk,autoincrement" json:"id"`
	Email     string    `bun:",notnull" json:"email"`
	Total     int64     `bun:",notnull" json:"total"` // in cents
	Status    string    `bun:",notnull" json:"status"`
	CreatedAt time.Time `bun:",notnull" json:"created_at"`
}

// The statuses of an Order.
const (
	StatusPaid        = "paid"         // created and charged; the receipt is queued
	StatusReceiptSent = "receipt_sent" // SendReceipt mailed the receipt
)

// CreateSchema creates the application's tables if they do not exist yet.
// (A real application would use its migration tool; gotasks' own table is
// created by the backend.)
func CreateSchema(ctx context.Context, db bun.IDB) error {
	_, err := db.NewCreateTable().Model((*Order)(nil)).IfNotExists().Exec(ctx)
	return err
}

// Mail is a message handed to a Mailer.
type Mail struct {
	To      string
	Subject string
	Body    string
	// IdempotencyKey lets the mail provider drop a duplicate when a task
	// that already sent the mail runs again (a retry after a crash): the
	// tasks use their result id.
	IdempotencyKey string
}

// Mailer sends mail and returns the provider's message id.
type Mailer interface {
	Send(ctx context.Context, m Mail) (string, error)
}

// LogMailer is a fake Mailer that only logs the mail.
type LogMailer struct {
	// Logger receives the mails; nil means the running task's logger
	// (tasks.Logger), which carries the task's id and attempt.
	Logger *slog.Logger
}

// Send implements Mailer: it logs m and returns a made-up message id.
func (l LogMailer) Send(ctx context.Context, m Mail) (string, error) {
	log := l.Logger
	if log == nil {
		log = tasks.Logger(ctx)
	}
	id := "<" + m.IdempotencyKey + "@mail.example.com>"
	log.InfoContext(ctx, "mail sent", "to", m.To, "subject", m.Subject, "message_id", id)
	return id, nil
}

// ErrDeclined is returned by a Payments whose charge was declined.
var ErrDeclined = errors.New("card declined")

// Payments charges a customer's card.
type Payments interface {
	Charge(ctx context.Context, card string, amount int64) error
}

// DeclinedCard is the card number that FakePayments declines (Stripe's
// test card for a generic decline).
const DeclinedCard = "4000000000000002"

// FakePayments is a fake Payments: it accepts every card but DeclinedCard.
type FakePayments struct {
	mu      sync.Mutex
	charged int64
}

// Charge implements Payments.
func (p *FakePayments) Charge(_ context.Context, card string, amount int64) error {
	if card == DeclinedCard {
		return ErrDeclined
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.charged += amount
	return nil
}

// App holds the application's dependencies. It is built once at start-up,
// by the web process and by the worker, and shared by the handlers and the
// tasks.
type App struct {
	// DB is the application's database, also the tasks' database.
	DB *bun.DB
	// Mailer sends the receipts and review requests.
	Mailer Mailer
	// Payments charges the orders.
	Payments Payments
	// Logger is the handlers' logger; tasks log with tasks.Logger(ctx).
	Logger *slog.Logger
}

type appKey struct{}

// WithApp returns ctx carrying a, for the tasks (see FromContext).
func WithApp(ctx context.Context, a *App) context.Context {
	return context.WithValue(ctx, appKey{}, a)
}

// FromContext returns the App that WithApp put in ctx, or nil.
func FromContext(ctx context.Context) *App {
	a, _ := ctx.Value(appKey{}).(*App)
	return a
}

func (a *App) logger() *slog.Logger {
	if a.Logger != nil {
		return a.Logger
	}
	return slog.Default()
}
