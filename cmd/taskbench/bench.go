package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/signals"
	"github.com/gotasks/gotasks/tasks"
)

// enqueueChunk is the EnqueueMany size used to build backlogs.
const enqueueChunk = 10000

// noop is the benchmark task on the benchmark's backend.
var noop = exampletasks.Noop.Using(tasks.WithBackend(backendName))

// figure is one measured quantity, one value per run.
type figure struct {
	name, unit string
	prec       int
	vals       []float64
}

func (f *figure) median() float64 { return median(f.vals) }

type bench struct {
	o      *options
	t      *target
	stdout io.Writer
	stderr io.Writer
	figs   []*figure
}

func newBench(ctx context.Context, o *options, stdout, stderr io.Writer) (*bench, error) {
	t, err := newTarget(ctx, o.database, o.keep)
	if err != nil {
		return nil, err
	}
	return &bench{o: o, t: t, stdout: &syncWriter{w: stdout}, stderr: &syncWriter{w: stderr}}, nil
}

// syncWriter serialises the writes to w: the output of several worker
// children (their stdout lines, their stderr) and of the benchmark meet
// there.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (bn *bench) close() { bn.t.close() }

func (bn *bench) logf(format string, args ...any) {
	fmt.Fprintf(bn.stdout, format+"\n", args...)
}

// record adds the value of a figure for the current run.
func (bn *bench) record(name string, v float64, unit string, prec int) {
	for _, f := range bn.figs {
		if f.name == name {
			f.vals = append(f.vals, v)
			return
		}
	}
	bn.figs = append(bn.figs, &figure{name: name, unit: unit, prec: prec, vals: []float64{v}})
}

func (bn *bench) printFigures() {
	if len(bn.figs) == 0 {
		return
	}
	bn.logf("")
	bn.logf("# figures (median of %d run(s) each; NAME: VALUE UNIT)", bn.o.runs)
	for _, f := range bn.figs {
		fmt.Fprintf(bn.stdout, "%s: %s %s\n", f.name, strconv.FormatFloat(f.median(), 'f', f.prec, 64), f.unit)
	}
}

func (bn *bench) printEnvironment(ctx context.Context) {
	host, _ := os.Hostname()
	bn.logf("# machine: host=%s nproc=%d GOMAXPROCS=%d go=%s %s/%s cpu=%q", host, runtime.NumCPU(),
		runtime.GOMAXPROCS(0), runtime.Version(), runtime.GOOS, runtime.GOARCH, cpuModel())
	bn.logf("# dialect: %s", bn.t.dialect)
	if bn.t.dialect == database.Postgres {
		bn.logf("# postgres: %s", strings.Join(bn.t.settings(ctx), " "))
		bn.logf("# postgres: backend pool: database.Open's (max 32 open connections); fresh schema per run")
	} else {
		dir := bn.t.base
		if dir == "" {
			dir = os.TempDir()
		}
		bn.logf("# sqlite: fresh file per run in a temp dir under %s; pragmas: database.Open's (WAL, synchronous=NORMAL, busy_timeout, _txlock=immediate, max 8 connections)", dir)
	}
	bn.logf("# worker: %s", bn.o.describeWorker())
	bn.logf("# runs: %d per mode (figures are medians)", bn.o.runs)
}

// loadAvg returns the 1-minute load average (others may be using the CPU).
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "?"
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "?"
}

func (bn *bench) runMode(ctx context.Context, mode string) error {
	if mode == "floor" && bn.t.dialect != database.Postgres {
		return errFloorNeedsPostgres
	}
	for i := 1; i <= bn.o.runs; i++ {
		bn.logf("== %s: run %d/%d (load average %s)", mode, i, bn.o.runs, loadAvg())
		mctx, cancel := context.WithTimeout(ctx, bn.o.timeout)
		err := bn.withFresh(mctx, func(f *fresh) error {
			switch mode {
			case "burndown":
				return bn.burndown(mctx, f, i)
			case "continuous":
				return bn.continuous(mctx, f)
			case "latency":
				return bn.latency(mctx, f)
			case "enqueue":
				return bn.enqueue(mctx, f)
			case "scaling":
				return bn.scaling(mctx, f)
			case "floor":
				return bn.floor(mctx, f)
			}
			return fmt.Errorf("unknown mode %q", mode)
		})
		cancel()
		if err != nil {
			return fmt.Errorf("run %d: %w", i, err)
		}
	}
	return nil
}

