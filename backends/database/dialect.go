package database

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Dialect names the SQL dialect of a backend's database.
type Dialect string

// The supported dialects.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// sqliteTime is the fixed-width text form of times on SQLite: it sorts and
// compares as text, and SQLite's date functions read it.
const sqliteTime = "2006-01-02 15:04:05.000000"

// now returns the current time in UTC at the precision both databases store
// (microseconds), so that what a backend returns equals what it stored.
func now() time.Time { return time.Now().UTC().Truncate(time.Microsecond) }

// ts encodes t as a query argument.
func (d Dialect) ts(t time.Time) any {
	if d == SQLite {
		return t.UTC().Format(sqliteTime)
	}
	return t.UTC()
}

// tsPtr encodes an optional time (nil → NULL).
func (d Dialect) tsPtr(t *time.Time) any {
	if t == nil || t.IsZero() {
		return nil
	}
	return d.ts(*t)
}

// dbTime scans a time stored by either dialect.
type dbTime struct{ t **time.Time }

func (s dbTime) Scan(v any) error {
	if v == nil {
		*s.t = nil
		return nil
	}
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case string:
		return s.parse(x)
	case []byte:
		return s.parse(string(x))
	default:
		return fmt.Errorf("gotasks: cannot scan %T as a time", v)
	}
	t = t.UTC()
	*s.t = &t
	return nil
}

func (s dbTime) parse(x string) error {
	for _, layout := range []string{sqliteTime, time.RFC3339Nano, "2006-01-02 15:04:05.999999999-07:00", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, x); err == nil {
			t = t.UTC()
			*s.t = &t
			return nil
		}
	}
	return fmt.Errorf("gotasks: cannot parse time %q", x)
}

// dbJSON scans a JSON column (text, bytes or NULL) into a RawMessage.
type dbJSON struct{ m *json.RawMessage }

func (s dbJSON) Scan(v any) error {
	switch x := v.(type) {
	case nil:
		*s.m = nil
	case string:
		*s.m = json.RawMessage(x)
	case []byte:
		*s.m = append(json.RawMessage(nil), x...)
	default:
		return fmt.Errorf("gotasks: cannot scan %T as JSON", v)
	}
	return nil
}

// querier is what *sql.DB, *sql.Tx and *sql.Conn have in common. Queries go
// to database/sql directly, with native placeholders ($1 works on both
// PostgreSQL and SQLite), so that arguments are sent as parameters and
// statements are prepared and cached by the driver.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// resultColumns is the column list every query that returns results
// selects, in the order scanResult reads.
const resultColumns = `id, task_name, status, args, priority, queue, backend, run_after, enqueued_at,
	started_at, finished_at, last_attempted_at, attempts, max_attempts, timeout_ms, worker_ids, errors,
	return_value, verbose_name, creator, repeat_ms, repeat_until, worker_id`

// row is a stored result with the columns the API does not expose.
type row struct {
	tasks.RawResult
	workerID sql.NullString
}

type scanner interface{ Scan(dest ...any) error }

func scanResult(s scanner) (*row, error) {
	r, corrupt, err := scanRow(s)
	if err != nil {
		return nil, err
	}
	if corrupt != nil {
		return nil, corrupt
	}
	return r, nil
}

// scanRow is scanResult that reports a worker_ids or errors column that
// does not decode as corrupt, with the row read without that column (nil),
// instead of failing: the worker can still run the task of such a row.
func scanRow(s scanner) (_ *row, corrupt, err error) {
	var (
		r                        row
		runAfter, enqueuedAt     *time.Time
		timeoutMS, repeatMS      int64
		workerIDs, errs, retJSON json.RawMessage
		status                   string
	)
	err = s.Scan(&r.ID, &r.TaskName, &status, dbJSON{&r.Args}, &r.Priority, &r.Queue, &r.Backend,
		dbTime{&runAfter}, dbTime{&enqueuedAt}, dbTime{&r.StartedAt}, dbTime{&r.FinishedAt},
		dbTime{&r.LastAttemptedAt}, &r.Attempts, &r.MaxAttempts, &timeoutMS, dbJSON{&workerIDs},
		dbJSON{&errs}, dbJSON{&retJSON}, &r.VerboseName, &r.Creator, &repeatMS, dbTime{&r.RepeatUntil},
		&r.workerID)
	if err != nil {
		return nil, nil, err
	}
	r.Status = tasks.Status(status)
	if runAfter != nil {
		r.RunAfter = *runAfter
	}
	if enqueuedAt != nil {
		r.EnqueuedAt = *enqueuedAt
	}
	r.Timeout = time.Duration(timeoutMS) * time.Millisecond
	r.Repeat = time.Duration(repeatMS) * time.Millisecond
	if len(workerIDs) > 0 {
		if err := decodeStrings(workerIDs, &r.WorkerIDs); err != nil {
			r.WorkerIDs = nil
			corrupt = fmt.Errorf("gotasks: result %s: corrupt worker_ids: %w", r.ID, err)
		}
	}
	if len(errs) > 0 && string(errs) != "[]" { // most rows have no error: skip the decoder
		if err := json.Unmarshal(errs, &r.Errors); err != nil {
			r.Errors = nil
			if corrupt == nil {
				corrupt = fmt.Errorf("gotasks: result %s: corrupt errors: %w", r.ID, err)
			}
		}
	}
	if len(r.WorkerIDs) == 0 {
		r.WorkerIDs = nil
	}
	if len(r.Errors) == 0 {
		r.Errors = nil
	}
	if len(retJSON) > 0 && string(retJSON) != "null" || r.Status == tasks.StatusSuccessful {
		r.ReturnValue = retJSON
	}
	return &r, corrupt, nil
}

// decodeStrings decodes a JSON array of strings into *out, as
// json.Unmarshal does. Every claimed row has one (worker_ids), so the
// common case, printable ASCII strings without escapes (worker ids are
// host:pid:random), is split by hand; anything else goes to encoding/json.
func decodeStrings(b []byte, out *[]string) error {
	if ss, ok := splitSimpleStrings(b); ok {
		*out = ss
		return nil
	}
	return json.Unmarshal(b, out)
}

// splitSimpleStrings parses b as ["…","…",…] with optional JSON whitespace
// between tokens, each string printable ASCII without a backslash. ok is
// false for anything else.
func splitSimpleStrings(b []byte) (ss []string, ok bool) {
	i := 0
	skip := func() {
		for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
			i++
		}
	}
	skip()
	if i == len(b) || b[i] != '[' {
		return nil, false
	}
	i++
	skip()
	if i < len(b) && b[i] == ']' {
		i++
		skip()
		return []string{}, i == len(b)
	}
	for {
		if i == len(b) || b[i] != '"' {
			return nil, false
		}
		start := i + 1
		for i = start; i < len(b) && b[i] != '"'; i++ {
			if c := b[i]; c < 0x20 || c >= 0x7f || c == '\\' {
				return nil, false
			}
		}
		if i == len(b) {
			return nil, false
		}
		ss = append(ss, string(b[start:i]))
		i++
		skip()
		if i == len(b) {
			return nil, false
		}
		switch b[i] {
		case ',':
			i++
			skip()
		case ']':
			i++
			skip()
			return ss, i == len(b)
		default:
			return nil, false
		}
	}
}

// placeholders returns "($k+1, …, $k+n)" for a VALUES row.
func placeholders(b *strings.Builder, start, n int) {
	b.WriteByte('(')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(b, "$%d", start+i)
	}
	b.WriteByte(')')
}
