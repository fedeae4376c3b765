package workercmd

import (
	"fmt"
	"strconv"
	"strings"
)

// parseQueues reads --queues: a comma-separated list of queues, each
// optionally with this worker's concurrency for it (emails=5,default=20;
// database.WorkerConfig.QueueConcurrency), or * for all. It returns the
// queues (nil for all) and the caps (nil when none).
func parseQueues(s string) ([]string, map[string]int, error) {
	var (
		names []string
		caps  map[string]int
	)
	for _, p := range splitList(s) {
		name, n, ok := strings.Cut(p, "=")
		name = strings.TrimSpace(name)
		if !ok {
			names = append(names, name)
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || v < 1 || name == "" || name == "*" {
			return nil, nil, fmt.Errorf("--queues %q: %q is not QUEUE=N with N >= 1", s, p)
		}
		if caps == nil {
			caps = map[string]int{}
		}
		caps[name] = v
		names = append(names, name)
	}
	return names, caps, nil
}
