// Command worker is the dbworker command with the example tasks of package
// exampletasks compiled in: the worker that runs what examples/quickstart
// and the docs enqueue. It is also the model of an application's own worker
// binary: package workercmd plus a blank import of the package that defines
// the tasks.
//
//	go run ./examples/worker --database sqlite://tasks.db --batch
//	go run ./examples/worker tasks       # lists the examples.* tasks
//	go run ./examples/worker --help
//
// The stock cmd/dbworker has no tasks of its own: it migrates and checks the
// schema, and refuses to run a worker.
package main

import (
	"os"

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"

	_ "github.com/gotasks/gotasks/examples/exampletasks" // defines (registers) the example tasks
)

func main() { os.Exit(workercmd.Main(os.Args[1:])) }
