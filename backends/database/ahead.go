package database

import (
	"math"
	"time"
)

// Claiming ahead. A claim takes a round trip and a statement's work (a few
// milliseconds); with short tasks, the slots it was sized for are long free
// again when it returns, and a worker that claims only free slots runs each
// batch in lockstep with its claim. So the fetcher also claims for the
// running tasks expected to finish while the claim is in flight: the recent
// rate at which slots are freed times the recent claim latency (Little's
// law), at most the running tasks. For tasks that run longer than a claim
// takes, that is zero: nothing is taken ahead of free slots. A task claimed
// ahead waits in the fetcher for a slot; if none frees within aheadWait
// (the prediction was wrong: the running tasks turned out long), or the
// worker stops, the tasks still waiting are released: READY again, as if
// never claimed.
type aheadEstimator struct {
	last     time.Time
	freed    int64   // slots freed counter at last
	rate     float64 // slots freed per second (moving average)
	latency  float64 // claim latency in seconds (moving average)
	observed bool    // latency holds a sample
}

// minAheadWait and maxAheadWait bound how long a task claimed ahead waits
// for a slot before it is released (ten recent claim latencies in between).
const (
	minAheadWait = 50 * time.Millisecond
	maxAheadWait = time.Second
)

// aheadRateTau is the time constant of the freeing rate's moving average:
// a sample's weight grows with the time it covers, so that one slot freed
// microseconds after the last sample does not read as a burst, and a long
// gap (an idle worker) replaces the estimate.
const aheadRateTau = 20 * time.Millisecond

// sample updates the freeing rate from the slots freed so far (freed, a
// counter) at t.
func (e *aheadEstimator) sample(t time.Time, freed int64) {
	if e.last.IsZero() {
		e.last, e.freed = t, freed
		return
	}
	dt := t.Sub(e.last).Seconds()
	if dt <= 0 {
		return
	}
	inst := float64(freed-e.freed) / dt
	e.last, e.freed = t, freed
	e.rate += (1 - math.Exp(-dt/aheadRateTau.Seconds())) * (inst - e.rate)
}

// claimed records the latency of one claim statement.
func (e *aheadEstimator) claimed(d time.Duration) {
	if !e.observed {
		e.latency, e.observed = d.Seconds(), true
		return
	}
	e.latency += 0.2 * (d.Seconds() - e.latency)
}

// ahead returns how many of the running tasks are expected to finish during
// the next claim.
func (e *aheadEstimator) ahead(running int) int {
	return min(running, int(e.rate*e.latency))
}

// missed is told that tasks claimed ahead found no slot in time: the
// running tasks are longer than the rate said. Claim nothing ahead until
// slots are seen freeing again.
func (e *aheadEstimator) missed() { e.rate = 0 }

// wait is how long a task claimed ahead may wait for a slot.
func (e *aheadEstimator) wait() time.Duration {
	return min(maxAheadWait, max(minAheadWait, time.Duration(10*e.latency*float64(time.Second))))
}
