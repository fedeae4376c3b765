package dashboard_test

import (
	"context"
	"encoding/json"
	"errors"
	"html/template"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/dashboard"
	"github.com/gotasks/gotasks/internal/dbtest"
	"github.com/gotasks/gotasks/tasks"
)

// fixture is a backend with six tasks on two queues: on "default" two
// SUCCESSFUL ones (the first with metadata), on "emails" two FAILED (one
// returned an error, one panicked), a CANCELLED and a READY one.
type fixture struct {
	*bundle
	ok, ok2, failed, panicked, cancelled, ready string
}

func seed(t *testing.T, dsn string, opts dashboard.Options) *fixture {
	t.Helper()
	bu := setup(t, dsn, opts)
	fx := &fixture{bundle: bu}
	fx.ok = enqueue(t, bu.b, echoTask, "hello", tasks.WithCreator("user:1"), tasks.WithVerboseName("Say hello"),
		tasks.WithMetadata(map[string]string{"tenant": "acme", "request-id": "r-42", "note": ""})).ID
	fx.ok2 = enqueue(t, bu.b, echoTask, "again").ID
	fx.failed = enqueue(t, bu.b, failTask, "first", tasks.WithQueue("emails")).ID
	fx.panicked = enqueue(t, bu.b, panicTask, "second", tasks.WithQueue("emails")).ID
	runAll(t, bu.b)
	// Enqueued after the run: they stay READY (one is cancelled).
	fx.cancelled = enqueue(t, bu.b, echoTask, "to cancel", tasks.WithQueue("emails")).ID
	if _, err := bu.b.CancelTasks(context.Background(), []string{fx.cancelled}); err != nil {
		t.Fatal(err)
	}
	fx.ready = enqueue(t, bu.b, echoTask, "waiting", tasks.WithQueue("emails")).ID
	return fx
}

var rowRE = regexp.MustCompile(`<tr data-id="([^"]+)" data-status="([A-Z]+)">`)

// metaRE matches an entry of the task page's metadata list.
var metaRE = regexp.MustCompile(`<dt class="mono">([^<]*)</dt><dd class="mono">(.*?)</dd>`)

// rows returns the ids and statuses of the rows of a task list page.
func rows(body string) map[string]tasks.Status {
	out := map[string]tasks.Status{}
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = tasks.Status(m[2])
	}
	return out
}

