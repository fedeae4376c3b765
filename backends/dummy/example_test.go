package dummy_test

import (
	"context"
	"fmt"

	"github.com/gotasks/gotasks/backends/dummy"
	"github.com/gotasks/gotasks/tasks"
)

type welcomeArgs struct {
	UserID int `json:"user_id"`
}

var sendWelcome = tasks.Define("dummy_example.send_welcome", func(_ context.Context, a welcomeArgs) (string, error) {
	return fmt.Sprintf("welcome mail sent to user %d", a.UserID), nil
})

// signUp is the code under test: it enqueues a welcome mail.
func signUp(ctx context.Context, userID int) error {
	_, err := sendWelcome.Enqueue(ctx, welcomeArgs{UserID: userID})
	return err
}

// A unit test configures the dummy backend as "default", runs the code
// under test, checks what it enqueued with Enqueued, and runs the stored
// tasks with RunReady.
func ExampleEnqueued() {
	ctx := context.Background()
	b := dummy.New()
	defer tasks.RegisterBackend(b)() // in a test: t.Cleanup(tasks.RegisterBackend(b))

	if err := signUp(ctx, 42); err != nil {
		fmt.Println(err)
		return
	}

	jobs, err := dummy.Enqueued(ctx, b, sendWelcome)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(len(jobs), "job:", jobs[0].Args.UserID, jobs[0].Result.Status)

	n, _ := b.RunReady(ctx)
	fmt.Println("ran", n)
	_ = jobs[0].Result.Refresh(ctx)
	v, _ := jobs[0].Result.Value()
	fmt.Println(v)
	// Output:
	// 1 job: 42 READY
	// ran 1
	// welcome mail sent to user 42
}