// withFresh runs fn on a fresh database and removes it afterwards (unless
// --keep).
func (bn *bench) withFresh(ctx context.Context, fn func(f *fresh) error) error {
	f, err := bn.t.fresh(ctx)
	if err != nil {
		return err
	}
	bn.logf("  database: %s", f.label)
	err = fn(f)
	if cerr := f.cleanup(); cerr != nil {
		fmt.Fprintf(bn.stderr, "taskbench: remove %s: %v\n", f.label, cerr)
	}
	return err
}

// fillLogged fills the backlog with n tasks (fill) and says how fast.
func (bn *bench) fillLogged(ctx context.Context, n int) error {
	d, err := fill(ctx, n)
	if err != nil {
		return fmt.Errorf("enqueue: %w", err)
	}
	bn.logf("  enqueued %d tasks with EnqueueMany(%d) in %v (%.0f tasks/s)", n, min(n, enqueueChunk),
		d.Round(time.Millisecond), perSecond(int64(n), d))
	return nil
}

// fill enqueues n no-op tasks with EnqueueMany in chunks of enqueueChunk
// through the registered backend and returns the time it took.
func fill(ctx context.Context, n int) (time.Duration, error) {
	start := time.Now()
	for done := 0; done < n; {
		k := min(enqueueChunk, n-done)
		if _, err := noop.EnqueueMany(ctx, make([]struct{}, k)); err != nil {
			return 0, err
		}
		done += k
	}
	return time.Since(start), nil
}

func countStatus(ctx context.Context, b *database.Backend, status tasks.Status) (int64, error) {
	var n int64
	err := b.DB().DB.QueryRowContext(ctx, `SELECT count(*) FROM gotasks_task WHERE backend = $1 AND status = $2`,
		backendName, string(status)).Scan(&n)
	return n, err
}

