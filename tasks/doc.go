// Package tasks is the core of gotasks: typed task definitions, the result
// model, the Backend interface with its capability flags, the registry of
// named backends, the registry of task functions, and the commit hooks that
// implement enqueue-on-commit.
//
// A task is a named Go function that takes JSON-encodable arguments and
// returns a JSON-encodable value:
//
//	var SendEmail = tasks.Define("emails.send",
//		func(ctx context.Context, a EmailArgs) (string, error) { ... },
//		tasks.WithQueue("emails"), tasks.WithPriority(10))
//
// Defining a task registers it under its name, so a worker binary only has to
// import the package that defines the tasks (the database/sql driver
// pattern). Enqueueing goes to the task's backend, "default" unless the task
// says otherwise:
//
//	res, err := SendEmail.Enqueue(ctx, EmailArgs{To: "a@example.com"})
//	...
//	err = res.Wait(ctx)
//	id, err := res.Value()
//
// With no backend configured under "default", tasks run immediately in the
// caller's goroutine, as with django-tasks' default ImmediateBackend.
//
// This package imports nothing else of gotasks. Backends live under
// backends/, signals in package signals.
package tasks