func TestPages(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		fx := seed(t, dsn, dashboard.Options{})

		t.Run("Overview", func(t *testing.T) {
			resp, body := fx.get(t, "")
			wantCode(t, resp, body, http.StatusOK)
			for _, want := range []string{`id="chart"`, `data-api="./api/stats"`, `<tr data-queue="emails">`, `<tr data-queue="default">`, `id="stats-json"`} {
				if !strings.Contains(body, want) {
					t.Errorf("overview lacks %s", want)
				}
			}
			if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
				t.Errorf("Content-Security-Policy = %q", csp)
			}
		})

		t.Run("StatsAPI", func(t *testing.T) {
			resp, body := fx.get(t, "api/stats")
			wantCode(t, resp, body, http.StatusOK)
			var s struct {
				Queues []struct {
					Queue  string           `json:"queue"`
					Counts map[string]int64 `json:"counts"`
				} `json:"queues"`
				Throughput []struct {
					Successful, Failed, Cancelled int64
				} `json:"throughput"`
			}
			if err := json.Unmarshal([]byte(body), &s); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			counts := map[string]map[string]int64{}
			for _, q := range s.Queues {
				counts[q.Queue] = q.Counts
			}
			want := map[string]map[string]int64{
				"default": {"SUCCESSFUL": 2},
				"emails":  {"FAILED": 2, "CANCELLED": 1, "READY": 1},
			}
			if diff := cmp.Diff(want, counts); diff != "" {
				t.Errorf("counts (-want +got):\n%s", diff)
			}
			var ok, failed int64
			for _, m := range s.Throughput {
				ok, failed = ok+m.Successful, failed+m.Failed
			}
			if ok != 2 || failed != 2 {
				t.Errorf("throughput: %d successful, %d failed; want 2 and 2", ok, failed)
			}
		})

		t.Run("TaskList", func(t *testing.T) {
			resp, body := fx.get(t, "tasks")
			wantCode(t, resp, body, http.StatusOK)
			want := map[string]tasks.Status{
				fx.ok: tasks.StatusSuccessful, fx.ok2: tasks.StatusSuccessful, fx.failed: tasks.StatusFailed, fx.panicked: tasks.StatusFailed,
				fx.cancelled: tasks.StatusCancelled, fx.ready: tasks.StatusReady,
			}
			got := rows(body)
			if len(got) != len(want) {
				t.Errorf("%d rows, want %d", len(got), len(want))
			}
			for id, st := range want {
				if got[id] != st {
					t.Errorf("row %s: %q, want %s", id, got[id], st)
				}
			}
		})

		t.Run("Filters", func(t *testing.T) {
			for _, c := range []struct {
				query string
				want  []string
			}{
				{"status=FAILED", []string{fx.failed, fx.panicked}},
				{"status=failed,cancelled&queue=emails", []string{fx.failed, fx.panicked, fx.cancelled}},
				{"task=dashboard_test.panic", []string{fx.panicked}},
				{"creator=user:1", []string{fx.ok}},
				{"verbose=Say+hello", []string{fx.ok}},
				{"id=" + fx.failed, []string{fx.failed}},
				{"status=READY&enqueued_after=2000-01-01T00:00&enqueued_before=2999-01-01", []string{fx.ready}},
				{"finished_before=2000-01-01T00:00", nil},
				{"finished_after=2000-01-01T00:00&queue=default&order=oldest", []string{fx.ok, fx.ok2}},
			} {
				resp, body := fx.get(t, "tasks?"+c.query)
				wantCode(t, resp, body, http.StatusOK)
				var got []string
				for id := range rows(body) {
					got = append(got, id)
				}
				want := slices.Clone(c.want)
				slices.Sort(got)
				slices.Sort(want)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("tasks?%s (-want +got):\n%s", c.query, diff)
				}
			}
		})

		t.Run("BadQuery", func(t *testing.T) {
			for _, q := range []string{"status=NOPE", "enqueued_after=yesterday", "order=sideways", "cursor=garbage!"} {
				resp, body := fx.get(t, "tasks?"+q)
				wantCode(t, resp, body, http.StatusBadRequest)
				if !strings.Contains(body, `id="list-error"`) {
					t.Errorf("tasks?%s: no error message", q)
				}
			}
		})

		t.Run("Pagination", func(t *testing.T) {
			seen := map[string]bool{}
			next := "tasks?limit=2&order=oldest"
			var order []string
			for pages := 0; next != ""; pages++ {
				if pages > 5 {
					t.Fatal("the pages do not end")
				}
				resp, body := fx.get(t, next)
				wantCode(t, resp, body, http.StatusOK)
				for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
					if seen[m[1]] {
						t.Errorf("task %s on two pages", m[1])
					}
					seen[m[1]] = true
					order = append(order, m[1])
				}
				next = ""
				if m := regexp.MustCompile(`href="\./(tasks\?[^"]*)" id="next-page"`).FindStringSubmatch(body); m != nil {
					next = strings.ReplaceAll(m[1], "&amp;", "&")
					if !strings.Contains(next, "cursor=") || !strings.Contains(next, "limit=2") || !strings.Contains(next, "order=oldest") {
						t.Errorf("next page link %q does not carry the cursor and the query", next)
					}
				}
			}
			if len(seen) != 6 || !slices.IsSorted(order) {
				t.Errorf("pages of 2, oldest first: %v; want the 6 tasks in id order", order)
			}
		})

		t.Run("TaskDetail", func(t *testing.T) {
			resp, body := fx.get(t, "tasks/"+fx.panicked)
			wantCode(t, resp, body, http.StatusOK)
			for _, want := range []string{"kaboom: second", "Traceback", "goroutine", `id="retry"`, `id="delete"`, `action="../tasks/` + fx.panicked + `/retry"`} {
				if !strings.Contains(body, want) {
					t.Errorf("task page lacks %q", want)
				}
			}
			if strings.Contains(body, `id="cancel"`) {
				t.Error("a FAILED task has a cancel button")
			}
			_, body = fx.get(t, "tasks/"+fx.ok)
			for _, want := range []string{`&#34;hello&#34;`, "Say hello", "user:1", "attempt 1:"} {
				if !strings.Contains(body, want) {
					t.Errorf("successful task page lacks %q", want)
				}
			}
			// The metadata, a key/value list sorted by key.
			var meta []string
			for _, m := range metaRE.FindAllStringSubmatch(body, -1) {
				meta = append(meta, m[1]+"="+m[2])
			}
			if diff := cmp.Diff([]string{"note=" + `<span class="muted">empty</span>`, "request-id=r-42", "tenant=acme"}, meta); diff != "" {
				t.Errorf("task page's metadata (-want +got):\n%s", diff)
			}
			if _, body := fx.get(t, "tasks/"+fx.ok2); strings.Contains(body, `id="metadata"`) {
				t.Error("the page of a task without metadata has a metadata section")
			}
			resp, body = fx.get(t, "tasks/no-such-task")
			wantCode(t, resp, body, http.StatusNotFound)
		})

		t.Run("QueuesAndWorkers", func(t *testing.T) {
			resp, body := fx.get(t, "queues")
			wantCode(t, resp, body, http.StatusOK)
			if !strings.Contains(body, `<tr data-queue="emails">`) || !strings.Contains(body, `action="./queues/pause"`) {
				t.Errorf("queues page:\n%s", body)
			}
			resp, body = fx.get(t, "workers")
			wantCode(t, resp, body, http.StatusOK)
			if !strings.Contains(body, "No live worker.") {
				t.Error("workers page shows a worker with none running")
			}
			startWorker(t, fx.b, database.WorkerConfig{WorkerID: "dash-worker-1", Queues: []string{"nothing-here"}})
			dbtest.WaitUntil(t, dbtestTimeout, "the worker on the workers page", func() bool {
				_, body = fx.get(t, "workers")
				return strings.Contains(body, "dash-worker-1")
			})
			if !strings.Contains(body, "nothing-here") {
				t.Error("workers page does not show the worker's queues")
			}
		})

		t.Run("NeverShowsTheDSN", func(t *testing.T) {
			u, _ := url.Parse(strings.TrimPrefix(dsn, "sqlite://"))
			for _, p := range []string{"", "tasks", "tasks/" + fx.ok, "queues", "workers", "api/stats", "nope"} {
				_, body := fx.get(t, p)
				if strings.Contains(body, dsn) || (u != nil && u.Host != "" && strings.Contains(body, u.Host)) || strings.Contains(body, "tasks.db") {
					t.Errorf("page %q shows the DSN or the server", p)
				}
			}
		})
	})
}

