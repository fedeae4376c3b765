package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
)

// childEnv makes a test binary act as taskbench (see main_test.go); the
// real binary ignores it.
const childEnv = "GOTASKS_TASKBENCH_CHILD"

// childDSNEnv passes the run's DSN to a worker child through its
// environment rather than its command line, which every local user can
// read in /proc (the DSN may hold a password).
const childDSNEnv = "GOTASKS_TASKBENCH_CHILD_DSN"

// The protocol between the parent and a worker child, one line each: the
// child opens its backend and builds its worker, prints childReady on
// stdout, waits for childGo on stdin, runs (ExitWhenEmpty), prints its
// report (childPrefix and JSON), then keeps its backend, and so its
// database connections, open until its stdin is closed, so that the parent
// can measure the database while they are still alive.
const (
	// childReady is the line a child prints when it is ready to run.
	childReady = "taskbench-child-ready"
	// childGo is the line that starts the children's runs.
	childGo = "go"
	// childPrefix starts the line on which the child reports its result.
	childPrefix = "taskbench-child: "
)

// childResult is what the worker child reports.
type childResult struct {
	Processed  int64   `json:"processed"`
	ElapsedNS  int64   `json:"elapsed_ns"`
	VmHWMKiB   int64   `json:"vm_hwm_kib"` // peak RSS of the child
	VmRSSKiB   int64   `json:"vm_rss_kib"` // RSS at the end
	GoSysMiB   float64 `json:"go_sys_mib"` // memory obtained from the OS by the Go runtime
	HeapMaxMiB float64 `json:"heap_max_mib"`
	NumGC      uint32  `json:"num_gc"`
	// Peaks sampled every 20 ms during the run (runtime/metrics).
	PeakHeapObjMiB float64 `json:"peak_heap_objects_mib"`
	PeakGoTotalMiB float64 `json:"peak_go_total_mib"`
	PeakStacksMiB  float64 `json:"peak_stacks_mib"`
	PeakGoroutines int64   `json:"peak_goroutines"`
	TotalAllocMiB  float64 `json:"total_alloc_mib"`
	GOMAXPROCS     int     `json:"gomaxprocs"`
	Concurrency    int     `json:"concurrency"`
	// Wall-clock start and end of Run (UnixNano), so that the parent can
	// time several children from the first start to the last end.
	StartUnixNS int64 `json:"start_unix_ns"`
	EndUnixNS   int64 `json:"end_unix_ns"`
	// CPUNS is the child's CPU time (user + system, all threads) during
	// Run (getrusage RUSAGE_SELF after minus before).
	CPUNS int64 `json:"cpu_ns"`
}

func (r childResult) elapsed() time.Duration { return time.Duration(r.ElapsedNS) }

func (r childResult) cpu() time.Duration { return time.Duration(r.CPUNS) }

