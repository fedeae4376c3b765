package database

import (
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/gotasks/gotasks/tasks"
)

// Reading rows back: what the stores' statements return (resultColumns) is
// scanned here, the same way on both dialects.

// row is a stored result with the columns the API does not expose.
type row struct {
	tasks.RawResult
	workerID sql.NullString
	// bad is set when a column the worker needs cannot be read (a
	// timestamp written by hand): the worker fails the task alone.
	bad error
}

// resultColumnNames are the names of resultColumns, by index.
var resultColumnNames = func() []string {
	cols := strings.Split(resultColumns, ",")
	for i, c := range cols {
		cols[i] = strings.TrimSpace(c)
	}
	return cols
}()

type scanner interface{ Scan(dest ...any) error }

// rowDest holds the scan destinations of one row of resultColumns.
type rowDest struct {
	r                        row
	runAfter, enqueuedAt     *time.Time
	timeoutMS, repeatMS      int64
	workerIDs, errs, retJSON json.RawMessage
	metadata                 json.RawMessage
	uniqueKey                sql.NullString
	status                   string
}

// dests returns the destinations, in the order of resultColumns.
func (d *rowDest) dests() []any {
	r := &d.r
	return []any{&r.ID, &r.TaskName, &d.status, dbJSON{&r.Args}, &r.Priority, &r.Queue, &r.Backend,
		dbTime{&d.runAfter}, dbTime{&d.enqueuedAt}, dbTime{&r.StartedAt}, dbTime{&r.FinishedAt},
		dbTime{&r.LastAttemptedAt}, &r.Attempts, &r.MaxAttempts, &d.timeoutMS, dbJSON{&d.workerIDs},
		dbJSON{&d.errs}, dbJSON{&d.retJSON}, &r.VerboseName, &r.Creator, &d.repeatMS, dbTime{&r.RepeatUntil},
		&r.workerID, dbJSON{&d.metadata}, &d.uniqueKey}
}

// metadataColumn is the index of the metadata column in resultColumns.
var metadataColumn = slices.Index(resultColumnNames, "metadata")

// scanResult reads one row strictly: a column that cannot be read or does
// not decode is an error.
func scanResult(s scanner) (*row, error) {
	r, corrupt, err := scanRow(s)
	if err != nil {
		return nil, err
	}
	if r.bad != nil {
		return nil, r.bad
	}
	if corrupt != nil {
		return nil, corrupt
	}
	return r, nil
}

// scanRow reads one row. A worker_ids or errors column that does not decode
// is reported as corrupt, with the row read without that column (nil),
// instead of failing: the worker can still run the task of such a row.
//
// When s is a *sql.Rows, a column that cannot be read at all (a time that is
// not a time, NULL in a number) does not fail either: the row comes back
// with that column zero and row.bad naming the task, the column and the
// stored value. Other scanners (a *sql.Row reads once) fail. Metadata that
// does not decode sets row.bad too, whatever the scanner: a task cannot
// run without the metadata it was enqueued with.
func scanRow(s scanner) (_ *row, corrupt, err error) {
	d := new(rowDest)
	dests := d.dests()
	if err := s.Scan(dests...); err != nil {
		rs, ok := s.(*sql.Rows)
		if !ok {
			return nil, nil, err
		}
		bad, rerr := d.rescan(rs, dests)
		if rerr != nil || bad == nil {
			return nil, nil, err // the row itself cannot be scanned
		}
		d.r.bad = bad
	}
	return &d.r, d.finish(), nil
}

// rescan reads a row whose scan failed column by column, to tell which
// columns cannot be read; the others are read as usual. It returns the
// error naming them (nil if all read this time), or the error of the row
// when not even its raw values can be read.
func (d *rowDest) rescan(rs *sql.Rows, dests []any) (bad, err error) {
	*d = rowDest{} // undo what the failed scan assigned
	raw := make([]any, len(dests))
	probe := make([]any, len(dests))
	for i := range probe {
		probe[i] = &raw[i]
	}
	if err := rs.Scan(probe...); err != nil {
		return nil, err
	}
	var first error
	n := 0
	for i := range dests {
		probe[i] = dests[i]
		if err := rs.Scan(probe...); err != nil {
			if first == nil {
				first = unreadable(d.r.ID, i, raw[i], errors.Unwrap(err))
			}
			n++
		}
		probe[i] = &raw[i]
	}
	if n > 1 {
		first = fmt.Errorf("%w (and %d more columns)", first, n-1)
	}
	return first, nil
}