func TestEscaping(t *testing.T) {
	t.Parallel()
	const payload = `<script>window.__xss=1</script><img src=x onerror="window.__xss=2">`
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		bu := setup(t, dsn, dashboard.Options{})
		id := enqueue(t, bu.b, failTask, payload, tasks.WithCreator(payload), tasks.WithVerboseName(payload), tasks.WithQueue("q<script>"),
			tasks.WithMetadata(map[string]string{payload: payload})).ID
		runAll(t, bu.b)
		for _, p := range []string{"", "tasks", "tasks/" + id, "queues", "tasks?creator=" + url.QueryEscape(payload), "?flash=" + url.QueryEscape(payload)} {
			resp, body := bu.get(t, p)
			wantCode(t, resp, body, http.StatusOK)
			if strings.Contains(body, "<script>window") || strings.Contains(body, "<img src=x") || strings.Contains(body, "q<script>") {
				t.Errorf("page %q renders the payload as markup:\n%s", p, body)
			}
		}
		_, body := bu.get(t, "tasks/"+id)
		escaped := template.HTMLEscapeString(payload)
		if want := `<dt class="mono">` + escaped + `</dt><dd class="mono">` + escaped + `</dd>`; !strings.Contains(body, want) {
			t.Errorf("task page does not show the metadata as text (want %s):\n%s", want, body)
		}
		for _, want := range []string{"&lt;script&gt;window.__xss=1&lt;/script&gt;", "boom: \\u003cscript\\u003e", "boom: &lt;script&gt;"} {
			if strings.Contains(body, want) {
				return
			}
		}
		t.Errorf("task page does not show the payload as text:\n%s", body)
	})
}

