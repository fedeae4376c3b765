package database

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// WorkerTestListenerConnected is closed once b's PostgreSQL notification listener
// listens (never on SQLite). Exported for the worker tests of package
// database_test.
func WorkerTestListenerConnected(b *Backend) <-chan struct{} { return b.hub.connected }

// The worker's hot paths: claiming a batch of due tasks, and recording a
// batch of outcomes. Run with
//
//	go test -run XXX -bench 'Claim|Complete' ./backends/database/

const wbBatch = 100

// wbBackend opens a migrated backend on a fresh database of dialect (also
// used by the worker's internal tests).
func wbBackend(b testing.TB, dialect string) *Backend {
	b.Helper()
	be, err := Open(context.Background(), dbtest.DSN(b, dialect), WithAutoMigrate(true),
		WithName("bench"), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = be.Close() })
	return be
}

// wbFill enqueues n due tasks.
func wbFill(b *testing.B, be *Backend, n int) {
	b.Helper()
	reqs := make([]*tasks.EnqueueRequest, n)
	for i := range reqs {
		reqs[i] = &tasks.EnqueueRequest{ID: tasks.NewID(), TaskName: "database_bench.noop",
			Args: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), Queue: tasks.DefaultQueue}
	}
	for start := 0; start < n; start += 5000 {
		if _, err := be.EnqueueMany(context.Background(), reqs[start:min(start+5000, n)]); err != nil {
			b.Fatal(err)
		}
	}
}

// wbClaimer claims batches from a pre-filled table, refilling it (off
// the clock when timed) when it runs low.
type wbClaimer struct {
	b     *testing.B
	be    *Backend
	query string
	left  int
}

func (c *wbClaimer) claim(timed bool) []*row {
	const fill = 20 * wbBatch
	if c.left < wbBatch {
		if timed {
			c.b.StopTimer()
		}
		wbFill(c.b, c.be, fill)
		c.left += fill
		if timed {
			c.b.StartTimer()
		}
	}
	rows, err := c.be.claim(context.Background(), c.query, wbBatch, "bench-worker", nil, nil, false)
	if err != nil {
		c.b.Fatal(err)
	}
	if len(rows) != wbBatch {
		c.b.Fatalf("claimed %d rows; want %d", len(rows), wbBatch)
	}
	c.left -= len(rows)
	return rows
}

func wbReport(b *testing.B) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N*wbBatch)/s, "tasks/s")
	}
}

// BenchmarkClaim claims batches of 100 due tasks (one statement each).
func BenchmarkClaim(b *testing.B) {
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			be := wbBackend(b, d)
			c := &wbClaimer{b: b, be: be, query: be.claimQuery(nil, nil)}
			b.ResetTimer()
			for range b.N {
				c.claim(true)
			}
			wbReport(b)
		})
	}
}

// BenchmarkComplete records batches of 100 outcomes (one statement each):
// SUCCESSFUL with a return value.
func BenchmarkComplete(b *testing.B) {
	for _, d := range dbtest.Dialects {
		b.Run(d, func(b *testing.B) {
			be := wbBackend(b, d)
			c := &wbClaimer{b: b, be: be, query: be.claimQuery(nil, nil)}
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				rows := c.claim(false)
				outs := make([]*outcome, len(rows))
				end := now()
				for i, r := range rows {
					rec := r.RawResult.Clone()
					rec.Status, rec.ReturnValue, rec.FinishedAt = tasks.StatusSuccessful, json.RawMessage(`{"ok":true}`), &end
					outs[i] = &outcome{rec: rec, attempt: rec.Attempts}
				}
				b.StartTimer()
				done, err := be.complete(context.Background(), "bench-worker", "", outs)
				if err != nil {
					b.Fatal(err)
				}
				if len(done) != len(outs) {
					b.Fatalf("recorded %d of %d outcomes", len(done), len(outs))
				}
			}
			wbReport(b)
		})
	}
}
