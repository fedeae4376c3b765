package tasks_test

import (
	"context"
	"fmt"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/tasks"
)

// requestIDKey is the context key of the web request's id in the example.
type requestIDKey struct{}

// Middleware carries a request id from the code that enqueues a task to
// the task's execution: enqueue middleware stores it in the task's
// metadata, execution middleware puts it back into the task's context and
// sees how the attempt ended. Use registers middleware for every backend;
// tasks.WithMiddleware for one.
func ExampleMiddleware() {
	b := dummy.New(tasks.WithName("example-middleware"), tasks.WithMiddleware(exampleCarry{}))
	defer tasks.RegisterBackend(b)()

	greet := tasks.Define("example.greet", func(ctx context.Context, name string) (string, error) {
		id, _ := ctx.Value(requestIDKey{}).(string)
		return "hello " + name + " (request " + id + ")", nil
	}, tasks.WithBackend("example-middleware"))

	// In the web handler: the request's context carries its id.
	reqCtx := context.WithValue(context.Background(), requestIDKey{}, "r-42")
	res, err := greet.Enqueue(reqCtx, "ada")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("stored:", res.Metadata["request_id"])

	// In the worker: a context of its own, without the request's values.
	if _, err := b.RunReady(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	_ = res.Refresh(context.Background())
	v, _ := res.Value()
	fmt.Println(v)
	// Output:
	// stored: r-42
	// example.greet attempt 1: success
	// hello ada (request r-42)
}

// exampleCarry is the middleware of ExampleMiddleware.
type exampleCarry struct{}

// Enqueue stores the request id of ctx in every task's metadata.
func (exampleCarry) Enqueue(ctx context.Context, reqs []*tasks.EnqueueRequest, next tasks.EnqueueFunc) ([]*tasks.RawResult, error) {
	if id, ok := ctx.Value(requestIDKey{}).(string); ok {
		for _, r := range reqs {
			r.SetMetadata("request_id", id)
		}
	}
	return next(ctx, reqs)
}

// Execute puts the stored request id into the task's context and reports
// the attempt's outcome.
func (exampleCarry) Execute(ctx context.Context, x *tasks.Execution, next tasks.ExecuteFunc) error {
	err := next(context.WithValue(ctx, requestIDKey{}, x.Metadata["request_id"]))
	fmt.Printf("%s attempt %d: %s\n", x.TaskName, x.Attempt, x.Outcome(err))
	return err
}
