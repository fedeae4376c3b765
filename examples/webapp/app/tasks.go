package app

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// ErrOrderNotFound is the error of a task whose order does not exist.
var ErrOrderNotFound = errors.New("order not found")

// errNoApp is the error of a task run without an App in its context: the
// worker was built without WithApp. It is retried like any error, so that
// the tasks run once a fixed worker is deployed.
var errNoApp = errors.New("no *app.App in the task's context: the worker must put it there with app.WithApp (workercmd.Command.Setup)")

// ReviewDelay is how long after the receipt RequestReview runs.
const ReviewDelay = time.Hour

// ReceiptArgs are the arguments of SendReceipt.
type ReceiptArgs struct {
	OrderID int64 `json:"order_id"`
}

// ReceiptResult is what SendReceipt returns.
type ReceiptResult struct {
	// MessageID is the mail provider's id of the receipt.
	MessageID string `json:"message_id"`
	// ReviewTaskID is the result id of the RequestReview follow-up.
	ReviewTaskID string `json:"review_task_id"`
}

// SendReceipt mails the receipt of an order, marks the order
// receipt_sent, and enqueues RequestReview to run ReviewDelay later. The
// follow-up names no backend, so it goes to the backend running
// SendReceipt: a row of the worker's database, not an inline run.
//
// An order that does not exist fails at once (tasks.NoRetry): retrying
// cannot make it appear.
var SendReceipt = tasks.Define("webapp.send_receipt", sendReceipt,
	tasks.WithQueue("emails"), tasks.WithMaxAttempts(5))

func sendReceipt(ctx context.Context, args ReceiptArgs) (ReceiptResult, error) {
	a := FromContext(ctx)
	if a == nil {
		return ReceiptResult{}, errNoApp
	}
	log := tasks.Logger(ctx) // carries task, task_id, attempt, …
	tc, _ := tasks.FromContext(ctx)

	o, err := a.order(ctx, args.OrderID)
	if errors.Is(err, ErrOrderNotFound) {
		log.Warn("no such order, not retrying", "order_id", args.OrderID)
		return ReceiptResult{}, tasks.NoRetry(err)
	}
	if err != nil {
		return ReceiptResult{}, err
	}

	msgID, err := a.Mailer.Send(ctx, Mail{
		To:             o.Email,
		Subject:        fmt.Sprintf("Your order #%d", o.ID),
		Body:           fmt.Sprintf("Thank you! We charged %d.%02d.", o.Total/100, o.Total%100),
		IdempotencyKey: tc.ResultID,
	})
	if err != nil {
		return ReceiptResult{}, fmt.Errorf("send receipt of order %d: %w", o.ID, err)
	}
	if _, err := a.DB.NewUpdate().Model((*Order)(nil)).
		Set("status = ?", StatusReceiptSent).
		Where("id = ?", o.ID).
		Exec(ctx); err != nil {
		return ReceiptResult{}, err
	}

	review, err := RequestReview.Using(tasks.WithDelay(ReviewDelay)).Enqueue(ctx, ReviewArgs{OrderID: o.ID})
	if err != nil {
		return ReceiptResult{}, fmt.Errorf("enqueue review request: %w", err)
	}
	log.Info("receipt sent", "order_id", o.ID, "message_id", msgID, "review_task_id", review.ID)
	return ReceiptResult{MessageID: msgID, ReviewTaskID: review.ID}, nil
}

// ReviewArgs are the arguments of RequestReview.
type ReviewArgs struct {
	OrderID int64 `json:"order_id"`
}

// RequestReview asks the customer to review an order and returns the
// message id of the mail.
var RequestReview = tasks.Define("webapp.request_review",
	func(ctx context.Context, args ReviewArgs) (string, error) {
		a := FromContext(ctx)
		if a == nil {
			return "", errNoApp
		}
		o, err := a.order(ctx, args.OrderID)
		if errors.Is(err, ErrOrderNotFound) {
			return "", tasks.NoRetry(err)
		}
		if err != nil {
			return "", err
		}
		tc, _ := tasks.FromContext(ctx)
		return a.Mailer.Send(ctx, Mail{
			To:             o.Email,
			Subject:        fmt.Sprintf("How was order #%d?", o.ID),
			Body:           "Tell us what you think.",
			IdempotencyKey: tc.ResultID,
		})
	},
	tasks.WithQueue("emails"), tasks.WithMaxAttempts(5))

// order loads an order; a missing one is an error wrapping
// ErrOrderNotFound.
func (a *App) order(ctx context.Context, id int64) (*Order, error) {
	o := new(Order)
	err := a.DB.NewSelect().Model(o).Where("id = ?", id).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("order %d: %w", id, ErrOrderNotFound)
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}
