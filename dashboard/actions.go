package dashboard

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// The actions are POSTs (see post) that redirect back with a flash message
// in the query string (redirect-after-POST). Where they go back to is the
// form's "next" field, a URL relative to the dashboard's root.

// back redirects to next (relative to the root; checked by safeNext) with
// a flash message.
func (h *Handler) back(w http.ResponseWriter, r *http.Request, next, msg string, isErr bool) {
	u, _ := url.Parse(next)
	q := u.Query()
	q.Del("flash")
	q.Del("flash_kind")
	if msg != "" {
		q.Set("flash", msg)
		if isErr {
			q.Set("flash_kind", "error")
		}
	}
	u.RawQuery = q.Encode()
	seeOther(w, rootOf(r.URL.Path)+u.String(), http.StatusSeeOther)
}

// safeNext returns next when it is a path below the dashboard's root
// (relative, no scheme, host or ".."), and def otherwise.
func safeNext(next, def string) string {
	if next == "" || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "/") {
		return def
	}
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || u.Opaque != "" ||
		strings.Contains(u.Path, "..") || strings.Contains(u.Path, ":") {
		return def
	}
	return next
}

// duplicateMsg says why a retry was refused with database.ErrDuplicate.
const duplicateMsg = "a task with the same unique key is waiting or running"

// actionError is the flash message of a failed action: the known errors of
// the admin API say what is wrong; others are logged and shown as a
// database error, because their text could name the server or its user.
func (h *Handler) actionError(ctx context.Context, what string, err error) string {
	switch {
	case errors.Is(err, database.ErrNotRetryable):
		return "only FAILED or CANCELLED tasks can be retried"
	case errors.Is(err, database.ErrNotDeletable):
		return "only finished tasks can be deleted"
	case errors.Is(err, tasks.ErrNotCancellable):
		return "only READY tasks can be cancelled"
	case errors.Is(err, tasks.ErrResultNotFound):
		return "no such task"
	case errors.Is(err, database.ErrDuplicate):
		return what + " failed: " + duplicateMsg
	case errors.Is(err, database.ErrScheduleNotFound):
		return "no such schedule"
	case errors.Is(err, tasks.ErrInvalidTask):
		// Not the database's: a stored schedule that no longer reads
		// (such as a time zone this host's tzdata lacks).
		return what + " failed: " + err.Error()
	}
	h.log.ErrorContext(ctx, "dashboard: "+what, "backend", h.b.Name(), "error", err)
	return what + " failed: database error (details in the server log)"
}

// bulk is one bulk action: by ids and by filter.
type bulk struct {
	verb     string // past tense, for the flash message
	byIDs    func(*database.Backend, context.Context, []string) (database.BulkResult, error)
	matching func(*database.Backend, context.Context, database.TaskFilter) (database.BulkResult, error)
	skipped  string // why a selected task may have been left alone
}

var bulkActions = map[string]bulk{
	"retry":  {"Retried", (*database.Backend).RetryTasks, (*database.Backend).RetryMatching, "not FAILED or CANCELLED"},
	"cancel": {"Cancelled", (*database.Backend).CancelTasks, (*database.Backend).CancelMatching, "not READY"},
	"delete": {"Deleted", (*database.Backend).DeleteTasks, (*database.Backend).DeleteMatching, "not finished"},
}

// bulkAction is POST tasks/bulk: op is "retry", "cancel" or "delete", then
// ":selected" (the checked ids) or ":matching" (every task that matches the
// form's filter, a list query string).
func (h *Handler) bulkAction(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"), "tasks")
	name, scope, _ := strings.Cut(r.PostFormValue("op"), ":")
	a, ok := bulkActions[name]
	if !ok || (scope != "selected" && scope != "matching") {
		h.renderError(w, r, http.StatusBadRequest, "unknown action")
		return
	}
	ctx := r.Context()
	if scope == "selected" {
		ids := r.PostForm["id"]
		if len(ids) == 0 {
			h.back(w, r, next, "No task selected.", true)
			return
		}
		res, err := a.byIDs(h.b, ctx, ids)
		if errors.Is(err, database.ErrDuplicate) { // the others were done
			h.back(w, r, next, fmt.Sprintf("%s %s; some selected tasks were left alone: %s.", a.verb,
				plural(res.Affected, "task"), duplicateMsg), true)
			return
		}
		if err != nil {
			h.back(w, r, next, h.actionError(ctx, name+" tasks", err), true)
			return
		}
		msg := fmt.Sprintf("%s %s.", a.verb, plural(res.Affected, "task"))
		if left := int64(len(ids)) - res.Affected; left > 0 {
			msg += fmt.Sprintf(" %s left alone (%s).", plural(left, "selected task"), a.skipped)
		}
		h.back(w, r, next, msg, false)
		return
	}
	fv, err := url.ParseQuery(r.PostFormValue("filter"))
	if err != nil {
		h.renderError(w, r, http.StatusBadRequest, "bad filter")
		return
	}
	q, err := parseListQuery(fv, h.opts.PageSize)
	if err != nil {
		h.back(w, r, next, "Bad filter: "+err.Error(), true)
		return
	}
	res, err := a.matching(h.b, ctx, q.Params.TaskFilter)
	if errors.Is(err, database.ErrDuplicate) { // the others were done
		h.back(w, r, next, fmt.Sprintf("%s %s matching the filter; some were left alone: %s.", a.verb,
			plural(res.Affected, "task"), duplicateMsg), true)
		return
	}
	if err != nil {
		h.back(w, r, next, h.actionError(ctx, name+" matching tasks", err), true)
		return
	}
	h.back(w, r, next, fmt.Sprintf("%s %s matching the filter.", a.verb, plural(res.Affected, "task")), false)
}