func TestCSRF(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		bu := setup(t, dsn, dashboard.Options{})
		id := enqueue(t, bu.b, failTask, "x").ID
		runAll(t, bu.b)
		tok := bu.csrf(t, "tasks/"+id)
		retry := "tasks/" + id + "/retry"
		// A token served to another browser (its own binding cookie).
		elsewhere := *bu
		elsewhere.client = newClient(t)

		for _, c := range []struct {
			name string
			form url.Values
			hdr  http.Header
		}{
			{"NoToken", url.Values{}, nil},
			{"ForgedToken", url.Values{"csrf_token": {strings.ToUpper(tok)}}, nil},
			{"OtherHandlersToken", url.Values{"csrf_token": {serve(t, bu.b, dashboard.Options{}).csrf(t, "tasks/"+id)}}, nil},
			{"AnotherBrowsersToken", url.Values{"csrf_token": {elsewhere.csrf(t, "tasks/"+id)}}, nil},
			{"CrossSite", url.Values{"csrf_token": {tok}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
			{"OtherOrigin", url.Values{"csrf_token": {tok}}, http.Header{"Origin": {"https://evil.example"}}},
		} {
			t.Run(c.name, func(t *testing.T) {
				resp, body := bu.post(t, retry, c.form, c.hdr)
				wantCode(t, resp, body, http.StatusForbidden)
				if s := status(t, bu.b, id); s != tasks.StatusFailed {
					t.Errorf("refused retry changed the task to %s", s)
				}
			})
		}

		t.Run("GetDoesNotAct", func(t *testing.T) {
			resp, body := bu.get(t, retry)
			if resp.StatusCode == http.StatusSeeOther || status(t, bu.b, id) != tasks.StatusFailed {
				t.Errorf("GET %s acted (status %d):\n%s", retry, resp.StatusCode, body)
			}
		})

		t.Run("ValidToken", func(t *testing.T) {
			resp, body := bu.post(t, retry, url.Values{"csrf_token": {tok}}, http.Header{"Sec-Fetch-Site": {"same-origin"}})
			wantCode(t, resp, body, http.StatusSeeOther)
			if got, want := location(t, resp).Path, prefix+"/tasks/"+id; got != want {
				t.Errorf("redirected to %s, want %s", got, want)
			}
			if s := status(t, bu.b, id); s != tasks.StatusReady {
				t.Errorf("status after retry: %s, want READY", s)
			}
		})
	})
}

func TestReadOnly(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		key := []byte("0123456789abcdef0123456789abcdef")
		rw := setup(t, dsn, dashboard.Options{CSRFKey: key})
		ro := serve(t, rw.b, dashboard.Options{CSRFKey: key, ReadOnly: true})
		id := enqueue(t, rw.b, failTask, "x", tasks.WithQueue("q1")).ID
		runAll(t, rw.b)
		tok := rw.csrf(t, "tasks/"+id)

		if err := rw.b.SetSchedule(context.Background(), database.Schedule{Name: "hourly", TaskName: echoTask.Name(),
			Every: time.Hour}); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{"", "tasks", "tasks/" + id, "queues", "schedules", "workers"} {
			resp, body := ro.get(t, p)
			wantCode(t, resp, body, http.StatusOK)
			if strings.Contains(body, `method="post"`) || strings.Contains(body, "<button") && !strings.Contains(p, "tasks") {
				t.Errorf("read-only page %q has a form or button", p)
			}
		}
		for _, c := range []struct {
			path string
			form url.Values
		}{
			{"tasks/" + id + "/retry", url.Values{}},
			{"tasks/" + id + "/delete", url.Values{}},
			{"tasks/bulk", url.Values{"op": {"delete:matching"}}},
			{"queues/pause", url.Values{"queue": {"q1"}}},
			{"schedules/pause", url.Values{"schedule": {"hourly"}}},
		} {
			c.form.Set("csrf_token", tok)
			resp, body := ro.post(t, c.path, c.form, nil)
			wantCode(t, resp, body, http.StatusForbidden)
		}
		if s := status(t, rw.b, id); s != tasks.StatusFailed {
			t.Errorf("read-only dashboard changed the task to %s", s)
		}
		qs, err := rw.b.ListQueues(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, q := range qs {
			if q.Paused {
				t.Errorf("read-only dashboard paused %s", q.Name)
			}
		}
		if s, err := rw.b.GetSchedule(context.Background(), "hourly"); err != nil || s.Paused {
			t.Errorf("read-only dashboard paused the schedule (%v)", err)
		}
		// The same token works on the read-write handler (shared key).
		resp, body := rw.post(t, "tasks/"+id+"/retry", url.Values{"csrf_token": {tok}}, nil)
		wantCode(t, resp, body, http.StatusSeeOther)
	})
}

var linkRE = regexp.MustCompile(`(?:href|action|src|data-api)="([^"]*)"`)

