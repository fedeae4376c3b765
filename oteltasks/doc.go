// Package oteltasks traces and measures gotasks with OpenTelemetry: a
// tasks.Middleware that starts a span for every enqueue and every attempt,
// carries the trace from the enqueuing process to the worker in the task's
// metadata, and records counters, histograms and queue-depth gauges.
//
// The core package tasks has no OpenTelemetry dependency: a program that
// does not import oteltasks compiles none of it. This package uses only the
// OpenTelemetry API (go.opentelemetry.io/otel, …/trace, …/metric); the
// program chooses the SDK and the exporters.
//
// # Wiring
//
// Create one Middleware per process and register it for every backend with
// tasks.Use, or for one backend with tasks.WithMiddleware (the database
// backend takes it through database.WithBackendOptions). Register it in the
// processes that enqueue (a web application) and in the workers: the
// enqueue side starts the trace's producer span and stores its context with
// the task, the worker side continues it.
//
//	m, err := oteltasks.New() // the global providers, see otel.SetTracerProvider
//	if err != nil { … }
//	defer m.Close()
//	defer tasks.Use(m)()
//
// A part of the program that counts on a meter provider of its own (the
// worker command's Prometheus endpoint) adds a second instance made with
// WithoutTracing: it only counts, and leaves the spans, the metadata and
// the contexts to the tracing instance.
//
// # Traces
//
// Every Enqueue or EnqueueMany call is one PRODUCER span, "enqueue <task
// name>", a child of the span in the caller's context (typically the HTTP
// request's). Its context is injected with the propagator into each task's
// metadata (the entries traceparent and tracestate of the default W3C
// Trace Context propagator; baggage only with a propagator that carries
// it, see WithPropagator), so it is stored with the task and read back by
// the worker that runs it.
//
// Every attempt is one CONSUMER span, "process <task name>". For a one-off
// task its parent is the context extracted from the task's metadata: the
// request span, the enqueue span and every attempt of the task share one
// trace. When the metadata carries no trace context (a task enqueued
// without this middleware, or a propagator that injects nothing) and the
// attempt's context already has a span (the immediate backend runs the
// task inside Enqueue), that span is the parent. The attempt's span is in
// the task's context, so the task's own spans and the tasks it enqueues
// (follow-ups) continue the trace.
//
// The spans are named after the task, where the messaging conventions
// name them after the operation and the destination ("process <queue>"):
// the task is what a user looks for in a trace, and a queue holds many
// tasks. The queue is in the attribute messaging.destination.name.
//
// Parent or link? The OpenTelemetry messaging conventions allow either: a
// consumer span may be a child of the producer span, or the root of its own
// trace with a link to it. This package parents the attempts of a one-off
// task, so that one request is one trace, with the tasks it caused below
// it, which is what a trace viewer shows best and what a developer asking
// "what did this request do?" wants. The price is that a trace can last
// long: a task deferred by an hour, or retried after a long backoff, adds a
// child span that long after the request ended (the retries stay children
// of the same enqueue span, each attempt a sibling of the others), and so
// does an operator's retry of an old failed task, which carries the
// task's metadata: it adds a late child to the original trace. Trace back
// ends handle late children, though a tail-sampling collector must be
// configured to wait, or it decides on the trace before the task ran.
//
// A repeating task (tasks.WithRepeat; tasks.Execution.Repeat > 0) is linked
// instead: each run is a result of its own with a copy of the first run's
// metadata, so parenting would make every run of a daily task a child of
// the request that enqueued it months ago. Each attempt of a run is the
// root of a trace of its own (trace.WithNewRoot) with a link to the stored
// context, the enqueue span; the run's follow-ups continue its trace.
//
// Span attributes follow the OpenTelemetry messaging semantic conventions
// where they fit: messaging.system "gotasks", messaging.operation.name
// "enqueue" or "process", messaging.operation.type "send" or "process",
// messaging.destination.name (the queue), messaging.message.id (the task's
// result id; for a batch enqueue, messaging.batch.message_count instead).
// gotasks adds gotasks.task.name and gotasks.backend and, on an attempt's
// span, gotasks.attempt, gotasks.max_attempts, gotasks.worker.id and
// gotasks.outcome (success, retry, failure, snooze, handback; see
// tasks.Outcome). A failed enqueue, and an attempt whose outcome is retry
// or failure, record the error (an exception event, the error.type
// attribute and the status Error); a snooze or a hand-back is no error.
//
// # Metrics
//
// The instruments, with the attributes task, queue, backend and (where it
// applies) outcome — short keys, so that they read well as Prometheus
// labels:
//
//	gotasks.tasks.enqueued     counter, {task}      task, queue, backend
//	gotasks.attempts.started   counter, {attempt}   task, queue, backend
//	gotasks.attempts.finished  counter, {attempt}   task, queue, backend, outcome
//	gotasks.attempt.duration   histogram, s         task, queue, backend, outcome
//	gotasks.attempt.wait       histogram, s         task, queue, backend
//	gotasks.queue.depth        gauge, {task}        queue, backend, state (WithQueueDepth)
//	gotasks.queue.age          gauge, s             queue, backend (WithQueueDepth)
//
// An enqueue is counted when the backend accepted it. An enqueue deferred
// to the commit of a transaction (see tasks.WithEnqueueOnCommit) is counted,
// and its span ends, when it is deferred, and one that joins the caller's
// database transaction is counted at the call: a rollback takes neither
// back.
//
// The wait of an attempt is from when it was due — the later of its
// enqueue time and its run-after time (a deferral, a retry's backoff, a
// snooze) — to its start (tasks.Execution.Wait): for a task due at once,
// its enqueue-to-start latency. An attempt whose enqueue or start time is
// unknown (zero) records no wait, rather than a wait of 0.
//
// The histograms advise bucket boundaries in seconds from 1 ms to 1 h; a
// view of the SDK can change them. The queue gauges are read from the
// backends given to WithQueueDepth at collections (see tasks.DepthReader);
// concurrent collections share one reading, and a reading less than a
// second old serves the next ones.
package oteltasks
