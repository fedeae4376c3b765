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

// childPrefix starts the line on which the child reports its result.
const childPrefix = "taskbench-child: "

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
}

func (r childResult) elapsed() time.Duration { return time.Duration(r.ElapsedNS) }

func quietLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// workerChild is the hidden mode: one worker drains the backlog of
// o.database (ExitWhenEmpty) and reports on stdout.
func workerChild(ctx context.Context, o *options, stdout, stderr io.Writer) error {
	log := quietLogger(stderr)
	b, err := database.Open(ctx, o.database, database.WithAutoMigrate(true), database.WithName(backendName),
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
	rctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	peaks := startPeakSampler()
	start := time.Now()
	runErr := w.Run(rctx)
	elapsed := time.Since(start)
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
	}
	j, _ := json.Marshal(res)
	_, err = fmt.Fprintf(stdout, "%s%s\n", childPrefix, j)
	return err
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

// runChild re-executes this binary as a worker child on f, waits for it
// to drain expect tasks, and returns its report.
func (bn *bench) runChild(ctx context.Context, f *fresh, expect int, cpuprofile, memprofile string) (childResult, error) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	o := bn.o
	args := []string{"--mode", childMode, "--database", f.dsn,
		"--concurrency", strconv.Itoa(o.concurrency), "--batch-size", strconv.Itoa(o.batchSize),
		"--poll-interval", o.poll.String(), "--timeout", o.timeout.String(), "--expect", strconv.Itoa(expect)}
	if cpuprofile != "" {
		args = append(args, "--cpuprofile", cpuprofile)
	}
	if memprofile != "" {
		args = append(args, "--memprofile", memprofile)
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = bn.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return childResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return childResult{}, fmt.Errorf("start worker child: %w", err)
	}
	var res childResult
	found := false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if j, ok := strings.CutPrefix(line, childPrefix); ok {
			if err := json.Unmarshal([]byte(j), &res); err != nil {
				return res, fmt.Errorf("worker child report %q: %w", j, err)
			}
			found = true
			continue
		}
		fmt.Fprintln(bn.stdout, "  child:", line)
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("worker child: %w", err)
	}
	if !found {
		return res, errors.New("worker child exited without a report")
	}
	if res.Processed != int64(expect) {
		return res, fmt.Errorf("worker child processed %d tasks, want %d", res.Processed, expect)
	}
	return res, nil
}