func perSecond(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func mib(kib int64) float64 { return float64(kib) / 1024 }

// profilePath returns the CPU profile file of run i.
func (bn *bench) profilePath(path string, i int) string {
	if path == "" || bn.o.runs == 1 {
		return path
	}
	return path + "." + strconv.Itoa(i)
}

// burndown: enqueue --tasks tasks, then time --workers worker children
// draining them, and measure the cost per task (PostgreSQL on this
// machine).
func (bn *bench) burndown(ctx context.Context, f *fresh, run int) error {
	b, err := bn.t.open(ctx, f, "taskbench-producer")
	if err != nil {
		return err
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	if err := bn.applyGlobalLimit(ctx, b); err != nil {
		return err
	}
	n := bn.o.tasks
	if err := bn.fillLogged(ctx, n); err != nil {
		return err
	}
	nw := bn.o.workers
	prof, mprof := bn.profilePath(bn.o.cpuprofile, run), bn.profilePath(bn.o.memprofile, run)
	var (
		meter *costMeter
		c     cost
	)
	hooks := childHooks{
		beforeGo: func() error {
			var err error
			meter, err = bn.startCost(ctx)
			return err
		},
		afterReports: func() error {
			if meter == nil {
				return nil
			}
			var err error
			c, err = meter.stop(ctx)
			return err
		},
	}
	results, err := bn.runChildren(ctx, f, nw, n, prof, mprof, hooks)
	if err != nil {
		return err
	}
	ok, err := countStatus(ctx, b, tasks.StatusSuccessful)
	if err != nil {
		return err
	}
	if ok != int64(n) {
		return fmt.Errorf("%d SUCCESSFUL rows after the burn-down, want %d", ok, n)
	}
	var (
		rate     float64
		peakRSS  int64
		span     time.Duration
		workCPU  time.Duration
		first    = results[0].StartUnixNS
		last     = results[0].EndUnixNS
		label    = "worker child"
		profNote = ""
	)
	for _, r := range results {
		first, last = min(first, r.StartUnixNS), max(last, r.EndUnixNS)
		peakRSS = max(peakRSS, r.VmHWMKiB)
		workCPU += r.cpu()
	}
	if nw == 1 {
		res := results[0]
		span = res.elapsed()
		rate = perSecond(res.Processed, span)
		bn.logf("  worker child (concurrency %d, GOMAXPROCS %d) drained %d tasks in %v: %.0f tasks/s",
			res.Concurrency, res.GOMAXPROCS, res.Processed, span.Round(time.Millisecond), rate)
	} else {
		span = time.Duration(last - first)
		rate = perSecond(int64(n), span)
		profNote = " (child K: FILE.wK)"
	}
	for i, res := range results {
		if nw > 1 {
			label = fmt.Sprintf("worker child %d/%d", i+1, nw)
			bn.logf("  %s (concurrency %d, GOMAXPROCS %d): processed %d tasks in %v, CPU %v, peak RSS %.1f MiB",
				label, res.Concurrency, res.GOMAXPROCS, res.Processed, res.elapsed().Round(time.Millisecond),
				res.cpu().Round(time.Millisecond), mib(res.VmHWMKiB))
		}
		bn.logf("  %s memory: peak RSS %.1f MiB (end %.1f); Go runtime: sys %.1f MiB, peak mapped %.1f MiB, peak heap objects %.1f MiB, peak stacks %.1f MiB, peak goroutines %d, allocated %.0f MiB in total (%.1f KiB/task), %d GCs",
			strings.TrimSuffix(label, " child"), mib(res.VmHWMKiB), mib(res.VmRSSKiB), res.GoSysMiB, res.PeakGoTotalMiB,
			res.PeakHeapObjMiB, res.PeakStacksMiB, res.PeakGoroutines, res.TotalAllocMiB,
			res.TotalAllocMiB*1024/float64(max(res.Processed, 1)), res.NumGC)
	}
	if nw > 1 {
		bn.logf("  %d worker children drained %d tasks in %v (first start to last end): %.0f tasks/s",
			nw, n, span.Round(time.Millisecond), rate)
	}
	if prof != "" {
		bn.logf("  CPU profile: %s%s (go tool pprof -top %s)", prof, profNote, prof)
	}
	if mprof != "" {
		bn.logf("  heap profile: %s%s (go tool pprof -sample_index=alloc_space -top %s)", mprof, profNote, mprof)
	}
	wus := usPerTask(workCPU, n)
	if bn.t.dialect != database.Postgres {
		bn.logf("  workers' CPU: %.1f µs/task (%v in all; SQLite's own work is in it: it runs in the worker)",
			wus, workCPU.Round(time.Millisecond))
	} else if meter != nil {
		dus := usPerTask(c.dbCPU, n)
		bn.logf("  cost per task over the drain: database CPU %.1f µs (%v in all, %d postgres processes at the end), workers' CPU %.1f µs (%v in all), total %.1f µs; WAL %.0f bytes (%d in all)",
			dus, c.dbCPU.Round(time.Millisecond), c.procs, wus, workCPU.Round(time.Millisecond), dus+wus,
			float64(c.wal)/float64(n), c.wal)
	} else {
		bn.logf("  workers' CPU: %.1f µs/task (%v in all)", wus, workCPU.Round(time.Millisecond))
	}
	bn.record("burndown_tasks_per_s", rate, "tasks/s", 0)
	bn.record("burndown_worker_peak_rss_mib", mib(peakRSS), "MiB", 1)
	bn.record("burndown_workers", float64(nw), "processes", 0)
	if meter != nil {
		dus := usPerTask(c.dbCPU, n)
		bn.record("burndown_db_cpu_us_per_task", dus, "us", 1)
		bn.record("burndown_worker_cpu_us_per_task", wus, "us", 1)
		bn.record("burndown_total_cpu_us_per_task", dus+wus, "us", 1)
		bn.record("burndown_wal_bytes_per_task", float64(c.wal)/float64(n), "bytes", 0)
	}
	return nil
}

// openPair opens the worker's backend and the producer's: another instance
// on PostgreSQL (wake-ups go through LISTEN/NOTIFY, as between processes),
// the same one on SQLite (same-process wake-up, the embedded setup).
func (bn *bench) openPair(ctx context.Context, f *fresh, workerApp string) (w, p *database.Backend, closeFn func(), err error) {
	w, err = bn.t.open(ctx, f, workerApp)
	if err != nil {
		return nil, nil, nil, err
	}
	if bn.t.dialect != database.Postgres {
		return w, w, func() { _ = w.Close() }, nil
	}
	p, err = bn.t.open(ctx, f, "taskbench-producer")
	if err != nil {
		_ = w.Close()
		return nil, nil, nil, err
	}
	return w, p, func() { _ = p.Close(); _ = w.Close() }, nil
}

func (bn *bench) newWorker(b *database.Backend) (*database.Worker, error) {
	cfg := bn.o.workerConfig()
	cfg.Logger = quietLogger(bn.stderr)
	return database.NewWorker(b, cfg)
}

func stopWorker(w *database.Worker) error {
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return w.Stop(sctx)
}

// continuous: producers enqueue (back-pressured to max(--backlog,
// --prefill) unfinished tasks) while one worker works, for --duration;
// --prefill tasks are enqueued before the worker starts and the clock
// with it.
func (bn *bench) continuous(ctx context.Context, f *fresh) error {
	wb, pb, closeAll, err := bn.openPair(ctx, f, "taskbench-worker")
	if err != nil {
		return err
	}
	defer closeAll()
	defer tasks.RegisterBackend(pb)()
	if err := bn.applyGlobalLimit(ctx, pb); err != nil {
		return err
	}
	w, err := bn.newWorker(wb)
	if err != nil {
		return err
	}
	o := bn.o
	how := "the worker's (same-process wake-ups)"
	if pb != wb {
		how = "another instance (LISTEN/NOTIFY wake-ups)"
	}
	target := int64(max(o.backlog, o.prefill))
	if o.prefill > 0 {
		d, err := fill(ctx, o.prefill)
		if err != nil {
			return fmt.Errorf("prefill: %w", err)
		}
		bn.logf("  prefilled %d tasks with EnqueueMany(%d) in %v (before the clock starts)", o.prefill,
			min(o.prefill, enqueueChunk), d.Round(time.Millisecond))
	}
	bn.logf("  %d producer goroutine(s), EnqueueMany(%d), back-pressure at %d unfinished tasks; producer backend: %s; %v",
		o.producers, o.produceBatch, target, how, o.duration)
	var (
		enq      atomic.Int64
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		errOnce  sync.Once
		prodErr  error
		throttle atomic.Int64
		// pendingMin is the smallest number of unfinished tasks sampled.
		pendingMin = int64(math.MaxInt64)
	)
	enq.Store(int64(o.prefill))
	start := time.Now()
	if err := w.Start(ctx); err != nil {
		return err
	}
	// pending is a lower bound of the unfinished tasks: enq is read before
	// the worker's count, and counts a batch only once EnqueueMany has
	// returned (the worker may have finished some of it by then).
	pending := func() int64 { return max(enq.Load()-w.Processed(), 0) }
	wg.Go(func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			pendingMin = min(pendingMin, pending())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	})
	batch := make([]struct{}, o.produceBatch)
	for range o.producers {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if enq.Load()-w.Processed() >= target {
					throttle.Add(1)
					time.Sleep(200 * time.Microsecond)
					continue
				}
				if _, err := noop.EnqueueMany(ctx, batch); err != nil {
					errOnce.Do(func() { prodErr = err })
					return
				}
				enq.Add(int64(len(batch)))
			}
		})
	}
	select {
	case <-time.After(o.duration):
	case <-ctx.Done():
	}
	processed := w.Processed()
	elapsed := time.Since(start)
	enqueued := enq.Load() - int64(o.prefill)
	close(stop)
	wg.Wait()
	ready, cerr := countStatus(ctx, wb, tasks.StatusReady)
	serr := stopWorker(w)
	if err := errors.Join(prodErr, ctx.Err(), cerr, serr); err != nil {
		return err
	}
	rate := perSecond(processed, elapsed)
	bn.logf("  in %v: enqueued %d (%.0f/s), worked %d (%.0f tasks/s); READY at the end %d; fewest unfinished (sampled every 50 ms) %d; producers paused %d times",
		elapsed.Round(time.Millisecond), enqueued, perSecond(enqueued, elapsed), processed, rate, ready, pendingMin,
		throttle.Load())
	bn.record("continuous_tasks_per_s", rate, "tasks/s", 0)
	bn.record("continuous_enqueued_per_s", perSecond(enqueued, elapsed), "tasks/s", 0)
	bn.record("continuous_backlog_end", float64(ready), "tasks", 0)
	bn.record("continuous_pending_min", float64(pendingMin), "tasks", 0)
	return nil
}

