package database

import (
	"context"
	"testing"

	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// BenchmarkFlowClaim is what flow control costs at claim time (see
// flow.go): batches of 100 due tasks claimed
//
//   - plain: the claim statement alone (the worker before flow control);
//   - probed: the probe of gotasks_queue (flowActive) and the claim
//     statement, what every claim round does when no queue has a limit;
//   - limited: the limited claim (claimFlow) of a queue whose global limit
//     (1000) never binds.
//
// The claimed rows are deleted off the clock after each claim, so that the
// RUNNING rows the limited claim counts stay at one batch, as in a worker.
//
//	go test -run XXX -bench FlowClaim ./backends/database/
func BenchmarkFlowClaim(b *testing.B) {
	for _, d := range dbtest.Dialects {
		for _, mode := range []string{"plain", "probed", "limited"} {
			b.Run(d+"/"+mode, func(b *testing.B) {
				ctx := context.Background()
				be := wbBackend(b, d)
				if mode == "limited" {
					if err := be.SetQueueLimit(ctx, tasks.DefaultQueue, 1000); err != nil {
						b.Fatal(err)
					}
				}
				query := be.claimQuery(nil, nil)
				left := 0
				b.ResetTimer()
				for range b.N {
					if left < wbBatch {
						b.StopTimer()
						wbFill(b, be, 20*wbBatch)
						left += 20 * wbBatch
						b.StartTimer()
					}
					var (
						rows []*row
						err  error
					)
					switch mode {
					case "plain":
						rows, err = be.claim(ctx, query, wbBatch, "bench-worker", nil, nil, false)
					case "probed":
						var on bool
						if on, err = be.flowActive(ctx); err == nil && !on {
							rows, err = be.claim(ctx, query, wbBatch, "bench-worker", nil, nil, false)
						}
					case "limited":
						rows, err = be.claimFlow(ctx, "", wbBatch, "bench-worker", nil, nil, nil, true)
					}
					if err != nil || len(rows) != wbBatch {
						b.Fatalf("claimed %d rows, %v; want %d", len(rows), err, wbBatch)
					}
					left -= len(rows)
					b.StopTimer()
					if _, err := be.db.DB.ExecContext(ctx, `DELETE FROM gotasks_task WHERE status = 'RUNNING'`); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
				}
				if s := b.Elapsed().Seconds(); s > 0 {
					b.ReportMetric(b.Elapsed().Seconds()*1e6/float64(b.N), "µs/claim")
				}
			})
		}
	}
}
