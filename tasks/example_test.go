package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/backends/immediate"
	"github.com/gotasks/gotasks/tasks"
)

// EmailArgs are the arguments of the example task; like every task's
// arguments, they must survive a JSON round trip.
type EmailArgs struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

// sendEmail is defined in a package variable, so importing the package
// registers it (a worker binary needs nothing more).
var sendEmail = tasks.Define("example.send_email",
	func(ctx context.Context, a EmailArgs) (string, error) {
		if !strings.Contains(a.To, "@") {
			return "", fmt.Errorf("bad address %q", a.To)
		}
		return "sent " + a.Subject + " to " + a.To, nil
	},
	tasks.WithQueue("emails"), tasks.WithMaxAttempts(3))

// With no backend configured under "default", tasks run at once in the
// caller's goroutine, as with django-tasks' default.
func Example() {
	ctx := context.Background()
	res, err := sendEmail.Enqueue(ctx, EmailArgs{To: "ada@example.com", Subject: "Hello"})
	if err != nil {
		fmt.Println("enqueue:", err)
		return
	}
	fmt.Println(res.Status, res.Backend, res.Queue)
	v, err := res.Value()
	fmt.Println(v, err)
	// Output:
	// SUCCESSFUL default emails
	// sent Hello to ada@example.com <nil>
}

// resizeArgs and resize are the ExampleDefine task. Define tasks in package
// variables: a name can be defined only once per process.
type resizeArgs struct {
	Path  string `json:"path"`
	Width int    `json:"width"`
}

var resize = tasks.Define("example.resize",
	func(ctx context.Context, a resizeArgs) (string, error) {
		return fmt.Sprintf("%s@%dw", a.Path, a.Width), nil
	},
	tasks.WithPriority(10), tasks.WithQueue("images"))

func ExampleDefine() {
	fmt.Println(resize.Name(), resize.Priority(), resize.Queue(), resize.BackendName())
	_, registered := tasks.Lookup("example.resize")
	fmt.Println("registered:", registered)
	// Output:
	// example.resize 10 images default
	// registered: true
}

// Enqueue to a named immediate backend; a task's failure is recorded in
// its result, not returned by Enqueue.
func ExampleTask_Enqueue() {
	ctx := context.Background()
	restore := tasks.RegisterBackend(immediate.New(immediate.WithConfig(tasks.WithName("dev"))))
	defer restore()

	task := sendEmail.Using(tasks.WithBackend("dev"), tasks.WithCreator("user:42"))
	ok, _ := task.Enqueue(ctx, EmailArgs{To: "bob@example.com", Subject: "Hi"})
	bad, _ := task.Enqueue(ctx, EmailArgs{To: "nobody", Subject: "Hi"})

	fmt.Println(ok.Status, ok.Creator, ok.Attempts)
	fmt.Println(bad.Status, bad.Errors[0].Type, bad.Errors[0].Message)
	_, err := bad.Value()
	fmt.Println(errors.Is(err, tasks.ErrTaskFailed))
	// Output:
	// SUCCESSFUL user:42 1
	// FAILED *errors.errorString bad address "nobody"
	// true
}

// GetResult finds a result by id, typed; the id of another task's result is
// an error.
func ExampleTask_GetResult() {
	ctx := context.Background()
	restore := tasks.RegisterBackend(immediate.New(immediate.WithConfig(tasks.WithName("results"))))
	defer restore()

	task := sendEmail.Using(tasks.WithBackend("results"))
	res, _ := task.Enqueue(ctx, EmailArgs{To: "eve@example.com", Subject: "Report"})

	again, err := task.GetResult(ctx, res.ID)
	if err != nil {
		fmt.Println(err)
		return
	}
	v, _ := again.Value()
	fmt.Println(v)

	_, err = task.GetResult(ctx, tasks.NewID())
	fmt.Println(errors.Is(err, tasks.ErrResultNotFound))
	// Output:
	// sent Report to eve@example.com
	// true
}

// Wait blocks until a worker has run the task. Here the "worker" is the
// dummy backend's RunReady in another goroutine.
func ExampleResult_Wait() {
	ctx := context.Background()
	b := dummy.New(tasks.WithName("queue"))
	restore := tasks.RegisterBackend(b)
	defer restore()

	res, _ := sendEmail.Using(tasks.WithBackend("queue")).Enqueue(ctx, EmailArgs{To: "joe@example.com", Subject: "Later"})
	fmt.Println(res.Status)
	_, err := res.Value()
	fmt.Println(errors.Is(err, tasks.ErrNotFinished))

	go b.RunReady(ctx)
	if err := res.Wait(ctx); err != nil {
		fmt.Println(err)
		return
	}
	v, _ := res.Value()
	fmt.Println(res.Status, v)
	// Output:
	// READY
	// true
	// SUCCESSFUL sent Later to joe@example.com
}

// Call runs the function now, without a backend.
func ExampleTask_Call() {
	v, err := sendEmail.Call(context.Background(), EmailArgs{To: "kim@example.com", Subject: "Now"})
	fmt.Println(v, err)
	// Output:
	// sent Now to kim@example.com <nil>
}
