package tasks_test

import (
	"testing"

	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/tasks"
)

// TestRegisterBackendIfAbsent: two registrations "if absent" whose
// lifetimes overlap (two workers of one process, each making its backend
// the default when there is none) leave nothing behind, whichever restores
// first; the older way (look up, then register) left the first backend
// configured after both had restored.
func TestRegisterBackendIfAbsent(t *testing.T) {
	const name = "registry_test.if_absent"
	a := immediate.New(immediate.WithConfig(tasks.WithName("registry_test.a")))
	b := immediate.New(immediate.WithConfig(tasks.WithName("registry_test.b")))

	restoreA, okA := tasks.RegisterBackendIfAbsent(name, a)
	restoreB, okB := tasks.RegisterBackendIfAbsent(name, b)
	if !okA || okB {
		t.Fatalf("registered: a %v, b %v; want only a", okA, okB)
	}
	if got, _ := tasks.LookupBackend(name); got != tasks.Backend(a) {
		t.Fatalf("under %q: %v, want a", name, got)
	}
	restoreA()
	restoreB()
	if got, ok := tasks.LookupBackend(name); ok {
		t.Errorf("after both restores, %q is %v; want nothing", name, got.Name())
	}
}

// TestRegisterBackendRestoreOrder: whatever order overlapping registrations
// are removed in, the name goes back to the newest one left, then to
// nothing; before, removing the newer one first put back the older one
// even when it had been removed already.
func TestRegisterBackendRestoreOrder(t *testing.T) {
	const name = "registry_test.order"
	a := immediate.New(immediate.WithConfig(tasks.WithName("registry_test.a")))
	b := immediate.New(immediate.WithConfig(tasks.WithName("registry_test.b")))
	lookup := func() string {
		if got, ok := tasks.LookupBackend(name); ok {
			return got.Name()
		}
		return ""
	}
	for _, c := range []struct {
		name      string
		aFirst    bool
		afterOne  string // under name after the first removal
		afterBoth string
	}{
		{"OlderRemovedFirst", true, "registry_test.b", ""},
		{"NewerRemovedFirst", false, "registry_test.a", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			restoreA := tasks.RegisterBackendAs(name, a)
			restoreB := tasks.RegisterBackendAs(name, b)
			if got := lookup(); got != "registry_test.b" {
				t.Fatalf("after both: %q, want the newer", got)
			}
			first, second := restoreB, restoreA
			if c.aFirst {
				first, second = restoreA, restoreB
			}
			first()
			if got := lookup(); got != c.afterOne {
				t.Errorf("after the first removal: %q, want %q", got, c.afterOne)
			}
			second()
			first() // twice: no effect
			if got := lookup(); got != c.afterBoth {
				t.Errorf("after both removals: %q, want %q", got, c.afterBoth)
			}
		})
	}
}
