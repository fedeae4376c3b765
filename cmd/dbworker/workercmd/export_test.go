package workercmd

import "testing"

// SetTaskNames makes the command see names as the tasks compiled into the
// binary until the end of the test. The tests that call it must not be
// parallel: the command reads the list from a package variable.
func SetTaskNames(t testing.TB, names []string) {
	old := taskNames
	taskNames = func() []string { return names }
	t.Cleanup(func() { taskNames = old })
}
