// Package exampletasks defines the example tasks used by the quickstart
// program and built into the example worker (examples/worker). Importing it
// registers them.
package exampletasks

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// EmailArgs are the arguments of SendEmail.
type EmailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// SendEmail pretends to send an email and returns a message id.
var SendEmail = tasks.Define("examples.send_email",
	func(ctx context.Context, a EmailArgs) (string, error) {
		if !strings.Contains(a.To, "@") {
			return "", fmt.Errorf("invalid address %q", a.To)
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case <-ctx.Done():
			return "", ctx.Err()
		}
		return fmt.Sprintf("<%d@example.com>", time.Now().UnixNano()%1e9), nil
	},
	tasks.WithQueue("emails"), tasks.WithMaxAttempts(3))

// Sum adds numbers.
var Sum = tasks.Define("examples.sum", func(ctx context.Context, xs []int) (int, error) {
	total := 0
	for _, x := range xs {
		total += x
	}
	return total, nil
})

// ReportArgs are the arguments of Report.
type ReportArgs struct {
	Name string `json:"name"`
	Rows int    `json:"rows"`
}

// ReportResult is what Report returns.
type ReportResult struct {
	Name     string        `json:"name"`
	Rows     int           `json:"rows"`
	Duration time.Duration `json:"duration"`
}

// Report builds a (pretend) report: a typed struct result.
var Report = tasks.Define("examples.report", func(ctx context.Context, a ReportArgs) (ReportResult, error) {
	start := time.Now()
	time.Sleep(time.Duration(a.Rows) * time.Microsecond)
	return ReportResult{Name: a.Name, Rows: a.Rows, Duration: time.Since(start).Round(time.Microsecond)}, nil
}, tasks.WithPriority(10))

var flakyCalls atomic.Int64

// Flaky fails on its first attempt and succeeds on the retry (retries are
// immediate here: backoff 0).
var Flaky = tasks.Define("examples.flaky", func(ctx context.Context, key string) (string, error) {
	if flakyCalls.Add(1)%2 == 1 {
		return "", errors.New("transient failure, will be retried")
	}
	return "ok after retry: " + key, nil
}, tasks.WithMaxAttempts(3), tasks.WithBackoff(tasks.ConstantBackoff(0)))

// Divide fails for a zero divisor: it ends FAILED after one attempt.
var Divide = tasks.Define("examples.divide", func(ctx context.Context, a [2]int) (int, error) {
	if a[1] == 0 {
		return 0, errors.New("division by zero")
	}
	return a[0] / a[1], nil
}, tasks.WithMaxAttempts(1))

// Noop does nothing; used by benchmarks.
var Noop = tasks.Define("examples.noop", func(ctx context.Context, _ struct{}) (struct{}, error) {
	return struct{}{}, nil
})

// Sleep waits for the given number of milliseconds and returns it. It
// honours its context: cancelled (a worker's hard stop, a timeout), it fails
// with the context's error at once. Used by the shutdown tests of the
// worker command.
var Sleep = tasks.Define("examples.sleep", func(ctx context.Context, ms int) (int, error) {
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return ms, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
})
