package dashboard_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// The real-browser tests: the system Chromium, headless, drives the
// dashboard served on loopback. Under CI=true a missing Chromium fails them;
// elsewhere they are skipped. Each takes a screenshot of every page it
// visits into one temporary directory, logged at the start.

// chromiumPath finds the system Chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("Chromium is required under CI=true: neither chromium nor chromium-browser is in PATH")
	}
	t.Skip("no chromium or chromium-browser in PATH")
	return ""
}

// newBrowser starts a headless Chromium for the test and returns its
// context; tabs are made from it (see newTab).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath(t)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	start, cancelStart := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancelStart()
	started := make(chan error, 1)
	go func() { started <- chromedp.Do(ctx) }() // starts the browser, bound to ctx
	select {
	case err := <-started:
		if err != nil {
			t.Fatalf("start %s: %v", path, err)
		}
	case <-start.Done():
		t.Fatalf("start %s: timed out", path)
	}
	return ctx
}

// tab is one browser tab of a test, bounded by a timeout.
type tab struct {
	t       *testing.T
	ctx     context.Context
	shots   string        // where screenshots go
	dialogs *atomic.Int32 // JavaScript dialogs opened (and dismissed)
	n       int
}

func newTab(t *testing.T, browser context.Context, shots string, timeout time.Duration) *tab {
	t.Helper()
	tabCtx, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tabCtx); err != nil { // opens the tab, bound to tabCtx
		t.Fatalf("open tab: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(tabCtx, timeout)
	t.Cleanup(cancelTimeout)
	tb := &tab{t: t, ctx: ctx, shots: shots, dialogs: new(atomic.Int32)}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for ev, err := range dialogs {
			if err != nil {
				return
			}
			tb.dialogs.Add(1)
			t.Logf("JavaScript dialog opened: %s %q", ev.Type, ev.Message)
			_, _ = chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: false})
		}
	}()
	return tb
}

