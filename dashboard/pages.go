package dashboard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// overviewData is the overview page's content.
type overviewData struct {
	Stats   *database.Stats
	JSON    apiStats // the chart's first data, before the first refresh
	Refresh int64    // milliseconds between refreshes
	// RefreshEvery is the same, for people.
	RefreshEvery time.Duration
	Window       time.Duration
}

// apiStats is the JSON of GET api/stats (and the overview's first data).
type apiStats struct {
	At            time.Time   `json:"at"`
	WindowMinutes int         `json:"window_minutes"`
	Queues        []apiQueue  `json:"queues"`
	Throughput    []apiMinute `json:"throughput"`
}

type apiQueue struct {
	Queue      string           `json:"queue"`
	Counts     map[string]int64 `json:"counts"`
	Total      int64            `json:"total"`
	OldestDue  *time.Time       `json:"oldest_due,omitempty"`
	AgeSeconds float64          `json:"age_seconds"`
	Paused     bool             `json:"paused"`
}

type apiMinute struct {
	Minute     time.Time `json:"minute"`
	Successful int64     `json:"successful"`
	Failed     int64     `json:"failed"`
	Cancelled  int64     `json:"cancelled"`
}

func toAPI(s *database.Stats, window time.Duration) apiStats {
	out := apiStats{
		At:            s.At,
		WindowMinutes: int(window / time.Minute),
		Queues:        make([]apiQueue, 0, len(s.Queues)),
		Throughput:    make([]apiMinute, 0, len(s.Throughput)),
	}
	for _, q := range s.Queues {
		aq := apiQueue{Queue: q.Queue, Counts: map[string]int64{}, Total: q.Total(), AgeSeconds: q.Age.Seconds(), Paused: q.Paused}
		for st, n := range q.Counts {
			aq.Counts[string(st)] = n
		}
		if !q.OldestDue.IsZero() {
			t := q.OldestDue
			aq.OldestDue = &t
		}
		out.Queues = append(out.Queues, aq)
	}
	for _, m := range s.Throughput {
		out.Throughput = append(out.Throughput, apiMinute(m))
	}
	return out
}

func (h *Handler) overview(w http.ResponseWriter, r *http.Request) {
	s, err := h.b.Stats(r.Context(), h.opts.ChartWindow)
	if err != nil {
		h.dbError(w, r, "reading the stats", err)
		return
	}
	h.render(w, r, http.StatusOK, "overview", h.newPage(r, "overview", "Overview", overviewData{
		Stats:        s,
		JSON:         toAPI(s, h.opts.ChartWindow),
		Refresh:      h.opts.RefreshInterval.Milliseconds(),
		RefreshEvery: h.opts.RefreshInterval,
		Window:       h.opts.ChartWindow,
	}))
}

func (h *Handler) apiStats(w http.ResponseWriter, r *http.Request) {
	s, err := h.b.Stats(r.Context(), h.opts.ChartWindow)
	if err != nil {
		h.log.ErrorContext(r.Context(), "dashboard: reading the stats", "backend", h.b.Name(), "error", err)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"error":"database error (details in the server log)"}` + "\n"))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(toAPI(s, h.opts.ChartWindow))
}

// listData is the task list's content.
type listData struct {
	Q        listQuery
	Err      string // a bad query: no list
	Page     *database.TaskPage
	Filtered bool
	// FilterQuery is the filter as a query string (no cursor), for the
	// "all matching" actions; Self is this page's URL relative to the
	// root, for the redirect after an action.
	FilterQuery string
	Self        string
	NextURL     string // "" on the last page
	FirstURL    string // "" on the first page
	Statuses    []tasks.Status
}

func (h *Handler) taskList(w http.ResponseWriter, r *http.Request) {
	q, err := parseListQuery(r.URL.Query(), h.opts.PageSize)
	d := listData{Q: q, Filtered: q.filtered(), Statuses: allStatuses}
	fq := q.values(h.opts.PageSize, false)
	d.FilterQuery = fq.Encode()
	d.Self = withQuery("tasks", q.values(h.opts.PageSize, true))
	if q.Cursor != "" {
		d.FirstURL = withQuery("tasks", fq)
	}
	if err != nil {
		d.Err = err.Error()
		h.render(w, r, http.StatusBadRequest, "tasks", h.newPage(r, "tasks", "Tasks", d))
		return
	}
	p, err := h.b.ListTasks(r.Context(), q.Params)
	if errors.Is(err, database.ErrBadCursor) {
		d.Err = "bad page cursor: start from the first page"
		h.render(w, r, http.StatusBadRequest, "tasks", h.newPage(r, "tasks", "Tasks", d))
		return
	}
	if err != nil {
		h.dbError(w, r, "listing the tasks", err)
		return
	}
	d.Page = p
	if p.NextCursor != "" {
		nv := q.values(h.opts.PageSize, false)
		nv.Set(qCursor, p.NextCursor)
		d.NextURL = withQuery("tasks", nv)
	}
	h.render(w, r, http.StatusOK, "tasks", h.newPage(r, "tasks", "Tasks", d))
}

func withQuery(p string, v url.Values) string {
	if len(v) == 0 {
		return p
	}
	return p + "?" + v.Encode()
}

// taskData is the task page's content.
type taskData struct {
	T *database.TaskInfo
}

func (h *Handler) taskDetail(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	t, err := h.b.GetTask(r.Context(), id)
	if errors.Is(err, tasks.ErrResultNotFound) {
		h.renderError(w, r, http.StatusNotFound, "no task with id "+id)
		return
	}
	if err != nil {
		h.dbError(w, r, "reading the task", err)
		return
	}
	h.render(w, r, http.StatusOK, "task", h.newPage(r, "tasks", "Task "+t.ID, taskData{T: t}))
}

func (h *Handler) queueList(w http.ResponseWriter, r *http.Request) {
	qs, err := h.b.ListQueues(r.Context())
	if err != nil {
		h.dbError(w, r, "listing the queues", err)
		return
	}
	h.render(w, r, http.StatusOK, "queues", h.newPage(r, "queues", "Queues", qs))
}

func (h *Handler) scheduleList(w http.ResponseWriter, r *http.Request) {
	ss, err := h.b.ListSchedules(r.Context())
	if err != nil {
		h.dbError(w, r, "listing the schedules", err)
		return
	}
	h.render(w, r, http.StatusOK, "schedules", h.newPage(r, "schedules", "Schedules", ss))
}

func (h *Handler) workerList(w http.ResponseWriter, r *http.Request) {
	ws, err := h.b.Workers(r.Context())
	if err != nil {
		h.dbError(w, r, "listing the workers", err)
		return
	}
	h.render(w, r, http.StatusOK, "workers", h.newPage(r, "workers", "Workers", ws))
}
