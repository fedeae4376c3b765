// Command relworker is the worker binary of the reliability suite: the
// dbworker command (package workercmd) with the suite's tasks registered.
// The tasks write their execution log to the database named by
// RELWORKER_DSN and record the worker id given in RELWORKER_ID (or, when
// unset, the value of --worker-id).
package main

import (
	"os"
	"strings"

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	"github.com/gotasks/gotasks/reliability/internal/reltasks"
)

func main() {
	if os.Getenv(reltasks.WorkerEnv) == "" {
		if id := workerID(os.Args[1:]); id != "" {
			os.Setenv(reltasks.WorkerEnv, id)
		}
	}
	os.Exit(workercmd.Main(os.Args[1:]))
}

// workerID returns the value of --worker-id (or -worker-id) in args.
func workerID(args []string) string {
	for i, a := range args {
		a = strings.TrimLeft(a, "-")
		if v, ok := strings.CutPrefix(a, "worker-id="); ok {
			return v
		}
		if a == "worker-id" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}
