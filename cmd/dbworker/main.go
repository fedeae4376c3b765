// Command dbworker is the stock gotasks worker command (SPEC §7): it applies
// and checks the database backend's schema, and it is the template of the
// worker binary you build with your own tasks.
//
//	go install github.com/gotasks/gotasks/cmd/dbworker@latest
//	dbworker migrate --database postgres://…
//	dbworker check --database postgres://…
//	dbworker tasks
//	dbworker --help
//
// This binary contains no task code. Tasks are Go functions that must be
// compiled into the worker that runs them, so run without a sub-command it
// does not start a worker: it says so on stderr, shows how to build your own
// worker in a few lines with package workercmd, and exits 2 (ExitUsage):
//
//	package main
//
//	import (
//		"os"
//
//		"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
//		_ "example.com/app/tasks" // defines (registers) the tasks
//	)
//
//	func main() { os.Exit(workercmd.Main(os.Args[1:])) }
//
// The same command with the repository's example tasks compiled in is
// examples/worker (go run ./examples/worker --help).
package main

import (
	"os"

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
)

func main() { os.Exit(workercmd.Main(os.Args[1:])) }