func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// workerChild is the hidden mode: one worker drains the backlog of
// o.database (ExitWhenEmpty) and reports on stdout, following the protocol
// of childReady with the parent on stdin and stdout.
func workerChild(ctx context.Context, o *options, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops readLines's sends
	lines := readLines(ctx, stdin)
	log := quietLogger(stderr)
	dsn := o.database
	if d := os.Getenv(childDSNEnv); d != "" {
		dsn = d
	}
	b, err := database.Open(ctx, dsn, database.WithAutoMigrate(true), database.WithName(backendName),
		database.WithLogger(log))
	if err != nil {
		return err
	}
	defer b.Close()
	cfg := o.workerConfig()
	cfg.ExitWhenEmpty = true
	cfg.Logger = log
	w, err := database.NewWorker(b, cfg)
	if err != nil {
		return err
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	if _, err := fmt.Fprintln(stdout, childReady); err != nil {
		return err
	}
	select {
	case l, ok := <-lines:
		if !ok {
			return errors.New("stdin closed before the parent said " + childGo)
		}
		if l != childGo {
			return fmt.Errorf("got %q on stdin, want %q", l, childGo)
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	rctx, rcancel := context.WithTimeout(ctx, o.timeout)
	defer rcancel()
	peaks := startPeakSampler()
	cpu0 := processCPU()
	start := time.Now()
	runErr := w.Run(rctx)
	elapsed := time.Since(start)
	cpu := processCPU() - cpu0
	pk := peaks()
	if o.cpuprofile != "" {
		pprof.StopCPUProfile()
	}
	if runErr != nil {
		return runErr
	}
	if o.memprofile != "" {
		f, err := os.Create(o.memprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
			return err
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	conc := cfg.Concurrency
	if conc == 0 {
		conc = database.DefaultConcurrency
	}
	res := childResult{
		Processed: w.Processed(), ElapsedNS: int64(elapsed),
		VmHWMKiB: procStatusKiB("VmHWM"), VmRSSKiB: procStatusKiB("VmRSS"),
		GoSysMiB: float64(ms.Sys) / (1 << 20), HeapMaxMiB: float64(ms.HeapSys) / (1 << 20), NumGC: ms.NumGC,
		GOMAXPROCS: runtime.GOMAXPROCS(0), Concurrency: conc,
		PeakHeapObjMiB: pk[0] / (1 << 20), PeakGoTotalMiB: pk[1] / (1 << 20), PeakStacksMiB: pk[2] / (1 << 20),
		PeakGoroutines: int64(pk[3]), TotalAllocMiB: float64(ms.TotalAlloc) / (1 << 20),
		StartUnixNS: start.UnixNano(), EndUnixNS: start.UnixNano() + int64(elapsed), CPUNS: int64(cpu),
	}
	j, _ := json.Marshal(res)
	if _, err := fmt.Fprintf(stdout, "%s%s\n", childPrefix, j); err != nil {
		return err
	}
	// Hold the backend open (deferred Close) until the parent closes stdin.
	for {
		select {
		case _, ok := <-lines:
			if !ok {
				return nil
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// readLines sends the lines of r on the returned channel, which it closes
// at the end of r (EOF or a read error). Its goroutine stops there, or at
// the first send after ctx is done.
func readLines(ctx context.Context, r io.Reader) <-chan string {
	ch := make(chan string)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case ch <- sc.Text():
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// startPeakSampler samples runtime/metrics every 20 ms until the returned
// function is called, which returns the peaks of: live+unswept heap
// objects, all memory mapped by the Go runtime, goroutine stacks, and
// goroutines.
func startPeakSampler() func() [4]float64 {
	names := []string{"/memory/classes/heap/objects:bytes", "/memory/classes/total:bytes",
		"/memory/classes/heap/stacks:bytes", "/sched/goroutines:goroutines"}
	samples := make([]metrics.Sample, len(names))
	for i, n := range names {
		samples[i].Name = n
	}
	var peak [4]float64
	sample := func() {
		metrics.Read(samples)
		for i, s := range samples {
			var v float64
			if s.Value.Kind() == metrics.KindUint64 {
				v = float64(s.Value.Uint64())
			}
			peak[i] = max(peak[i], v)
		}
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			sample()
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() [4]float64 {
		close(stop)
		<-done
		return peak
	}
}

// procStatusKiB reads a "Name: N kB" line of /proc/self/status (0 when
// unavailable, off Linux).
func procStatusKiB(name string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// childProc is one running worker child, seen from the parent.
type childProc struct {
	k        int // 1-based, for messages
	cmd      *exec.Cmd
	stdin    io.WriteCloser
	ready    chan struct{} // closed when the child printed childReady
	reported chan struct{} // closed when its report was read: res and resErr are set
	exited   chan struct{} // closed when its stdout ended
	res      childResult
	resErr   error
}

// childHooks are called by runChildren around the children's runs.
type childHooks struct {
	// beforeGo is called when every child is ready, just before they are
	// told to go.
	beforeGo func() error
	// afterReports is called when every child has reported, while they
	// still hold their database connections.
	afterReports func() error
}

// runChild re-executes this binary as one worker child on f, waits for it
// to drain expect tasks, and returns its report.
func (bn *bench) runChild(ctx context.Context, f *fresh, expect int, cpuprofile, memprofile string) (childResult, error) {
	res, err := bn.runChildren(ctx, f, 1, expect, cpuprofile, memprofile, childHooks{})
	if err != nil {
		return childResult{}, err
	}
	return res[0], nil
}

// runChildren re-executes this binary as n worker children on f at once
// (see childReady for the protocol), and returns their reports once they
// have drained expect tasks together. With n > 1 child k writes its
// profiles to FILE.wK.
func (bn *bench) runChildren(ctx context.Context, f *fresh, n, expect int, cpuprofile, memprofile string,
	hooks childHooks) (results []childResult, err error) {
	var procs []*childProc
	defer func() {
		failed := err != nil
		for _, p := range procs {
			if failed {
				_ = p.cmd.Process.Kill()
			}
			_ = p.stdin.Close() // EOF: the child closes its backend and exits
			<-p.exited
			if werr := p.cmd.Wait(); werr != nil && !failed {
				err = errors.Join(err, fmt.Errorf("worker child %d: %w", p.k, werr))
			}
		}
		if err != nil {
			results = nil
		}
	}()
	for k := 1; k <= n; k++ {
		prof, mprof := cpuprofile, memprofile
		if n > 1 {
			prof, mprof = childFile(cpuprofile, k), childFile(memprofile, k)
		}
		p, err := bn.startChild(ctx, f, k, n, expect, prof, mprof)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		select {
		case <-p.ready:
		case <-p.exited:
			return nil, fmt.Errorf("worker child %d exited before it was ready", p.k)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if hooks.beforeGo != nil {
		if err := hooks.beforeGo(); err != nil {
			return nil, err
		}
	}
	for _, p := range procs {
		if _, err := fmt.Fprintln(p.stdin, childGo); err != nil {
			return nil, fmt.Errorf("worker child %d: %w", p.k, err)
		}
	}
	var sum int64
	for _, p := range procs {
		select {
		case <-p.reported:
		case <-p.exited:
			select {
			case <-p.reported: // it reported, then its stdout ended
			default:
				return nil, fmt.Errorf("worker child %d exited without a report", p.k)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if p.resErr != nil {
			return nil, fmt.Errorf("worker child %d: %w", p.k, p.resErr)
		}
		results = append(results, p.res)
		sum += p.res.Processed
	}
	if hooks.afterReports != nil {
		if err := hooks.afterReports(); err != nil {
			return nil, err
		}
	}
	if n == 1 && sum != int64(expect) {
		return nil, fmt.Errorf("worker child processed %d tasks, want %d", sum, expect)
	}
	if sum != int64(expect) {
		per := make([]string, len(results))
		for i, r := range results {
			per[i] = strconv.FormatInt(r.Processed, 10)
		}
		return nil, fmt.Errorf("worker children processed %d tasks in all (%s), want %d", sum, strings.Join(per, " + "), expect)
	}
	return results, nil
}

// childFile returns child k's profile file ("" stays "").
func childFile(path string, k int) string {
	if path == "" {
		return ""
	}
	return path + ".w" + strconv.Itoa(k)
}

// startChild starts worker child k of n and the goroutine that reads its
// stdout, which ends when the child's stdout does (the child exits, or is
// killed by ctx).
func (bn *bench) startChild(ctx context.Context, f *fresh, k, n, expect int, cpuprofile, memprofile string) (*childProc, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	o := bn.o
	args := []string{"--mode", childMode,
		"--concurrency", strconv.Itoa(o.concurrency), "--batch-size", strconv.Itoa(o.batchSize),
		"--poll-interval", o.poll.String(), "--timeout", o.timeout.String()}
	if n == 1 {
		args = append(args, "--expect", strconv.Itoa(expect))
	}
	if cpuprofile != "" {
		args = append(args, "--cpuprofile", cpuprofile)
	}
	if memprofile != "" {
		args = append(args, "--memprofile", memprofile)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1", childDSNEnv+"="+f.dsn)
	cmd.Stderr = bn.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker child %d: %w", k, err)
	}
	p := &childProc{k: k, cmd: cmd, stdin: in, ready: make(chan struct{}), reported: make(chan struct{}),
		exited: make(chan struct{})}
	prefix := "  child:"
	if n > 1 {
		prefix = fmt.Sprintf("  child %d:", k)
	}
	go func() {
		defer close(p.exited)
		isReady, hasReported := false, false
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			if line == childReady && !isReady {
				isReady = true
				close(p.ready)
				continue
			}
			if j, ok := strings.CutPrefix(line, childPrefix); ok && !hasReported {
				hasReported = true
				if err := json.Unmarshal([]byte(j), &p.res); err != nil {
					p.resErr = fmt.Errorf("report %q: %w", j, err)
				}
				close(p.reported)
				continue
			}
			fmt.Fprintln(bn.stdout, prefix, line)
		}
		// Drain what is left, if the scanner stopped on an over-long line,
		// so that the child never blocks on a full pipe.
		_, _ = io.Copy(io.Discard, out)
	}()
	return p, nil
}
