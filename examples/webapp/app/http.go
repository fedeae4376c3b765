package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/gotasks/gotasks/backends/database"
)

// OrderRequest is the body of POST /orders.
type OrderRequest struct {
	Email string `json:"email"`
	Total int64  `json:"total"` // in cents
	Card  string `json:"card"`
}

// OrderResponse is the body of a successful POST /orders.
type OrderResponse struct {
	Order Order `json:"order"`
	// ReceiptTaskID is the result id of the SendReceipt task.
	ReceiptTaskID string `json:"receipt_task_id"`
}

// Handler returns the application's HTTP handler:
//
//	POST /orders       create an order (OrderRequest), charge it and queue its receipt
//	GET  /orders/{id}  the order as JSON
func (a *App) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", a.createOrder)
	mux.HandleFunc("GET /orders/{id}", a.getOrder)
	return mux
}

// createOrder inserts the order, enqueues its receipt and charges the card,
// all in one transaction of the application's own *bun.DB: a declined card
// rolls back the order and the task together, and a committed order always
// has its receipt task.
func (a *App) createOrder(w http.ResponseWriter, r *http.Request) {
	var req OrderRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "invalid JSON: "+err.Error())
		return
	}
	if !strings.Contains(req.Email, "@") || req.Total <= 0 {
		httpError(w, http.StatusBadRequest, "email and a positive total (in cents) are required")
		return
	}

	o := Order{Email: req.Email, Total: req.Total, Status: StatusPaid, CreatedAt: time.Now().UTC()}
	var resp OrderResponse
	err := a.DB.RunInTx(r.Context(), nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&o).Exec(ctx); err != nil {
			return err
		}
		// The task is a row written in tx: it exists if and only if tx
		// commits.
		receipt, err := SendReceipt.Enqueue(database.WithTx(ctx, tx), ReceiptArgs{OrderID: o.ID})
		if err != nil {
			return err
		}
		resp.ReceiptTaskID = receipt.ID
		// Last: a declined card undoes the order and the task.
		return a.Payments.Charge(ctx, req.Card, o.Total)
	})
	switch {
	case errors.Is(err, ErrDeclined):
		httpError(w, http.StatusPaymentRequired, err.Error())
		return
	case err != nil:
		a.logger().ErrorContext(r.Context(), "create order", "err", err)
		httpError(w, http.StatusInternalServerError, "could not create the order")
		return
	}
	resp.Order = o
	w.Header().Set("Location", fmt.Sprintf("/orders/%d", o.ID))
	writeJSON(w, http.StatusCreated, resp)
}

func (a *App) getOrder(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil {
		httpError(w, http.StatusBadRequest, "invalid order id")
		return
	}
	o, err := a.order(r.Context(), id)
	switch {
	case errors.Is(err, ErrOrderNotFound):
		httpError(w, http.StatusNotFound, err.Error())
		return
	case err != nil:
		a.logger().ErrorContext(r.Context(), "get order", "err", err)
		httpError(w, http.StatusInternalServerError, "could not read the order")
		return
	}
	writeJSON(w, http.StatusOK, o)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}
