// Command dbworker runs the tasks of a gotasks database backend (SPEC §7).
//
//	dbworker --database postgres://… --queues default,emails --concurrency 20
//	dbworker migrate --database postgres://…
//	dbworker --help
//
// This binary includes the example tasks of package exampletasks. An
// application builds its own dbworker, importing its tasks, in a few lines:
// see package workercmd.
package main

import (
	"os"

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	_ "github.com/gotasks/gotasks/examples/exampletasks" // registers the example tasks
)

func main() { os.Exit(workercmd.Main(os.Args[1:])) }