func TestPrefix(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		fx := seed(t, dsn, dashboard.Options{})

		t.Run("BarePrefixRedirects", func(t *testing.T) {
			// A router that sends the bare prefix to the handler (ServeMux
			// redirects it itself).
			h := http.StripPrefix(prefix, dashboard.New(fx.b, dashboard.Options{}))
			req := httptest.NewRequest(http.MethodGet, prefix+"?status=FAILED", nil)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			resp := rec.Result()
			resp.Request = req
			if resp.StatusCode != http.StatusMovedPermanently {
				t.Fatalf("status %d, want 301", resp.StatusCode)
			}
			if got := location(t, resp); got.Path != prefix+"/" || got.RawQuery != "status=FAILED" {
				t.Errorf("redirected to %s, want %s/?status=FAILED", got, prefix)
			}
		})

		t.Run("EveryLinkStaysUnderThePrefix", func(t *testing.T) {
			pages := []string{"", "tasks", "tasks?status=FAILED&limit=1", "tasks/" + fx.failed, "queues", "schedules", "workers"}
			seen := map[string]bool{}
			for _, p := range pages {
				resp, body := fx.get(t, p)
				wantCode(t, resp, body, http.StatusOK)
				for _, m := range linkRE.FindAllStringSubmatch(body, -1) {
					ref := strings.ReplaceAll(m[1], "&amp;", "&")
					u, err := resp.Request.URL.Parse(ref)
					if err != nil {
						t.Errorf("page %q: bad link %q: %v", p, ref, err)
						continue
					}
					if !strings.HasPrefix(u.Path, prefix+"/") || u.Host != resp.Request.URL.Host {
						t.Errorf("page %q: link %q leaves the prefix: %s", p, ref, u)
						continue
					}
					if strings.Contains(m[0], "action=") || seen[u.String()] {
						continue
					}
					seen[u.String()] = true
					r2, b2 := fx.get(t, u.String())
					if r2.StatusCode != http.StatusOK {
						t.Errorf("page %q: link %q → %s: status %d\n%.500s", p, ref, u, r2.StatusCode, b2)
					}
				}
			}
			if len(seen) < 10 {
				t.Errorf("followed only %d links", len(seen))
			}
		})

		t.Run("StripPrefixWithSlash", func(t *testing.T) {
			mux := http.NewServeMux()
			mux.Handle("/ops/", http.StripPrefix("/ops/", dashboard.New(fx.b, dashboard.Options{})))
			srv := newServer(t, mux)
			bu := &bundle{b: fx.b, base: srv + "/ops/", client: fx.client}
			for _, p := range []string{"", "tasks", "tasks/" + fx.failed, "static/dashboard.js"} {
				resp, body := bu.get(t, p)
				wantCode(t, resp, body, http.StatusOK)
			}
			resp, _ := bu.post(t, "queues/pause", url.Values{"csrf_token": {bu.csrf(t, "queues")}, "queue": {"emails"}}, nil)
			if got := location(t, resp); got.Path != "/ops/queues" {
				t.Errorf("redirect after POST to %s, want /ops/queues", got)
			}
		})
	})
}

