package reliability_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// restartPostgres restarts the local PostgreSQL cluster (the newest version
// under /etc/postgresql) and returns how long the command took.
func restartPostgres(t *testing.T) time.Duration {
	t.Helper()
	vers, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(vers) == 0 {
		t.Fatalf("no cluster under /etc/postgresql: %v", err)
	}
	names := make([]string, len(vers))
	for i, v := range vers {
		names[i] = v.Name()
	}
	sort.Strings(names)
	ver := names[len(names)-1]
	start := time.Now()
	out, err := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", ver, "main", "restart").CombinedOutput()
	if err != nil {
		t.Fatalf("pg_ctlcluster %s main restart: %v\n%s", ver, err, out)
	}
	return time.Since(start)
}

// TestPostgresRestart restarts the PostgreSQL server twice while three
// workers run 2,000 tasks: the workers log, reconnect and finish; no task is
// lost, none runs in two places at once, and each success is recorded once,
// by the execution that produced it.
//
// It restarts the server under every other test that uses it, so it only
// runs with GOTASKS_TEST_PG_RESTART=1, alone:
//
//	GOTASKS_TEST_PG_RESTART=1 go test -race -count=1 -run TestPostgresRestart ./reliability/
func TestPostgresRestart(t *testing.T) {
	skipShort(t)
	if os.Getenv(envPGRestart) != "1" {
		t.Skip("restarts the PostgreSQL server under every test that uses it: run it alone with " +
			envPGRestart + "=1 go test -run TestPostgresRestart ./reliability/")
	}
	n, restarts := 3000, 2
	if long() {
		n, restarts = 9000, 5
	}
	e := newEnv(t, "postgres", true)
	ctx := context.Background()
	// 100-300 ms each: about 10 s of work for 3 workers × 20, so that the
	// restarts fall in the middle of it.
	ids := e.enqueue(recordArgs("restart", n, func(i int) int { return 100 + i%201 }))
	// A lease longer than a restart: the workers' tasks are not rescued
	// while their heartbeats cannot reach the server.
	flags := []string{"--rescue-after", "15s"}
	var procs []*proc
	for i := range 3 {
		procs = append(procs, e.startWorker(fmt.Sprintf("restart-%d", i), flags...))
	}
	var took, recovered []time.Duration
	for k := 0; k < restarts; k++ {
		progress := n * (k + 1) / (restarts + 2)
		var before int
		waitUntil(t, 2*time.Minute, fmt.Sprintf("%d tasks done", progress), func(ctx context.Context) (bool, error) {
			c, err := e.counts(ctx)
			before = c[tasks.StatusSuccessful]
			return before >= progress, err
		})
		d := restartPostgres(t)
		back := time.Now()
		took = append(took, d)
		// Recovered: 20 more tasks completed after the server came back.
		base := -1
		waitUntil(t, time.Minute, "tasks to complete again after the restart", func(ctx context.Context) (bool, error) {
			c, err := e.counts(ctx)
			if err != nil {
				return false, err
			}
			if base < 0 {
				base = c[tasks.StatusSuccessful]
			}
			return c[tasks.StatusSuccessful] >= min(base+20, n), nil
		})
		recovered = append(recovered, time.Since(back))
		t.Logf("restart %d: pg_ctlcluster took %v with %d tasks done (%d when it returned); 20 more done %v later",
			k+1, d.Round(time.Millisecond), before, base, recovered[k].Round(time.Millisecond))
		if base >= n {
			t.Errorf("restart %d came after the last task: make the run longer", k+1)
		}
	}
	e.waitSuccessful(n, 3*time.Minute)
	for _, p := range procs {
		p.signal(t, syscall.SIGTERM)
	}
	var logged, discarded int
	for _, p := range procs {
		if code := p.wait(t, 30*time.Second); code != 0 {
			t.Errorf("worker %s exited %d after SIGTERM, want 0", p.id, code)
		}
		logged += len(p.logLines("level=ERROR")) + len(p.logLines("level=WARN"))
		discarded += len(p.logLines("outcome discarded"))
	}
	if logged == 0 {
		t.Error("no worker logged a database error: did the restarts happen?")
	}

	rs := e.results(ctx)
	xs, byKey := e.executions(ctx)
	var dups int
	for key, id := range ids {
		r := rs[id]
		if r == nil || r.Status != tasks.StatusSuccessful {
			t.Errorf("%s (%s): %+v, want SUCCESSFUL", key, id, r)
			continue
		}
		switch len(byKey[key]) {
		case 0:
			t.Errorf("%s never ran", key)
		case 1:
		default:
			dups++
		}
	}
	checkRecordedOnce(t, rs, byKey)
	checkNoOverlap(t, xs, nil)
	for _, x := range xs {
		if x.End == 0 {
			t.Errorf("execution %s of %s on %s never recorded its end", x.Token, x.Key, x.Worker)
		}
	}
	t.Logf("FIGURES pg-restart: tasks=%d workers=%d restarts=%d restart_took=%v recovered_after=%v duplicates=%d "+
		"outcomes_found_already_recorded=%d worker_log_lines_warn_error=%d lost=0",
		n, len(procs), restarts, roundAll(took), roundAll(recovered), dups, discarded, logged)
}

func roundAll(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Round(10 * time.Millisecond).String()
	}
	return strings.Join(s, ",")
}
