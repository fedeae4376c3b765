package database

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gotasks/gotasks/internal/dbtest"
)

// TestHubListeners: on PostgreSQL a process listens for wake-ups once a
// worker subscribes, and for finished results only once something waits for
// one; a worker process is not sent a notice of every task any worker
// finishes.
func TestHubListeners(t *testing.T) {
	t.Parallel()
	dsn := dbtest.PostgresDSN(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	app := "hubtest_" + strconv.FormatInt(time.Now().UnixNano(), 36)
	q := u.Query()
	q.Set("application_name", app)
	u.RawQuery = q.Encode()
	ctx := context.Background()
	b, err := Open(ctx, u.String(), WithAutoMigrate(true), WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	// listening returns the LISTEN statements of b's connections, sorted.
	listening := func() []string {
		t.Helper()
		rows, err := b.DB().DB.QueryContext(ctx, `SELECT query FROM pg_stat_activity
			WHERE application_name = $1 AND query LIKE 'LISTEN %' ORDER BY query`, app)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			out = append(out, s)
		}
		return out
	}
	waitListening := func(want []string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := listening()
			if slices.Equal(got, want) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("LISTEN statements of the backend's connections: %q, want %q", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	_, unsub := b.hub.subscribeWake() // what a worker does
	defer unsub()
	waitListening([]string{"LISTEN " + wakeChannel})

	_, unwait := b.hub.waitFor("some-id") // what Result.Wait does
	defer unwait()
	waitListening([]string{"LISTEN " + doneChannel, "LISTEN " + wakeChannel})
}