// waitListener waits until the worker backend's LISTEN connection is up
// (PostgreSQL): its application_name is unique to this run.
func (bn *bench) waitListener(ctx context.Context, appName string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var n int
		err := bn.t.admin.QueryRowContext(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN%'`, appName).Scan(&n)
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the worker's LISTEN connection did not show up in pg_stat_activity")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// latency: single tasks enqueued to an idle worker, one at a time.
func (bn *bench) latency(ctx context.Context, f *fresh) error {
	appName := "taskbench-latency-worker-" + randomHex(4)
	wb, pb, closeAll, err := bn.openPair(ctx, f, appName)
	if err != nil {
		return err
	}
	defer closeAll()
	defer tasks.RegisterBackend(pb)()
	var (
		mu       sync.Mutex
		started  = map[string]time.Time{}
		finished = map[string]time.Time{}
		done     = make(chan string, 1024)
	)
	defer signals.TaskStarted.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		t := time.Now()
		if sender != backendName {
			return
		}
		mu.Lock()
		started[r.ID] = t
		mu.Unlock()
	})()
	defer signals.TaskFinished.Connect(func(_ context.Context, sender string, r *tasks.RawResult) {
		t := time.Now()
		if sender != backendName {
			return
		}
		mu.Lock()
		finished[r.ID] = t
		mu.Unlock()
		select {
		case done <- r.ID:
		default:
		}
	})()
	w, err := bn.newWorker(wb)
	if err != nil {
		return err
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer func() { _ = stopWorker(w) }()
	how := "same backend instance (in-process wake-up)"
	if bn.t.dialect == database.Postgres {
		if err := bn.waitListener(ctx, appName); err != nil {
			return err
		}
		how = "separate backend instance (wake-up through LISTEN/NOTIFY)"
	}
	time.Sleep(300 * time.Millisecond)
	o := bn.o
	bn.logf("  %d samples (+%d warm-up), enqueued from the %s, %v apart", o.latencySamples, o.latencyWarmup, how, o.latencyGap)
	var startMs, finishMs []float64
	for i := range o.latencyWarmup + o.latencySamples {
		t0 := time.Now()
		res, err := noop.Enqueue(ctx, struct{}{})
		if err != nil {
			return err
		}
		timeout := time.NewTimer(10 * time.Second)
	wait:
		for {
			select {
			case id := <-done:
				if id == res.ID {
					break wait
				}
			case <-timeout.C:
				return fmt.Errorf("sample %d: task %s did not finish within 10s", i, res.ID)
			case <-ctx.Done():
				timeout.Stop()
				return ctx.Err()
			}
		}
		timeout.Stop()
		mu.Lock()
		ts, tf := started[res.ID], finished[res.ID]
		mu.Unlock()
		if ts.IsZero() {
			return fmt.Errorf("sample %d: no TaskStarted for %s", i, res.ID)
		}
		if i >= o.latencyWarmup {
			startMs = append(startMs, float64(ts.Sub(t0))/1e6)
			finishMs = append(finishMs, float64(tf.Sub(t0))/1e6)
		}
		if o.latencyGap > 0 {
			time.Sleep(o.latencyGap)
		}
	}
	ps := func(xs []float64) (p50, p95, p99, mx float64) {
		return percentile(xs, 50), percentile(xs, 95), percentile(xs, 99), slices.Max(xs)
	}
	s50, s95, s99, smax := ps(startMs)
	f50, f95, f99, fmax := ps(finishMs)
	bn.logf("  enqueue→start  ms: p50 %.2f p95 %.2f p99 %.2f max %.2f", s50, s95, s99, smax)
	bn.logf("  enqueue→finish ms: p50 %.2f p95 %.2f p99 %.2f max %.2f", f50, f95, f99, fmax)
	for _, x := range []struct {
		name string
		v    float64
	}{{"start_p50", s50}, {"start_p95", s95}, {"start_p99", s99}, {"finish_p50", f50}, {"finish_p95", f95}, {"finish_p99", f99}} {
		bn.record("latency_"+x.name+"_ms", x.v, "ms", 2)
	}
	return nil
}

// enqueue: sequential Enqueue rate, and EnqueueMany rate (median of
// --many-reps).
func (bn *bench) enqueue(ctx context.Context, f *fresh) error {
	b, err := bn.t.open(ctx, f, "taskbench-producer")
	if err != nil {
		return err
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	o := bn.o
	for range 20 { // warm up connections and prepared statements
		if _, err := noop.Enqueue(ctx, struct{}{}); err != nil {
			return err
		}
	}
	start := time.Now()
	for range o.enqueueSingle {
		if _, err := noop.Enqueue(ctx, struct{}{}); err != nil {
			return err
		}
	}
	d := time.Since(start)
	single := perSecond(int64(o.enqueueSingle), d)
	bn.logf("  %d sequential Enqueue calls in %v: %.0f tasks/s (%.0f µs each)", o.enqueueSingle,
		d.Round(time.Millisecond), single, float64(d.Microseconds())/float64(o.enqueueSingle))
	var rates []string
	var vals []float64
	args := make([]struct{}, o.manySize)
	for range o.manyReps {
		start := time.Now()
		if _, err := noop.EnqueueMany(ctx, args); err != nil {
			return err
		}
		r := perSecond(int64(o.manySize), time.Since(start))
		vals = append(vals, r)
		rates = append(rates, fmt.Sprintf("%.0f", r))
	}
	many := median(vals)
	bn.logf("  EnqueueMany(%d) ×%d: %s tasks/s → median %.0f", o.manySize, o.manyReps, strings.Join(rates, ", "), many)
	bn.record("enqueue_single_per_s", single, "tasks/s", 0)
	bn.record(fmt.Sprintf("enqueue_many_%d_per_s", o.manySize), many, "tasks/s", 0)
	return nil
}

// sizeLabel turns 10000 into "10k" and 1000000 into "1m".
func sizeLabel(n int) string {
	switch {
	case n >= 1e6 && n%1e6 == 0:
		return strconv.Itoa(n/1e6) + "m"
	case n >= 1e3 && n%1e3 == 0:
		return strconv.Itoa(n/1e3) + "k"
	}
	return strconv.Itoa(n)
}

// scaling: time per task at growing numbers of finished rows.
func (bn *bench) scaling(ctx context.Context, f *fresh) error {
	sizes, err := bn.o.scalingList()
	if err != nil {
		return err
	}
	b, err := bn.t.open(ctx, f, "taskbench-producer")
	if err != nil {
		return err
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	nextID := int64(0)
	for _, size := range sizes {
		have, err := countStatus(ctx, b, tasks.StatusSuccessful)
		if err != nil {
			return err
		}
		start := time.Now()
		if add := int64(size) - have; add > 0 {
			if err := bn.insertFinished(ctx, b, nextID+1, nextID+add); err != nil {
				return fmt.Errorf("insert %d finished rows: %w", add, err)
			}
			nextID += add
		}
		how := "filled"
		if bn.o.scalingVac {
			if err := bn.analyze(ctx, b); err != nil {
				return err
			}
			how = "filled and analysed"
		}
		bn.logf("  table at %d finished rows (%s in %v)", max(int64(size), have), how,
			time.Since(start).Round(time.Millisecond))
		n := bn.o.scalingTasks
		if _, err := fill(ctx, n); err != nil {
			return err
		}
		res, err := bn.runChild(ctx, f, n, "", "")
		if err != nil {
			return err
		}
		us := float64(res.elapsed().Microseconds()) / float64(res.Processed)
		bn.logf("  burnt down %d fresh tasks in %v: %.1f µs/task (%.0f tasks/s), peak RSS %.1f MiB", n,
			res.elapsed().Round(time.Millisecond), us, perSecond(res.Processed, res.elapsed()), mib(res.VmHWMKiB))
		bn.record("scaling_us_per_task_"+sizeLabel(size), us, "us", 1)
	}
	return nil
}

// insertFinished inserts SUCCESSFUL rows with ids fill-from … fill-to, in
// statements of at most 200,000 rows.
func (bn *bench) insertFinished(ctx context.Context, b *database.Backend, from, to int64) error {
	const step = 200000
	var q string
	if bn.t.dialect == database.Postgres {
		q = `INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, max_attempts, worker_ids, return_value)
SELECT 'fill-' || g, 'examples.noop', 'SUCCESSFUL', '{}', 0, 'default', $3, t, t, t, t, t, 1, 25,
	'["taskbench-fill"]', '{}'
FROM generate_series($1::bigint, $2::bigint) g
CROSS JOIN LATERAL (SELECT now() - interval '1 day' - g * interval '1 millisecond' AS t) x`
	} else {
		q = `WITH RECURSIVE c(x) AS (SELECT $1 UNION ALL SELECT x + 1 FROM c WHERE x < $2)
INSERT INTO gotasks_task (id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, max_attempts, worker_ids, return_value)
SELECT 'fill-' || x, 'examples.noop', 'SUCCESSFUL', '{}', 0, 'default', $3, t, t, t, t, t, 1, 25,
	'["taskbench-fill"]', '{}'
FROM (SELECT x, strftime('%Y-%m-%d %H:%M:%S', 'now', '-1 day', '-' || (x / 1000) || ' seconds') || '.000000' AS t FROM c)`
	}
	for lo := from; lo <= to; lo += step {
		hi := min(lo+step-1, to)
		if _, err := b.DB().DB.ExecContext(ctx, q, lo, hi, backendName); err != nil {
			return err
		}
	}
	// The rows went in by hand: SQLite's counters of finished tasks.
	return b.RecountFinished(ctx)
}

// analyze refreshes the planner's statistics after a bulk load, as
// autovacuum (PostgreSQL) or PRAGMA optimize (SQLite) would.
func (bn *bench) analyze(ctx context.Context, b *database.Backend) error {
	q := "ANALYZE gotasks_task"
	if bn.t.dialect == database.Postgres {
		q = "VACUUM ANALYZE gotasks_task"
	}
	_, err := b.DB().DB.ExecContext(ctx, q)
	return err
}

func median(xs []float64) float64 { return percentile(xs, 50) }

// percentile returns the p-th percentile of xs by linear interpolation
// between closest ranks.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	pos := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}
