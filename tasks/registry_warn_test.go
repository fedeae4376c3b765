package tasks

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The warning of the implicit default (issue 13): silent where it is the
// point (nothing else configured), once per process where it is likely a
// mistake (other backends registered, or a worker running).

// isolateRegistry gives the test an empty registry, a fresh warning state
// and a default slog logger writing text to the returned buffer, and
// restores all three at cleanup. Tests that call it must not be parallel.
func isolateRegistry(t *testing.T) *syncBuf {
	t.Helper()
	backends.Lock()
	m, open, warned := backends.m, backends.open, backends.warned
	backends.m, backends.open, backends.warned = map[string]Backend{}, map[string]int{}, false
	backends.Unlock()
	prev := slog.Default()
	buf := &syncBuf{}
	slog.SetDefault(slog.New(slog.NewTextHandler(buf, nil)))
	t.Cleanup(func() {
		slog.SetDefault(prev)
		backends.Lock()
		backends.m, backends.open, backends.warned = m, open, warned
		backends.Unlock()
	})
	return buf
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// warnBackend is a registered backend for these tests (never enqueued to).
type warnBackend struct {
	*fallback
	name string
}

func (b warnBackend) Name() string { return b.name }

var warnEcho = Define("tasks.registry_warn_echo", func(ctx context.Context, s string) (string, error) { return s, nil })

func countWarnings(s string) int {
	return strings.Count(s, `implicit \"default\" backend`)
}

func TestImplicitDefaultWarning(t *testing.T) {
	t.Run("SilentWithNothingElse", func(t *testing.T) {
		buf := isolateRegistry(t)
		for range 2 {
			if _, err := warnEcho.Enqueue(context.Background(), "x"); err != nil {
				t.Fatal(err)
			}
		}
		if buf.String() != "" {
			t.Errorf("logged with no other backend:\n%s", buf)
		}
	})

	t.Run("OnceWhenAnotherBackendIsRegistered", func(t *testing.T) {
		buf := isolateRegistry(t)
		defer RegisterBackend(warnBackend{newFallback(), "emails"})()
		for range 3 {
			r, err := warnEcho.Enqueue(context.Background(), "x")
			if err != nil {
				t.Fatal(err)
			}
			if r.Status != StatusSuccessful {
				t.Errorf("status %s; want SUCCESSFUL (still runs inline)", r.Status)
			}
		}
		out := buf.String()
		if n := countWarnings(out); n != 1 {
			t.Fatalf("%d warnings; want 1:\n%s", n, out)
		}
		for _, want := range []string{"level=WARN", "registered=[emails]", "tasks.RegisterBackend(b)", `tasks.RegisterBackendAs(\"default\", b)`} {
			if !strings.Contains(out, want) {
				t.Errorf("the warning does not say %q:\n%s", want, out)
			}
		}
	})

	t.Run("WhenABackendIsMarkedOpen", func(t *testing.T) {
		buf := isolateRegistry(t)
		done := MarkBackendOpen("jobs")
		if _, err := GetBackend(""); err != nil {
			t.Fatal(err)
		}
		done()
		done() // idempotent
		if n := countWarnings(buf.String()); n != 1 || !strings.Contains(buf.String(), "open=[jobs]") {
			t.Errorf("want one warning naming the open backend jobs:\n%s", buf)
		}
		backends.RLock()
		left := len(backends.open)
		backends.RUnlock()
		if left != 0 {
			t.Errorf("%d open marks left after done; want 0", left)
		}
	})

	t.Run("NotOnceAMarkIsDone", func(t *testing.T) {
		buf := isolateRegistry(t)
		MarkBackendOpen("jobs")()
		if _, err := GetBackend(DefaultBackendName); err != nil {
			t.Fatal(err)
		}
		if buf.String() != "" {
			t.Errorf("logged after the mark was done:\n%s", buf)
		}
	})

	t.Run("NotWithARegisteredDefault", func(t *testing.T) {
		buf := isolateRegistry(t)
		defer RegisterBackend(warnBackend{newFallback(), "emails"})()
		mine := warnBackend{newFallback(), "mine"}
		defer RegisterBackendAs(DefaultBackendName, mine)()
		b, err := GetBackend("")
		if err != nil {
			t.Fatal(err)
		}
		if b.Name() != "mine" {
			t.Errorf(`GetBackend("") = %q; want the backend registered as "default" (mine)`, b.Name())
		}
		if buf.String() != "" {
			t.Errorf("logged with a default registered:\n%s", buf)
		}
	})
}

func TestRegisterBackendAs(t *testing.T) {
	isolateRegistry(t)
	a, b := warnBackend{newFallback(), "a"}, warnBackend{newFallback(), "b"}
	restoreA := RegisterBackendAs("", a) // "" is "default"
	if got, ok := LookupBackend(DefaultBackendName); !ok || got.Name() != "a" {
		t.Fatalf("LookupBackend(default) = %v, %v; want a", got, ok)
	}
	restoreB := RegisterBackendAs(DefaultBackendName, b)
	if got, _ := LookupBackend(""); got.Name() != "b" {
		t.Errorf("after the second registration: %q; want b", got.Name())
	}
	if diff := cmp.Diff([]string{"default"}, BackendNames()); diff != "" {
		t.Errorf("BackendNames (-want +got):\n%s", diff)
	}
	restoreB()
	if got, _ := LookupBackend(""); got.Name() != "a" {
		t.Errorf("after restoring b: %q; want a", got.Name())
	}
	restoreA()
	if got, ok := LookupBackend(""); ok {
		t.Errorf("after restoring a: %q; want none", got.Name())
	}
	if _, ok := LookupBackend("nope"); ok {
		t.Error("LookupBackend(nope) found something")
	}
	// LookupBackend never returns the implicit default; GetBackend does.
	if b, err := GetBackend(""); err != nil || b == nil {
		t.Errorf(`GetBackend("") = %v, %v; want the implicit default`, b, err)
	}
}