func TestActions(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		fx := seed(t, dsn, dashboard.Options{})
		ctx := context.Background()
		tok := fx.csrf(t, "tasks")
		form := func(kv ...string) url.Values { return csrfForm(tok, kv...) }
		flash := func(t *testing.T, resp *http.Response) string {
			t.Helper()
			return location(t, resp).Query().Get("flash")
		}

		t.Run("RetrySelected", func(t *testing.T) {
			resp, body := fx.post(t, "tasks/bulk", form("op", "retry:selected", "id", fx.failed, "id", fx.ok, "next", "tasks?status=FAILED"), nil)
			wantCode(t, resp, body, http.StatusSeeOther)
			loc := location(t, resp)
			if loc.Path != prefix+"/tasks" || loc.Query().Get("status") != "FAILED" {
				t.Errorf("redirected to %s", loc)
			}
			if got, want := flash(t, resp), "Retried 1 task. 1 selected task left alone (not FAILED or CANCELLED)."; got != want {
				t.Errorf("flash %q, want %q", got, want)
			}
			if s := status(t, fx.b, fx.failed); s != tasks.StatusReady {
				t.Errorf("retried task is %s", s)
			}
		})

		t.Run("CancelOne", func(t *testing.T) {
			resp, body := fx.post(t, "tasks/"+fx.ready+"/cancel", form(), nil)
			wantCode(t, resp, body, http.StatusSeeOther)
			if s := status(t, fx.b, fx.ready); s != tasks.StatusCancelled {
				t.Errorf("cancelled task is %s", s)
			}
			resp, _ = fx.post(t, "tasks/"+fx.ok+"/cancel", form(), nil)
			if location(t, resp).Query().Get("flash_kind") != "error" {
				t.Error("cancelling a SUCCESSFUL task did not flash an error")
			}
		})

		t.Run("DeleteMatching", func(t *testing.T) {
			resp, body := fx.post(t, "tasks/bulk", form("op", "delete:matching", "filter", "status=CANCELLED&queue=emails"), nil)
			wantCode(t, resp, body, http.StatusSeeOther)
			if got := flash(t, resp); got != "Deleted 2 tasks matching the filter." {
				t.Errorf("flash %q", got)
			}
			p, err := fx.b.ListTasks(ctx, database.ListParams{TaskFilter: database.TaskFilter{Statuses: []tasks.Status{tasks.StatusCancelled}}})
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Tasks) != 0 {
				t.Errorf("%d CANCELLED tasks left", len(p.Tasks))
			}
		})

		t.Run("RetryMatchingThenDeleteOne", func(t *testing.T) {
			resp, _ := fx.post(t, "tasks/bulk", form("op", "retry:matching", "filter", "task=dashboard_test.panic"), nil)
			if got := flash(t, resp); got != "Retried 1 task matching the filter." {
				t.Errorf("flash %q", got)
			}
			resp, _ = fx.post(t, "tasks/"+fx.ok+"/delete", form("next", "tasks"), nil)
			if loc := location(t, resp); loc.Path != prefix+"/tasks" {
				t.Errorf("after delete, redirected to %s", loc)
			}
			if _, err := fx.b.GetTask(ctx, fx.ok); err == nil {
				t.Error("deleted task is still there")
			}
		})

		t.Run("NoSelection", func(t *testing.T) {
			resp, _ := fx.post(t, "tasks/bulk", form("op", "delete:selected"), nil)
			if q := location(t, resp).Query(); q.Get("flash_kind") != "error" {
				t.Errorf("no selection: flash %v", q)
			}
		})

		t.Run("UnsafeNext", func(t *testing.T) {
			for _, next := range []string{"https://evil.example/", "//evil.example/x", "/etc", "javascript:alert(1)", "../../x"} {
				resp, _ := fx.post(t, "queues/resume", form("queue", "emails", "next", next), nil)
				if loc := location(t, resp); loc.Host != resp.Request.URL.Host || loc.Path != prefix+"/queues" {
					t.Errorf("next=%q: redirected to %s", next, loc)
				}
			}
		})

		t.Run("PauseResume", func(t *testing.T) {
			paused := func() bool {
				qs, err := fx.b.ListQueues(ctx)
				if err != nil {
					t.Fatal(err)
				}
				for _, q := range qs {
					if q.Name == "emails" {
						return q.Paused
					}
				}
				return false
			}
			fx.post(t, "queues/pause", form("queue", "emails"), nil)
			if !paused() {
				t.Error("pause did not pause")
			}
			_, body := fx.get(t, "queues")
			if !strings.Contains(body, `class="badge badge-paused"`) {
				t.Error("queues page does not show the pause")
			}
			fx.post(t, "queues/resume", form("queue", "emails"), nil)
			if paused() {
				t.Error("resume did not resume")
			}
		})
	})
}

