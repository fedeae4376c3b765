// Package workerfixture holds the test helpers shared by the tests of the
// dbworker command (the in-process workercmd tests and the real-process
// cmd/dbworker tests): a backend per test, status counts, and the checks of
// the command's one-line errors. Polling with a deadline is dbtest.WaitUntil.
package workerfixture

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/examples/exampletasks"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// SyncBuffer is a bytes.Buffer that a worker's goroutines (or a process's
// output copier) may write while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write implements io.Writer.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var seq atomic.Int64

// OpenBackend opens (and migrates) a backend with a name unique to the test
// on dsn, registers it, and closes it when the test ends.
func OpenBackend(t *testing.T, dsn string) *database.Backend {
	t.Helper()
	name := fmt.Sprintf("wf%d-%s", seq.Add(1), t.Name())
	b, err := database.Open(context.Background(), dsn, database.WithAutoMigrate(true),
		database.WithName(name[:min(len(name), 64)]), database.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	t.Cleanup(tasks.RegisterBackend(b))
	return b
}

// Statuses counts b's results by status.
func Statuses(t *testing.T, b *database.Backend) map[tasks.Status]int {
	t.Helper()
	m, err := dbtest.StatusCounts(context.Background(), b.DB().DB, b.Name())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// OneLine checks that stderr is one line starting with "dbworker" that
// contains each of want.
func OneLine(t *testing.T, stderr string, want ...string) {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "dbworker") {
		t.Errorf("want one line starting with dbworker; got:\n%s", stderr)
	}
	for _, w := range want {
		if !strings.Contains(stderr, w) {
			t.Errorf("message does not mention %q:\n%s", w, stderr)
		}
	}
}

// WorkerArgs returns dbworker flags for b on dsn (20 ms polling), then more.
func WorkerArgs(b *database.Backend, dsn string, more ...string) []string {
	return append([]string{"--database", dsn, "--backend", b.Name(), "--interval", "20ms"}, more...)
}

// EnqueueSleeps enqueues n example sleep tasks of ms milliseconds on b.
func EnqueueSleeps(t *testing.T, b *database.Backend, n, ms int) []*tasks.Result[int] {
	t.Helper()
	args := make([]int, n)
	for i := range args {
		args[i] = ms
	}
	rs, err := exampletasks.Sleep.Using(tasks.WithBackend(b.Name())).EnqueueMany(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}
