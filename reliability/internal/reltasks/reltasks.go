// Package reltasks defines the tasks of the reliability suite and the
// execution log they write, rel_exec, in the same database as the tasks.
//
// Every execution of Record inserts a row (key, token) when it starts and
// sets its end when it stops, so that the suite can see every execution,
// including the ones a kill -9 cut short, and detect duplicates and
// overlapping runs. Importing the package registers the tasks; the worker
// binary relworker and the tests both import it.
package reltasks

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// Name is the registered name of Record.
const Name = "reliability.record"

// DSNEnv names the variable with the DSN the tasks write rel_exec to (the
// worker's own database); WorkerEnv the worker id they record.
const (
	DSNEnv    = "RELWORKER_DSN"
	WorkerEnv = "RELWORKER_ID"
)

// RecordArgs are the arguments of Record.
type RecordArgs struct {
	// Key identifies the task in rel_exec (a task does not see its result id).
	Key string `json:"key"`
	// SleepMS is how long the task works; it returns early, with the
	// context's error, when its context is cancelled.
	SleepMS int `json:"sleep_ms"`
	// Pad makes the arguments as large as wanted; it is ignored.
	Pad string `json:"pad,omitempty"`
}

// RecordResult is what Record returns: which execution succeeded.
type RecordResult struct {
	Worker string `json:"worker"`
	Token  string `json:"token"`
}

// Record logs its execution in rel_exec (start, then end) and sleeps
// SleepMS in between.
var Record = tasks.Define(Name, record, tasks.WithMaxAttempts(25), tasks.WithBackoff(tasks.ConstantBackoff(100*time.Millisecond)))

// Outcomes recorded in rel_exec.outcome.
const (
	OutcomeOK        = "ok"
	OutcomeCancelled = "cancelled"
)

var (
	dbOnce sync.Once
	dbErr  error
	execDB *sql.DB
	worker string
)

func openDB() (*sql.DB, error) {
	dbOnce.Do(func() {
		dsn := os.Getenv(DSNEnv)
		if dsn == "" {
			dsn = os.Getenv(database.DSNEnv)
		}
		if dsn == "" {
			dbErr = fmt.Errorf("reltasks: %s is not set", DSNEnv)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var b *database.Backend
		for {
			// The worker opened the same database a moment ago; retry while it
			// restarts (the database restart scenario).
			b, dbErr = database.Open(ctx, dsn)
			if dbErr == nil || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if dbErr != nil {
			return
		}
		execDB = b.DB().DB
		// A small pool: the worker process has its own, and PostgreSQL's
		// max_connections is shared by every worker of the suite.
		execDB.SetMaxOpenConns(4)
		execDB.SetMaxIdleConns(4)
		worker = os.Getenv(WorkerEnv)
		if worker == "" {
			worker = fmt.Sprintf("pid:%d", os.Getpid())
		}
	})
	return execDB, dbErr
}

// retry runs f until it succeeds or a minute passed: the database may be
// restarting, and a lost record would look like a lost execution.
func retry(ctx context.Context, f func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	delay := 20 * time.Millisecond
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("reltasks: giving up: %w", err)
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
	}
}

func record(ctx context.Context, a RecordArgs) (RecordResult, error) {
	db, err := openDB()
	if err != nil {
		return RecordResult{}, err
	}
	var tb [12]byte
	_, _ = rand.Read(tb[:])
	token := hex.EncodeToString(tb[:])
	start := time.Now().UnixMicro()
	err = retry(ctx, func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, `INSERT INTO rel_exec (task_key, token, worker, started_us)
			VALUES ($1, $2, $3, $4) ON CONFLICT (task_key, token) DO NOTHING`, a.Key, token, worker, start)
		return err
	})
	if err != nil {
		return RecordResult{}, err
	}
	outcome := OutcomeOK
	var runErr error
	if a.SleepMS > 0 {
		t := time.NewTimer(time.Duration(a.SleepMS) * time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			outcome, runErr = OutcomeCancelled, ctx.Err()
		}
	}
	end := time.Now().UnixMicro()
	err = retry(ctx, func(ctx context.Context) error {
		_, err := db.ExecContext(ctx, `UPDATE rel_exec SET finished_us = $1, outcome = $2
			WHERE task_key = $3 AND token = $4`, end, outcome, a.Key, token)
		return err
	})
	if runErr != nil {
		return RecordResult{}, runErr
	}
	if err != nil {
		return RecordResult{}, err
	}
	return RecordResult{Worker: worker, Token: token}, nil
}