// TestQueueLimitsShown: the queues page shows a queue's global limits,
// and a dash where there is none.
func TestQueueLimitsShown(t *testing.T) {
	t.Parallel()
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		bu := setup(t, dsn, dashboard.Options{})
		ctx := context.Background()
		enqueue(t, bu.b, echoTask, "x", tasks.WithQueue("plain"))
		if err := bu.b.SetQueueLimit(ctx, "limited", 5); err != nil {
			t.Fatal(err)
		}
		if err := bu.b.SetQueueRateLimit(ctx, "limited", 10, time.Minute); err != nil {
			t.Fatal(err)
		}
		resp, body := bu.get(t, "queues")
		wantCode(t, resp, body, http.StatusOK)
		for _, re := range []string{
			`(?s)<tr data-queue="limited">.*?<td class="num limit">5</td>\s*<td class="rate">10 per 1m0s</td>`,
			`(?s)<tr data-queue="plain">.*?<td class="num limit"><span class="muted">—</span></td>\s*<td class="rate"><span class="muted">—</span></td>`,
		} {
			if !regexp.MustCompile(re).MatchString(body) {
				t.Errorf("queues page: no match for %s:\n%s", re, body)
			}
		}
	})
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSchedules: the schedules page lists the durable schedules with their
// timing, state and runs, and pauses and resumes them.
func TestSchedules(t *testing.T) {
	t.Parallel()
	const payload = `<script>window.__xss=1</script>`
	dbtest.ForEachDialect(t, func(t *testing.T, dsn string) {
		bu := setup(t, dsn, dashboard.Options{})
		ctx := context.Background()
		for _, s := range []database.Schedule{
			{Name: "nightly", TaskName: echoTask.Name(), Args: json.RawMessage(`"report"`), Cron: "30 2 * * *",
				TimeZone: "Europe/Paris"},
			{Name: "minutely", TaskName: echoTask.Name(), Queue: "emails", Every: time.Minute, Paused: true},
			{Name: "evil " + payload, TaskName: echoTask.Name(), Args: json.RawMessage(`"` + strings.Repeat("x", 200) + `"`),
				Every: time.Hour},
			{Name: " padded ", TaskName: echoTask.Name(), Args: mustJSON(t, "<b>&amp;</b> é"), Every: time.Hour},
		} {
			if err := bu.b.SetSchedule(ctx, s); err != nil {
				t.Fatalf("set schedule %s: %v", s.Name, err)
			}
		}
		tok := bu.csrf(t, "schedules")
		form := func(kv ...string) url.Values { return csrfForm(tok, kv...) }
		get := func(t *testing.T, name string) *database.Schedule {
			t.Helper()
			s, err := bu.b.GetSchedule(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		// row returns the page's row of schedule name.
		row := func(t *testing.T, body, name string) string {
			t.Helper()
			re := regexp.MustCompile(`(?s)<tr data-schedule="` + regexp.QuoteMeta(template.HTMLEscapeString(name)) + `">.*?</tr>`)
			m := re.FindString(body)
			if m == "" {
				t.Fatalf("no row for schedule %q:\n%s", name, body)
			}
			return m
		}

		t.Run("Listed", func(t *testing.T) {
			resp, body := bu.get(t, "schedules")
			wantCode(t, resp, body, http.StatusOK)
			if strings.Contains(body, "<script>window") {
				t.Errorf("schedules page renders a name as markup:\n%s", body)
			}
			nightly := row(t, body, "nightly")
			for _, want := range []string{
				`<td class="mono when">30 2 * * * <span class="muted">(Europe/Paris)</span></td>`,
				`<td class="mono args" title="&#34;report&#34;">&#34;report&#34;</td>`,
				`<span class="badge">active</span>`,
				`<td class="next">` + get(t, "nightly").NextRunAt.UTC().Format("2006-01-02 15:04:05Z") + `<div class="sub">in `,
				`<td class="last"><span class="muted">never</span></td>`,
				`action="./schedules/pause"`,
				`href="./tasks?task=` + url.QueryEscape(echoTask.Name()) + `"`,
			} {
				if !strings.Contains(nightly, want) {
					t.Errorf("nightly's row has no %s:\n%s", want, nightly)
				}
			}
			minutely := row(t, body, "minutely")
			for _, want := range []string{
				`<td class="mono when">every 1m0s</td>`,
				`<span class="badge badge-paused">paused</span>`,
				`<td class="next"><span class="muted">—</span></td>`,
				`action="./schedules/resume"`,
				`href="./tasks?queue=emails"`,
			} {
				if !strings.Contains(minutely, want) {
					t.Errorf("minutely's row has no %s:\n%s", want, minutely)
				}
			}
			evil := row(t, body, "evil "+payload)
			if want := `&#34;` + strings.Repeat("x", 79) + `…</td>`; !strings.Contains(evil, want) {
				t.Errorf("long arguments are not clipped to 80 characters:\n%s", evil)
			}
			// encoding/json's \u003c escapes are shown as the characters
			// (as text), as on the task page.
			padded := row(t, body, " padded ")
			if want := `>&#34;&lt;b&gt;&amp;amp;&lt;/b&gt; é&#34;</td>`; !strings.Contains(padded, want) {
				t.Errorf("arguments with markup: want %s in\n%s", want, padded)
			}
		})

		t.Run("PauseResume", func(t *testing.T) {
			resp, _ := bu.post(t, "schedules/pause", form("schedule", "nightly"), nil)
			if got := location(t, resp); got.Path != prefix+"/schedules" || !strings.Contains(got.Query().Get("flash"), "paused") {
				t.Errorf("pause redirected to %s", got)
			}
			if !get(t, "nightly").Paused {
				t.Fatal("pause did not pause")
			}
			_, body := bu.get(t, "schedules")
			if r := row(t, body, "nightly"); !strings.Contains(r, "badge-paused") || !strings.Contains(r, `action="./schedules/resume"`) {
				t.Errorf("the page does not show the pause:\n%s", r)
			}
			resp, _ = bu.post(t, "schedules/resume", form("schedule", "nightly"), nil)
			s := get(t, "nightly")
			if s.Paused {
				t.Fatal("resume did not resume")
			}
			want := "Schedule nightly resumed: next run at " + s.NextRunAt.UTC().Format("2006-01-02 15:04:05Z") + "."
			if got := location(t, resp).Query().Get("flash"); got != want {
				t.Errorf("flash %q, want %q", got, want)
			}
		})

		t.Run("ExactNames", func(t *testing.T) {
			for _, name := range []string{"evil " + payload, " padded "} {
				resp, _ := bu.post(t, "schedules/pause", form("schedule", name), nil)
				if !get(t, name).Paused {
					t.Fatalf("pause of %q did not pause it", name)
				}
				resp, body := bu.get(t, location(t, resp).String())
				wantCode(t, resp, body, http.StatusOK)
				if strings.Contains(body, "<script>window") {
					t.Errorf("the page after the pause renders the name as markup:\n%s", body)
				}
				if want := template.HTMLEscapeString("Schedule " + name + " paused"); !strings.Contains(body, want) {
					t.Errorf("no flash %q:\n%s", want, body)
				}
			}
			if _, err := bu.b.GetSchedule(ctx, "padded"); !errors.Is(err, database.ErrScheduleNotFound) {
				t.Errorf("the name was trimmed: a schedule %q exists (%v)", "padded", err)
			}
		})

		t.Run("Unknown", func(t *testing.T) {
			for _, action := range []string{"pause", "resume"} {
				resp, body := bu.post(t, "schedules/"+action, form("schedule", "no-such"), nil)
				wantCode(t, resp, body, http.StatusSeeOther)
				q := location(t, resp).Query()
				if q.Get("flash") != "no such schedule" || q.Get("flash_kind") != "error" {
					t.Errorf("%s of an unknown schedule: flash %q (%s)", action, q.Get("flash"), q.Get("flash_kind"))
				}
			}
			resp, body := bu.post(t, "schedules/pause", form(), nil)
			wantCode(t, resp, body, http.StatusSeeOther)
			if got := location(t, resp).Query().Get("flash"); got != "No schedule given." {
				t.Errorf("pause without a name: flash %q", got)
			}
			resp, body = bu.post(t, "schedules/delete", form("schedule", "nightly"), nil)
			wantCode(t, resp, body, http.StatusNotFound)
			get(t, "nightly")
		})

		t.Run("UnreadableTimeZone", func(t *testing.T) {
			// A stored schedule whose zone this host cannot load (no tzdata,
			// or a hand edit): the flash says so instead of "database error".
			if err := bu.b.SetSchedule(ctx, database.Schedule{Name: "zoned", TaskName: echoTask.Name(), Cron: "0 6 * * *",
				TimeZone: "Europe/Paris", Paused: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := bu.b.DB().ExecContext(ctx, `UPDATE gotasks_schedule SET timezone = 'Mars/Olympus_Mons' WHERE name = 'zoned'`); err != nil {
				t.Fatal(err)
			}
			resp, body := bu.post(t, "schedules/resume", form("schedule", "zoned"), nil)
			wantCode(t, resp, body, http.StatusSeeOther)
			q := location(t, resp).Query()
			if got := q.Get("flash"); !strings.HasPrefix(got, "resume schedule failed: ") || !strings.Contains(got, "Mars/Olympus_Mons") ||
				q.Get("flash_kind") != "error" {
				t.Errorf("flash %q (%s)", got, q.Get("flash_kind"))
			}
			if !get(t, "zoned").Paused {
				t.Error("the schedule was resumed")
			}
		})

		t.Run("LastRunLinksToTheTask", func(t *testing.T) {
			if err := bu.b.SetSchedule(ctx, database.Schedule{Name: "ticking", TaskName: echoTask.Name(),
				Args: json.RawMessage(`"tick"`), Every: time.Second}); err != nil {
				t.Fatal(err)
			}
			startWorker(t, bu.b, database.WorkerConfig{PollInterval: 20 * time.Millisecond})
			var s *database.Schedule
			dbtest.WaitUntil(t, dbtestTimeout, "the schedule's first run", func() bool {
				s = get(t, "ticking")
				return s.LastTaskID != ""
			})
			_, body := bu.get(t, "schedules")
			r := row(t, body, "ticking")
			if want := `href="./tasks/` + url.PathEscape(s.LastTaskID) + `"`; !strings.Contains(r, want) {
				t.Errorf("ticking's row has no link %s:\n%s", want, r)
			}
			resp, body := bu.get(t, "tasks/"+s.LastTaskID)
			wantCode(t, resp, body, http.StatusOK)
		})
	})
}
