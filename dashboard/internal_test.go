package dashboard

import (
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

func TestRootOf(t *testing.T) {
	t.Parallel()
	for path, want := range map[string]string{
		"/": "./", "/tasks": "./", "/queues": "./", "/tasks/": "../", "/tasks/0193": "../",
		"/tasks/0193/retry": "../../", "/api/stats": "../",
	} {
		if got := rootOf(path); got != want {
			t.Errorf("rootOf(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	for next, want := range map[string]string{
		"tasks?status=FAILED":  "tasks?status=FAILED",
		"tasks/0193-abc":       "tasks/0193-abc",
		"queues":               "queues",
		"":                     "def",
		"/etc/passwd":          "def",
		"//evil.example/":      "def",
		"https://evil.example": "def",
		"javascript:alert(1)":  "def",
		"../../elsewhere":      "def",
		"tasks\\..\\x":         "def",
		"tasks\r\nSet-Cookie":  "def",
	} {
		if got := safeNext(next, "def"); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestCSRFToken(t *testing.T) {
	t.Parallel()
	h := &Handler{key: []byte("k1")}
	other := &Handler{key: []byte("k2")}
	now := time.Now()
	const browser = "0123456789abcdef0123456789abcdef"
	tok := h.csrfToken(browser, now)
	for _, c := range []struct {
		name    string
		h       *Handler
		tok     string
		binding string
		at      time.Time
		want    bool
	}{
		{"Fresh", h, tok, browser, now, true},
		{"HoursLater", h, tok, browser, now.Add(20 * time.Hour), true},
		{"Expired", h, tok, browser, now.Add(csrfMaxAge + time.Second), false},
		{"FromTheFuture", h, h.csrfToken(browser, now.Add(time.Hour)), browser, now, false},
		{"OtherKey", other, tok, browser, now, false},
		{"OtherBrowser", h, tok, "fedcba9876543210fedcba9876543210", now, false},
		{"NoCookie", h, tok, "", now, false},
		{"Empty", h, "", browser, now, false},
		{"Garbage", h, "not-a-token", browser, now, false},
		{"Truncated", h, tok[:len(tok)-2], browser, now, false},
	} {
		if got := c.h.csrfValid(c.tok, c.binding, c.at); got != c.want {
			t.Errorf("%s: csrfValid = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestParseListQuery(t *testing.T) {
	t.Parallel()
	v, _ := url.ParseQuery("status=failed,CANCELLED&status=FAILED&queue=a,+b&queue=c&task=x.y&creator=user:1&verbose=V" +
		"&id=0193&enqueued_after=2026-12-01T10:00&enqueued_before=2026-12-02T10:00:30Z&finished_after=2026-12-01" +
		"&finished_before=2026-12-03T00:00:00.5%2B01:00&order=oldest&limit=20&cursor=abc")
	q, err := parseListQuery(v, 50)
	if err != nil {
		t.Fatal(err)
	}
	utc := func(s string) time.Time { tt, _ := time.Parse(time.RFC3339Nano, s); return tt.UTC() }
	want := database.ListParams{
		TaskFilter: database.TaskFilter{
			Statuses:       []tasks.Status{tasks.StatusFailed, tasks.StatusCancelled},
			Queues:         []string{"a", "b", "c"},
			TaskNames:      []string{"x.y"},
			Creator:        "user:1",
			VerboseName:    "V",
			IDPrefix:       "0193",
			EnqueuedAfter:  utc("2026-12-01T10:00:00Z"),
			EnqueuedBefore: utc("2026-12-02T10:00:30Z"),
			FinishedAfter:  utc("2026-12-01T00:00:00Z"),
			FinishedBefore: utc("2026-12-02T23:00:00.5Z"),
		},
		Order:  database.OldestFirst,
		Limit:  20,
		Cursor: "abc",
	}
	if diff := cmp.Diff(want, q.Params, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}
	// The encoded query reads back the same.
	q2, err := parseListQuery(q.values(50, true), 50)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(q.Params, q2.Params, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("round trip (-first +second):\n%s", diff)
	}
	if _, err := parseListQuery(url.Values{"status": {"NOPE"}, "limit": {"-1"}, "finished_after": {"soon"}}, 50); err == nil {
		t.Error("bad query: no error")
	}
}

func TestFmtDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0: "0s", 850 * time.Millisecond: "850ms", 12 * time.Second: "12s", 4*time.Minute + 10*time.Second: "4m10s",
		3*time.Hour + 5*time.Minute: "3h05m", 52 * time.Hour: "2d04h",
	} {
		if got := fmtDuration(d); got != want {
			t.Errorf("fmtDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestPrettyJSON(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		``:                                ``,
		`not json`:                        `not json`,
		`{"b":1,"a":"x"}`:                 "{\n  \"b\": 1,\n  \"a\": \"x\"\n}",
		`"\u003cscript\u003e \u0026amp;"`: `"<script> &amp;"`,
		`"\\u003c kept"`:                  `"\\u003c kept"`,
		`"\u00e9\n"`:                      `"\u00e9\n"`,
	} {
		if got := prettyJSON([]byte(raw)); got != want {
			t.Errorf("prettyJSON(%s) = %q, want %q", raw, got, want)
		}
	}
}