// unreadable is the error of a stored column that cannot be read.
func unreadable(id string, col int, v any, cause error) error {
	name := fmt.Sprintf("column %d", col)
	if col < len(resultColumnNames) {
		name = resultColumnNames[col]
	}
	var ve *valueError
	if errors.As(cause, &ve) {
		cause = errors.New(ve.reason)
	}
	if cause == nil {
		cause = errors.New("unreadable")
	}
	return fmt.Errorf("stored %s %s of task %s cannot be read: %w", name, describeValue(v), id, cause)
}

// describeValue shows a stored value in an error message.
func describeValue(v any) string {
	const maxLen = 64
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return describeValue(string(x))
	case string:
		if len(x) > maxLen {
			return fmt.Sprintf("%q…", x[:maxLen])
		}
		return fmt.Sprintf("%q", x)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	default:
		return fmt.Sprintf("%v", x)
	}
}

// finish completes the row from the destinations and returns the error of
// a worker_ids or errors column that does not decode. Metadata that does
// not decode sets row.bad (unless a column already did) and is left nil.
func (d *rowDest) finish() (corrupt error) {
	r := &d.r
	r.Status = tasks.Status(d.status)
	r.UniqueKey = d.uniqueKey.String
	if d.runAfter != nil {
		r.RunAfter = *d.runAfter
	}
	if d.enqueuedAt != nil {
		r.EnqueuedAt = *d.enqueuedAt
	}
	r.Timeout = time.Duration(d.timeoutMS) * time.Millisecond
	r.Repeat = time.Duration(d.repeatMS) * time.Millisecond
	if len(d.workerIDs) > 0 {
		if err := decodeStrings(d.workerIDs, &r.WorkerIDs); err != nil {
			r.WorkerIDs = nil
			corrupt = fmt.Errorf("gotasks: result %s: corrupt worker_ids: %w", r.ID, err)
		}
	}
	if len(d.errs) > 0 && string(d.errs) != "[]" { // most rows have no error: skip the decoder
		if err := json.Unmarshal(d.errs, &r.Errors); err != nil {
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
	if len(d.retJSON) > 0 && string(d.retJSON) != "null" || r.Status == tasks.StatusSuccessful {
		r.ReturnValue = d.retJSON
	}
	if len(d.metadata) > 0 { // NULL on most rows: no decoder
		if err := decodeMetadata(d.metadata, &r.Metadata); err != nil {
			r.Metadata = nil
			if r.bad == nil {
				r.bad = unreadable(r.ID, metadataColumn, []byte(d.metadata), err)
			}
		}
	}
	return corrupt
}

// decodeMetadata decodes a stored metadata column, a JSON object of strings,
// into *out (nil when the object is empty, or the JSON null).
func decodeMetadata(b []byte, out *map[string]string) error {
	var md map[string]string
	if err := json.Unmarshal(b, &md); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return fmt.Errorf("not a JSON object of strings: %w", err)
		}
		return err
	}
	if len(md) == 0 {
		md = nil
	}
	*out = md
	return nil
}

// scanWorkerRows reads the rows a claim or a rescue returns: a row with a
// column that cannot be read comes back with bad set, and a worker_ids or
// errors column that does not decode is logged and left out (the task runs
// without that history); neither fails the statement's other rows, which
// the statement changed already. The rows are sorted in claim order.
// what ("claimed", "rescued") says which in the log.
func scanWorkerRows(rows *sql.Rows, log *slog.Logger, backend, what string) ([]*row, error) {
	defer rows.Close()
	var out []*row
	for rows.Next() {
		r, corrupt, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		if corrupt != nil {
			log.Warn("gotasks: "+what+" task has a stored column that does not decode; going on without it",
				"backend", backend, "id", r.ID, "err", corrupt)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	sortClaimOrder(out)
	return out, nil
}

// scanResults reads the rows of a listing strictly (see scanResult).
func scanResults(rows *sql.Rows) ([]*row, error) {
	defer rows.Close()
	var out []*row
	for rows.Next() {
		r, corrupt, err := scanRow(rows)
		if err != nil {
			return nil, err
		}
		if r.bad != nil {
			return nil, r.bad
		}
		if corrupt != nil {
			return nil, corrupt
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// valueError reports a stored value that a column's scanner cannot read.
type valueError struct {
	msg    string // the whole message
	reason string // why, without the value (see unreadable)
}

func (e *valueError) Error() string { return e.msg }

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
		return &valueError{fmt.Sprintf("gotasks: cannot scan %T as a time", v), fmt.Sprintf("a %T is not a time", v)}
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
	return &valueError{fmt.Sprintf("gotasks: cannot parse time %q", x),
		"not a time in a layout gotasks reads (" + sqliteTime + " UTC, or RFC 3339)"}
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
		return &valueError{fmt.Sprintf("gotasks: cannot scan %T as JSON", v), fmt.Sprintf("a %T is not JSON text", v)}
	}
	return nil
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
