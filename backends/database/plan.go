package database

import (
	"fmt"
	"math/bits"
	"time"
)

// Plan generations. pgx prepares the claim and completion statements once
// per connection, and after five executions PostgreSQL may switch them to a
// generic plan that it keeps until the table's statistics change. A plan made
// while the table was empty or small (a fresh deployment, a test) is a
// sequential scan, and it stays as the table grows: with autovacuum slow or
// off, a worker was seen stuck at a quarter of its speed, each completion
// scanning 50,000 rows. Planning every execution instead costs ~0.5 ms a
// statement (10 µs a task, measured). So the statements carry a generation
// comment that changes each time the worker's processed count doubles from
// replanAfter, and every replanPeriod: a new text is a new prepared statement,
// planned afresh for the table as it is now. That is a few dozen statements
// over a worker's life, bounded by pgx's statement cache.
const (
	replanAfter  = 1000
	replanPeriod = 10 * time.Minute
)

// planGeneration is the generation of the statements' plans after a worker
// processed n tasks in elapsed: one more at 1×, 2×, 4×… replanAfter tasks and
// every replanPeriod.
func planGeneration(n int64, elapsed time.Duration) int {
	return bits.Len64(uint64(max(n, 0)/replanAfter)) + int(elapsed/replanPeriod)
}

// planTagger caches the generation comment of one goroutine's statements.
type planTagger struct {
	gen int
	tag string
}

// tag returns the comment to append to the claim and completion statements
// of a worker that processed n tasks since start (empty where the backend
// has no use for plan generations).
func (p *planTagger) comment(b *Backend, n int64, start time.Time) string {
	if !b.has(featPlanGenerations) {
		return ""
	}
	gen := planGeneration(n, time.Since(start))
	if p.tag == "" || gen != p.gen {
		p.gen, p.tag = gen, fmt.Sprintf("\n/* gotasks plan %d */", gen)
	}
	return p.tag
}