// do runs actions, failing the test on an error.
func (tb *tab) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	tb.t.Helper()
	if err := chromedp.Do(tb.ctx, actions...); err != nil {
		tb.t.Fatalf("%s: %v", what, err)
	}
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](tb *tab, expr string) T {
	tb.t.Helper()
	v, err := chromedp.Run(tb.ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		tb.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitFor polls a JavaScript predicate until it holds.
func (tb *tab) waitFor(what, expr string, timeout time.Duration) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.Poll[chromedp.Void](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(timeout))); err != nil {
		tb.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

// open navigates to u and waits for sel to be visible.
func (tb *tab) open(u, sel string) {
	tb.t.Helper()
	tb.do("open "+u, chromedp.Navigate(u), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// clickAndLoad clicks sel and waits for the page it leads to (through the
// redirect after a POST) to load.
func (tb *tab) clickAndLoad(sel string) {
	tb.t.Helper()
	if _, err := chromedp.Run(tb.ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Click(chromedp.CSS(sel)))); err != nil {
		tb.t.Fatalf("click %s: %v", sel, err)
	}
}

// location is the tab's URL.
func (tb *tab) location() *url.URL {
	tb.t.Helper()
	s, err := chromedp.Run(tb.ctx, chromedp.Location())
	if err != nil {
		tb.t.Fatal(err)
	}
	u, err := url.Parse(s)
	if err != nil {
		tb.t.Fatal(err)
	}
	return u
}

// shot saves a full-page screenshot of the tab.
func (tb *tab) shot(name string) {
	tb.t.Helper()
	buf, err := chromedp.Run(tb.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.t.Fatalf("screenshot %s: %v", name, err)
	}
	tb.n++
	p := filepath.Join(tb.shots, fmt.Sprintf("%s-%02d-%s.png", strings.ReplaceAll(tb.t.Name(), "/", "_"), tb.n, name))
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		tb.t.Fatal(err)
	}
}

func TestBrowser(t *testing.T) {
	t.Parallel()
	browser := newBrowser(t)
	shots, err := os.MkdirTemp("", "gotasks-dashboard-shots-")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s", shots)
	start := time.Now()
	t.Cleanup(func() { t.Logf("browser tests took %v", time.Since(start).Round(time.Millisecond)) })

	// One behaviour per subtest, each with its own database, backend,
	// server and tab, for each dialect. They run one after the other: a
	// browser is heavy, and a test machine may have two cores.
	behaviour := func(name string, opts dashboard.Options, f func(t *testing.T, bu *bundle, tb *tab)) {
		t.Run(name, func(t *testing.T) {
			for _, d := range dbtest.Dialects {
				t.Run(d, func(t *testing.T) {
					bu := setup(t, dbtest.DSN(t, d), opts)
					tb := newTab(t, browser, shots, 60*time.Second)
					f(t, bu, tb)
					if n := tb.dialogs.Load(); n > 0 {
						t.Errorf("%d JavaScript dialogs opened", n)
					}
				})
			}
		})
	}

	behaviour("OverviewChartRefreshes", dashboard.Options{RefreshInterval: 200 * time.Millisecond}, func(t *testing.T, bu *bundle, tb *tab) {
		for i := range 3 {
			enqueue(t, bu.b, echoTask, "ok", tasks.WithQueue("emails"), tasks.WithVerboseName(string(rune('a'+i))))
		}
		enqueue(t, bu.b, failTask, "no", tasks.WithQueue("reports"))
		runAll(t, bu.b)

		tb.open(bu.base, "#chart svg")
		tb.shot("overview")
		if got := eval[string](tb, `document.querySelector('#queues-table tr[data-queue="emails"] td').textContent`); got != "emails" {
			t.Errorf("queue row: %q", got)
		}
		if n := eval[int](tb, `document.querySelectorAll('#chart svg rect.bar').length`); n < 2 {
			t.Errorf("%d bars in the chart, want the successful and failed ones", n)
		}
		if got := eval[string](tb, `document.getElementById('chart').dataset.total`); got != "4" {
			t.Errorf("chart total %s, want 4", got)
		}
		// Live: more tasks finish; the chart and the counts follow without
		// a reload.
		tb.do("mark the page", chromedp.Evaluate[chromedp.Void](`window.__sameDocument = true`))
		enqueue(t, bu.b, echoTask, "more", tasks.WithQueue("emails"))
		enqueue(t, bu.b, echoTask, "more", tasks.WithQueue("emails"))
		runAll(t, bu.b)
		tb.waitFor("the chart to redraw with 6 tasks", `document.getElementById('chart').dataset.total === '6'`, 15*time.Second)
		tb.waitFor("the emails count to be 5", `[...document.querySelectorAll('#queues-table tr[data-queue="emails"] td')].some(td => td.textContent.trim() === '5')`, 15*time.Second)
		if !eval[bool](tb, `window.__sameDocument === true`) {
			t.Error("the page reloaded")
		}
		tb.shot("overview-refreshed")
	})

	behaviour("FilterByStatus", dashboard.Options{}, func(t *testing.T, bu *bundle, tb *tab) {
		enqueue(t, bu.b, echoTask, "ok")
		enqueue(t, bu.b, failTask, "one")
		enqueue(t, bu.b, failTask, "two")
		runAll(t, bu.b)
		enqueue(t, bu.b, echoTask, "waiting")

		tb.open(bu.base+"tasks", "#tasks-table")
		tb.shot("tasks")
		if n := eval[int](tb, `document.querySelectorAll('#tasks-table tbody tr[data-status]').length`); n != 4 {
			t.Errorf("%d rows before filtering, want 4", n)
		}
		tb.do("check FAILED", chromedp.Click(chromedp.CSS(`input[name=status][value=FAILED]`)))
		tb.clickAndLoad("#apply-filter")
		if q := tb.location().Query(); q.Get("status") != "FAILED" {
			t.Errorf("filtered URL query %v", q)
		}
		got := eval[[]string](tb, `[...document.querySelectorAll('#tasks-table tbody tr[data-status]')].map(r => r.dataset.status)`)
		if len(got) != 2 || got[0] != "FAILED" || got[1] != "FAILED" {
			t.Errorf("filtered rows: %v, want two FAILED", got)
		}
		if !eval[bool](tb, `document.querySelector('input[name=status][value=FAILED]').checked`) {
			t.Error("the filter form forgot the status")
		}
		tb.shot("tasks-failed")
	})

	behaviour("RetryAFailedTask", dashboard.Options{}, func(t *testing.T, bu *bundle, tb *tab) {
		id := enqueue(t, bu.b, panicTask, "retry me").ID
		enqueue(t, bu.b, echoTask, "ok")
		runAll(t, bu.b)

		tb.open(bu.base+"tasks?status=FAILED", "#tasks-table")
		tb.clickAndLoad(`#tasks-table tbody a`)
		tb.do("task page", chromedp.WaitVisible(chromedp.ID("retry")))
		if got := eval[string](tb, `document.getElementById('task-id').textContent`); got != id {
			t.Errorf("task page of %q, want %s", got, id)
		}
		if got := eval[string](tb, `document.querySelector('#errors pre.message').textContent`); got != "kaboom: retry me" {
			t.Errorf("error message %q", got)
		}
		tb.do("open the traceback", chromedp.Click(chromedp.CSS("#errors summary")))
		tb.shot("task-failed")
		tb.clickAndLoad("#retry")
		if got := eval[string](tb, `document.getElementById('flash').textContent`); !strings.Contains(got, "retried") {
			t.Errorf("flash %q", got)
		}
		if s := status(t, bu.b, id); s != tasks.StatusReady {
			t.Errorf("status after retry: %s, want READY", s)
		}
		if eval[bool](tb, `!!document.getElementById('retry')`) {
			t.Error("a READY task still has a retry button")
		}
		tb.shot("task-retried")
	})

	behaviour("PauseAQueue", dashboard.Options{}, func(t *testing.T, bu *bundle, tb *tab) {
		const poll = 50 * time.Millisecond
		held := enqueue(t, bu.b, echoTask, "held", tasks.WithQueue("reports")).ID

		tb.open(bu.base+"queues", `tr[data-queue="reports"] button`)
		tb.shot("queues")
		tb.clickAndLoad(`tr[data-queue="reports"] button.pause`)
		tb.do("paused", chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="reports"] .badge-paused`)))
		tb.shot("queues-paused")

		startWorker(t, bu.b, database.WorkerConfig{PollInterval: poll, Concurrency: 2})
		other := enqueue(t, bu.b, echoTask, "runs", tasks.WithQueue("emails")).ID
		waitStatus(t, bu.b, other, tasks.StatusSuccessful, 10*time.Second)
		// Ten poll intervals: the worker looked for due tasks ten times.
		tick := time.NewTicker(poll / 2)
		defer tick.Stop()
		for end := time.Now().Add(10 * poll); time.Now().Before(end); <-tick.C {
			if s := status(t, bu.b, held); s != tasks.StatusReady {
				t.Fatalf("task of the paused queue is %s, want READY", s)
			}
		}

		tb.clickAndLoad(`tr[data-queue="reports"] button.resume`)
		if got := eval[string](tb, `document.getElementById('flash').textContent`); !strings.Contains(got, "resumed") {
			t.Errorf("flash %q", got)
		}
		waitStatus(t, bu.b, held, tasks.StatusSuccessful, 10*time.Second)
		tb.shot("queues-resumed")
	})

	behaviour("PauseASchedule", dashboard.Options{}, func(t *testing.T, bu *bundle, tb *tab) {
		const evil = `<script>window.__xss=1</script>`
		ctx := context.Background()
		for _, s := range []database.Schedule{
			{Name: "nightly-report", TaskName: echoTask.Name(), Args: json.RawMessage(`"daily"`), Cron: "30 2 * * *",
				TimeZone: "Europe/Paris"},
			{Name: evil, TaskName: echoTask.Name(), Every: time.Hour},
		} {
			if err := bu.b.SetSchedule(ctx, s); err != nil {
				t.Fatal(err)
			}
		}

		tb.open(bu.base, "nav")
		tb.clickAndLoad(`nav a[href$="schedules"]`)
		tb.do("schedules page", chromedp.WaitVisible(chromedp.CSS(`#schedules-list tr[data-schedule="nightly-report"] button.pause`)))
		if got := eval[string](tb, `document.querySelector('#schedules-list tr[data-schedule="nightly-report"] td.when').textContent`); got != "30 2 * * * (Europe/Paris)" {
			t.Errorf("timing %q", got)
		}
		if got := eval[string](tb, `typeof window.__xss`); got != "undefined" {
			t.Errorf("a schedule's name ran as a script: window.__xss is %s", got)
		}
		if !strings.Contains(eval[string](tb, `document.getElementById('schedules-list').innerText`), evil) {
			t.Error("the schedule named with markup is not shown as text")
		}
		tb.shot("schedules")
		tb.clickAndLoad(`tr[data-schedule="nightly-report"] button.pause`)
		tb.do("paused", chromedp.WaitVisible(chromedp.CSS(`tr[data-schedule="nightly-report"] .badge-paused`)))
		if s, err := bu.b.GetSchedule(ctx, "nightly-report"); err != nil || !s.Paused {
			t.Fatalf("schedule not paused (%v)", err)
		}
		tb.shot("schedules-paused")
		tb.clickAndLoad(`tr[data-schedule="nightly-report"] button.resume`)
		if got := eval[string](tb, `document.getElementById('flash').textContent`); !strings.Contains(got, "resumed: next run at") {
			t.Errorf("flash %q", got)
		}
		if s, err := bu.b.GetSchedule(ctx, "nightly-report"); err != nil || s.Paused {
			t.Fatalf("schedule still paused (%v)", err)
		}
	})

	behaviour("ScriptInArgsIsText", dashboard.Options{}, func(t *testing.T, bu *bundle, tb *tab) {
		const payload = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`
		id := enqueue(t, bu.b, failTask, payload, tasks.WithCreator(payload), tasks.WithVerboseName(payload)).ID
		runAll(t, bu.b)

		for _, p := range []string{"tasks/" + id, "tasks?creator=" + url.QueryEscape(payload), "?flash=" + url.QueryEscape(payload)} {
			tb.open(bu.base+p, "main")
			text := eval[string](tb, `document.body.innerText`)
			if !strings.Contains(text, "<script>window.__xss=1</script>") {
				t.Errorf("page %s does not show the payload as text:\n%s", p, text)
			}
			if got := eval[string](tb, `typeof window.__xss`); got != "undefined" {
				t.Errorf("page %s ran the payload: window.__xss is %s", p, got)
			}
			if n := eval[int](tb, `document.querySelectorAll('main script:not([type="application/json"]), main img').length`); n != 0 {
				t.Errorf("page %s has %d script or img elements in main", p, n)
			}
		}
		tb.open(bu.base+"tasks/"+id, "#args")
		if got := eval[string](tb, `document.getElementById('args').textContent`); !strings.Contains(got, "<script>") {
			t.Errorf("args %q", got)
		}
		tb.shot("task-xss")
	})
}