// taskAction is POST tasks/{id}/{action}: retry, cancel or delete one task.
func (h *Handler) taskAction(w http.ResponseWriter, r *http.Request) {
	id, action := r.PathValue("id"), r.PathValue("action")
	ctx := r.Context()
	self := "tasks/" + url.PathEscape(id)
	var err error
	switch action {
	case "retry":
		if err = h.b.RetryTask(ctx, id); err == nil {
			h.back(w, r, self, "Task retried: it is READY again.", false)
			return
		}
	case "cancel":
		if err = h.b.Cancel(ctx, id); err == nil {
			h.back(w, r, self, "Task cancelled.", false)
			return
		}
	case "delete":
		if err = h.b.DeleteTask(ctx, id); err == nil {
			h.back(w, r, safeNext(r.PostFormValue("next"), "tasks"), "Task "+id+" deleted.", false)
			return
		}
	default:
		h.renderError(w, r, http.StatusNotFound, "unknown action")
		return
	}
	h.back(w, r, self, h.actionError(ctx, action+" task", err), true)
}

// queueAction is POST queues/pause and queues/resume, with the queue in the
// form.
func (h *Handler) queueAction(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"), "queues")
	queue := strings.TrimSpace(r.PostFormValue("queue"))
	if queue == "" {
		h.back(w, r, next, "No queue given.", true)
		return
	}
	ctx := r.Context()
	switch r.PathValue("action") {
	case "pause":
		if err := h.b.PauseQueue(ctx, queue); err != nil {
			h.back(w, r, next, h.actionError(ctx, "pause queue", err), true)
			return
		}
		h.back(w, r, next, "Queue "+queue+" paused: workers no longer claim its tasks.", false)
	case "resume":
		if err := h.b.ResumeQueue(ctx, queue); err != nil {
			h.back(w, r, next, h.actionError(ctx, "resume queue", err), true)
			return
		}
		h.back(w, r, next, "Queue "+queue+" resumed.", false)
	default:
		h.renderError(w, r, http.StatusNotFound, "unknown action")
	}
}

// scheduleAction is POST schedules/pause and schedules/resume, with the
// schedule's name in the form.
func (h *Handler) scheduleAction(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.PostFormValue("next"), "schedules")
	name := r.PostFormValue("schedule")
	if name == "" {
		h.back(w, r, next, "No schedule given.", true)
		return
	}
	ctx := r.Context()
	switch action := r.PathValue("action"); action {
	case "pause":
		if err := h.b.PauseSchedule(ctx, name); err != nil {
			h.back(w, r, next, h.actionError(ctx, "pause schedule", err), true)
			return
		}
		h.back(w, r, next, "Schedule "+name+" paused: it enqueues nothing until resumed.", false)
	case "resume":
		if err := h.b.ResumeSchedule(ctx, name); err != nil {
			h.back(w, r, next, h.actionError(ctx, "resume schedule", err), true)
			return
		}
		msg := "Schedule " + name + " resumed."
		if s, err := h.b.GetSchedule(ctx, name); err == nil {
			msg = "Schedule " + name + " resumed: next run at " + fmtTime(s.NextRunAt) + "."
		}
		h.back(w, r, next, msg, false)
	default:
		h.renderError(w, r, http.StatusNotFound, "unknown action")
	}
}

func plural(n int64, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
