// Command worker is the worker of examples/webapp: the dbworker command
// (package workercmd) with the application's tasks compiled in and its
// dependencies handed to them through Command.Setup, without globals.
//
//	go run ./examples/webapp/cmd/worker              # sqlite://gotasks.db, all queues
//	go run ./examples/webapp/cmd/worker --batch      # exit when no task is due
//	go run ./examples/webapp/cmd/worker tasks        # lists webapp.* tasks
//	go run ./examples/webapp/cmd/worker --help
//
// It reads the same --database flag and $GOTASKS_DATABASE_URL as the web
// process (examples/webapp/cmd/web).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/gotasks/gotasks/cmd/dbworker/workercmd"
	"github.com/gotasks/gotasks/examples/webapp/app" // defines (registers) the tasks
)

func main() {
	os.Exit(workercmd.Command{
		Name: "webapp-worker",
		// Setup runs once, after the backend is opened and registered and
		// before any task is claimed. Its context's values reach every task.
		Setup: func(ctx context.Context, env workercmd.Env) (context.Context, error) {
			if err := app.CreateSchema(ctx, env.DB); err != nil {
				return nil, fmt.Errorf("create schema: %w", err)
			}
			a := &app.App{
				DB:       env.DB,          // the worker's pool: the orders live next to the tasks
				Mailer:   app.LogMailer{}, // logs with the task's logger (env.Logger plus the task's attributes)
				Payments: &app.FakePayments{},
				Logger:   env.Logger,
			}
			return app.WithApp(ctx, a), nil
		},
	}.Main(os.Args[1:]))
}
