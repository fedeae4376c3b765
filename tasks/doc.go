// Package tasks is the core of gotasks: typed task definitions, their
// options, results and statuses, the registry of named backends, and the API
// that backends implement.
//
// # Defining and enqueueing tasks
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
// Options (WithPriority, WithQueue, WithBackend, WithDelay, WithMaxAttempts,
// WithTimeout, …) are set at definition and overridden per call with
// Task.Using. Task.Call runs the function directly, without a backend.
//
// # Results
//
// Enqueue returns a *Result[R]: the result's id, Status (READY, RUNNING,
// SUCCESSFUL, FAILED, CANCELLED), the errors of failed attempts (TaskError),
// and the return value (Result.Value). Refresh and Wait update it; a task's
// GetResult finds it again by id. Errors are matched with errors.Is against
// the sentinels of this package (ErrInvalidTask, ErrResultNotFound,
// ErrTaskFailed, …).
//
// # Inside a running task
//
// Every backend that runs tasks puts a TaskContext in the task's context:
// FromContext returns its result id, name, attempt and max attempts, queue,
// backend, worker id, times, and a logger carrying them (also Logger(ctx)).
// A task enqueued from a running task without WithBackend goes to the
// backend running it. A task returns NoRetry(err) to fail at once, whatever
// attempts are left, and Snooze(d) to run again after d without counting
// the attempt (on backends with CanDefer).
//
// # Backends
//
// Backends live under backends/ (dummy for unit tests, immediate for
// development, database for production). Each takes the shared
// BackendOption values (WithName, WithAllowedQueues,
// WithDefaultMaxAttempts, …); RegisterBackend configures it under its name.
// With no backend configured under "default", tasks run immediately in the
// caller's goroutine, as with django-tasks' default ImmediateBackend: with
// the full status life-cycle and the signals of package signals. What a
// backend supports is reported by its Capabilities; enqueueing an option it
// lacks is an ErrInvalidTask.
//
// Inside a transaction (see a backend's transaction helper, such as the
// database backend's RunInTx), Enqueue joins it or is deferred to its
// commit (WithEnqueueOnCommit).
//
// # For backend authors
//
// The rest of the exported API is for code that implements a backend or a
// worker; applications do not need it. It lives in the files named
// backend*.go:
//
//   - Backend is the interface to implement, Capabilities its flags, and
//     EnqueueRequest what the core hands it (validated, arguments encoded,
//     id assigned; NewRawResult makes the READY result to store). Waiter and
//     TxJoiner are optional interfaces. Embed BackendConfig for the settings
//     every backend shares (name, allowed queues, defaults), configured by
//     BackendOption values.
//   - RunAttempt runs one attempt of a stored task — lookup, decoding,
//     timeout, panic recovery, classification as SUCCESSFUL, READY for a
//     retry, or FAILED — with the Policy that AttemptConfig.ResolvePolicy
//     resolves from the stored result, the task's definition and the
//     backend. Every backend runs tasks through it; AttemptConfig says
//     which backend runs it (Running: the TaskContext, follow-ups,
//     snoozes) and which logger logs it. Attempt.Apply records the
//     outcome; NewTaskError is how a failure is recorded.
//   - RunInline is the whole life-cycle of a backend that runs each task as
//     it is enqueued (READY, RUNNING, finished, with the signals).
//   - Lookup and Runner give the task registered under a name; TaskNames
//     lists them.
//   - TxHooks, ContextWithTx and TxFromContext make a transaction visible
//     to Enqueue (for transaction helpers).
//   - NewID makes result ids; PollResult implements Waiter by polling.
//
// This package imports nothing of gotasks but its own internal packages.
// Backends live under backends/, the signals in package signals.
package tasks