// Schema creates rel_exec (both dialects accept the statement).
const Schema = `CREATE TABLE IF NOT EXISTS rel_exec (
	task_key    TEXT   NOT NULL,
	token       TEXT   NOT NULL,
	worker      TEXT   NOT NULL,
	started_us  BIGINT NOT NULL,
	finished_us BIGINT,
	outcome     TEXT,
	PRIMARY KEY (task_key, token))`

// Exec is one execution read back from rel_exec.
type Exec struct {
	Key, Token, Worker string
	// Start and End are Unix microseconds; End is 0 for an execution that
	// never ended (its process was killed).
	Start, End int64
	Outcome    string
}

// Executions returns every row of rel_exec, by key then start.
func Executions(ctx context.Context, db *sql.DB) ([]Exec, error) {
	rows, err := db.QueryContext(ctx, `SELECT task_key, token, worker, started_us, COALESCE(finished_us, 0),
		COALESCE(outcome, '') FROM rel_exec ORDER BY task_key, started_us, token`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Exec
	for rows.Next() {
		var e Exec
		if err := rows.Scan(&e.Key, &e.Token, &e.Worker, &e.Start, &e.End, &e.Outcome); err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// Overlap is two executions of one key that ran at the same time.
type Overlap struct{ A, B Exec }

func (o Overlap) String() string {
	return fmt.Sprintf("key %s: %s on %s [%d, %d] overlaps %s on %s [%d, %d]", o.A.Key, o.A.Token, o.A.Worker,
		o.A.Start, o.A.End, o.B.Token, o.B.Worker, o.B.Start, o.B.End)
}

// Overlaps returns the pairs of executions of a key whose intervals
// intersect. An execution without an end lasts until endOf returns for it
// (the time its worker was killed), or forever when endOf returns 0.
func Overlaps(execs []Exec, endOf func(Exec) int64) []Overlap {
	byKey := map[string][]Exec{}
	var keys []string
	for _, e := range execs {
		if _, ok := byKey[e.Key]; !ok {
			keys = append(keys, e.Key)
		}
		byKey[e.Key] = append(byKey[e.Key], e)
	}
	var out []Overlap
	for _, k := range keys {
		es := byKey[k]
		for i := range es {
			for j := i + 1; j < len(es); j++ {
				a, b := es[i], es[j]
				ea, eb := end(a, endOf), end(b, endOf)
				if a.Start < eb && b.Start < ea {
					out = append(out, Overlap{a, b})
				}
			}
		}
	}
	return out
}

func end(e Exec, endOf func(Exec) int64) int64 {
	if e.End != 0 {
		return e.End
	}
	if endOf != nil {
		if t := endOf(e); t != 0 {
			return t
		}
	}
	return 1<<63 - 1
}

// IsLocked reports whether s carries SQLite's "database is locked" (or
// busy) error.
func IsLocked(s string) bool {
	s = strings.ToLower(s)
	return strings.Contains(s, "database is locked") || strings.Contains(s, "sqlite_busy") ||
		strings.Contains(s, "database table is locked")
}

// Panic is a task that panics: the worker must record a clear failure and
// go on.
var Panic = tasks.Define("reliability.panic", func(ctx context.Context, msg string) (int, error) {
	panic("reltasks: " + msg)
}, tasks.WithMaxAttempts(1))
