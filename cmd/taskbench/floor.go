package main

import (
	"bytes"
	"context"
	_ "embed" // floor.sql
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
	"github.com/gotasks/gotasks/tasks"
)

// floorScript is the pgbench script of the floor mode: one claim batch a
// transaction (see the file).
//
//go:embed floor.sql
var floorScript string

// floorHotScript and floorLeaseScript are floor.sql for the schemas of
// --floor-schema hot and lease (see floorVariantDDL).
var (
	//go:embed floor_hot.sql
	floorHotScript string
	//go:embed floor_lease.sql
	floorLeaseScript string
)

// floorSchemas are the values of --floor-schema: "" the table as the
// migrations leave it, filled and not rewritten (the floor of the code as
// it is); "current" the same table rewritten as the others are (VACUUM
// FULL, ANALYZE, CHECKPOINT), to compare with them; "hot" and "lease" the
// table changed for HOT completions (floorVariantDDL).
var floorSchemas = []string{"", "current", "hot", "lease"}

// floorVariantDDL changes the filled table of --floor-schema hot and lease
// (schema is the run's fresh schema, a generated name). It measures what a
// redesign for heap-only-tuple (HOT) completions would save, before anyone
// writes one: every index but the primary key is dropped (the completion
// changes status, finished_at and worker_id, which the RUNNING-rows,
// finished-rows, admin and unique indexes key on or test in their
// predicates, and any such change rules out HOT), the claim index is made
// again on a claimable column that only claims and retries change, and the
// table gets fillfactor 25 so that a completion finds room on its page
// even when nothing could be pruned from it: the claim's version of each
// row and the completion's each take about as much room as the original,
// and an old snapshot held elsewhere (another test, a long transaction)
// keeps the dead versions there.
// lease also creates gotasks_lease (floor_lease.sql). What this drops is
// what such a redesign would have to do in other ways: rescue (leases),
// prune and the admin lists and counts (other indexes or tables), unique
// keys (a table of their own).
func floorVariantDDL(schema, variant string) []string {
	t := quoteIdent(schema) + ".gotasks_task"
	ddl := []string{}
	if variant == "hot" || variant == "lease" {
		ddl = append(ddl,
			`DO $$ DECLARE i regclass; BEGIN
				FOR i IN SELECT indexrelid::regclass FROM pg_index WHERE indrelid = '`+t+`'::regclass AND NOT indisprimary LOOP
					EXECUTE 'DROP INDEX ' || i;
				END LOOP; END $$`,
			`ALTER TABLE `+t+` ADD COLUMN claimable boolean NOT NULL DEFAULT true`,
			`CREATE INDEX ON `+t+` (backend, priority DESC, run_after, enqueued_at) WHERE claimable`,
			`ALTER TABLE `+t+` SET (fillfactor = 25)`)
	}
	if variant == "lease" {
		ddl = append(ddl, `CREATE TABLE `+quoteIdent(schema)+`.gotasks_lease (
			task_id varchar(64) COLLATE "C" PRIMARY KEY, worker_id text NOT NULL)`)
	}
	return append(ddl, `VACUUM FULL `+t, `ANALYZE `+t, `CHECKPOINT`)
}

// quoteIdent quotes a PostgreSQL identifier.
func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// floorScriptFor returns the pgbench script of a --floor-schema.
func floorScriptFor(variant string) string {
	switch variant {
	case "hot":
		return floorHotScript
	case "lease":
		return floorLeaseScript
	}
	return floorScript
}

// errFloorNeedsPostgres is returned by the floor mode on SQLite.
var errFloorNeedsPostgres = errors.New("floor runs pgbench against a PostgreSQL server: it needs --database postgres://…")

// floor: the database's own floor for a task. The table is filled as for
// burndown (--tasks no-op tasks through EnqueueMany, no VACUUM), changed and
// rewritten when --floor-schema says so (floorVariantDDL), then pgbench
// claims and completes them in batches (floor.sql, or the schema's own
// script) with one connection, and the server's CPU and WAL are measured
// around it as for burndown's cost per task.
func (bn *bench) floor(ctx context.Context, f *fresh) error {
	if bn.t.dialect != database.Postgres {
		return errFloorNeedsPostgres
	}
	pgbench, err := exec.LookPath("pgbench")
	if err != nil {
		return fmt.Errorf("floor needs pgbench (PostgreSQL's client tools): %w", err)
	}
	connArgs, connEnv, err := pgbenchConn(bn.t.base)
	if err != nil {
		return err
	}
	b, err := bn.t.open(ctx, f, "taskbench-producer")
	if err != nil {
		return err
	}
	defer b.Close()
	defer tasks.RegisterBackend(b)()
	n := bn.o.tasks
	if err := bn.fillLogged(ctx, n); err != nil {
		return err
	}
	if v := bn.o.floorSchema; v != "" {
		start := time.Now()
		for _, stmt := range floorVariantDDL(f.schema, v) {
			if _, err := bn.t.admin.ExecContext(ctx, stmt); err != nil {
				if stmt == "CHECKPOINT" { // superuser or pg_checkpoint only
					bn.logf("  --floor-schema %s: no CHECKPOINT (%v): the run's WAL may carry more full-page images", v, err)
					continue
				}
				return fmt.Errorf("--floor-schema %s: %w", v, err)
			}
		}
		bn.logf("  --floor-schema %s: table prepared and rewritten (VACUUM FULL, ANALYZE, CHECKPOINT) in %v",
			v, time.Since(start).Round(time.Millisecond))
	}

	dir, err := os.MkdirTemp("", "taskbench-floor-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "floor.sql")
	if err := os.WriteFile(script, []byte(floorScriptFor(bn.o.floorSchema)), 0o600); err != nil {
		return err
	}
	batch := bn.o.claimBatch()
	txns := (n + batch - 1) / batch
	appName := "taskbench-floor-" + randomHex(4)
	args := append([]string{"-n", "-M", "prepared", "-c", "1", "-t", strconv.Itoa(txns),
		"-D", "batch=" + strconv.Itoa(batch), "-f", script}, connArgs...)
	cmd := exec.CommandContext(ctx, pgbench, args...)
	cmd.Env = append(append(os.Environ(), connEnv...),
		"PGOPTIONS=-c search_path="+f.schema, // the fresh schema, as the backend's search_path
		"PGAPPNAME="+appName)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	bn.logf("  pgbench: %d transaction(s) of one claim and one completion of up to %d tasks, one connection: %s %s",
		txns, batch, pgbench, strings.Join(args, " "))

	meter, err := bn.startCost(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start pgbench: %w", err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	pidc := bn.watchBackendPIDs(wctx, appName)
	werr := cmd.Wait()
	wall := time.Since(start)
	stopWatch()
	pids := <-pidc
	for line := range strings.SplitSeq(strings.TrimRight(out.String(), "\n"), "\n") {
		bn.logf("  pgbench: %s", line)
	}
	if werr != nil {
		return fmt.Errorf("pgbench: %w", werr)
	}
	var c cost
	if meter != nil {
		// pgbench's backend exits after pgbench: wait until the postmaster
		// has waited for it, so that its CPU time is in the postmaster's
		// children's time (see dbCPU) when it is read.
		bn.logf("  pgbench's server processes: %v", pids)
		if err := settleBackends(ctx, pids); err != nil {
			bn.logf("  cost per task: %v; the database CPU may miss pgbench's connection", err)
		}
		if c, err = meter.stop(ctx); err != nil {
			return err
		}
	}
	if upd, hot, err := bn.tableUpdates(ctx, f.schema, int64(2*n)); err == nil {
		bn.logf("  row updates of gotasks_task: %d, of which heap-only (HOT, no index entry): %d", upd, hot)
	} else {
		bn.logf("  row updates of gotasks_task: %v", err)
	}
	ok, err := countStatus(ctx, b, tasks.StatusSuccessful)
	if err != nil {
		return err
	}
	if ok != int64(n) {
		return fmt.Errorf("%d SUCCESSFUL rows after pgbench, want %d", ok, n)
	}
	rate := perSecond(int64(n), wall)
	client := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	bn.logf("  pgbench claimed and completed %d tasks in %v (process start to exit): %.0f tasks/s; pgbench's own CPU %.1f µs/task",
		n, wall.Round(time.Millisecond), rate, usPerTask(client, n))
	bn.record("floor_tasks_per_s", rate, "tasks/s", 0)
	if meter != nil {
		bn.logf("  cost per task: database CPU %.1f µs (%v in all, %d postgres processes at the end); WAL %.0f bytes (%d in all)",
			usPerTask(c.dbCPU, n), c.dbCPU.Round(time.Millisecond), c.procs, float64(c.wal)/float64(n), c.wal)
		bn.record("floor_db_cpu_us_per_task", usPerTask(c.dbCPU, n), "us", 1)
		bn.record("floor_wal_bytes_per_task", float64(c.wal)/float64(n), "bytes", 0)
	}
	return nil
}

// watchBackendPIDs finds the server processes of the connections named
// appName (pg_stat_activity), polling every 5 ms, and sends them on the
// returned channel, which it closes after sending or when ctx is done (a
// receive then gives what it found, or nil). pgbench may open a short
// connection of its own before its client's, under the same name and
// running no statement, so one pid is not enough: the watcher collects
// every pid it sees until one of them has run a statement (the client's,
// which lasts the run), and then stops polling, to add next to nothing to
// the server's CPU.
func (bn *bench) watchBackendPIDs(ctx context.Context, appName string) <-chan []int {
	pidc := make(chan []int, 1)
	go func() {
		defer close(pidc)
		t := time.NewTicker(5 * time.Millisecond)
		defer t.Stop()
		var pids []int
		for {
			now, client, err := bn.backendPIDs(ctx, appName)
			if err == nil {
				for _, pid := range now {
					if !slices.Contains(pids, pid) {
						pids = append(pids, pid)
					}
				}
				if client {
					pidc <- pids
					return
				}
			}
			select {
			case <-ctx.Done():
				if len(pids) > 0 {
					pidc <- pids
				}
				return
			case <-t.C:
			}
		}
	}()
	return pidc
}

// backendPIDs returns the pids of the server processes of the connections
// named appName, and whether one of them has run a statement.
func (bn *bench) backendPIDs(ctx context.Context, appName string) (pids []int, ranStatement bool, err error) {
	rows, err := bn.t.admin.QueryContext(ctx, `SELECT pid, query <> '' FROM pg_stat_activity WHERE application_name = $1`, appName)
	if err != nil {
		return nil, false, err
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		var ran bool
		if err := rows.Scan(&pid, &ran); err != nil {
			return nil, false, err
		}
		pids = append(pids, pid)
		ranStatement = ranStatement || ran
	}
	return pids, ranStatement, rows.Err()
}

// tableUpdates returns the task table's row updates and how many of them
// were heap-only (pg_stat_user_tables), once at least want updates are
// counted or after 5 s. A server process sends its counters at most once a
// second and when it exits, and it may leave pg_stat_activity before that.
func (bn *bench) tableUpdates(ctx context.Context, schema string, want int64) (upd, hot int64, err error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = bn.t.admin.QueryRowContext(ctx, `SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
			WHERE schemaname = $1 AND relname = 'gotasks_task'`, schema).Scan(&upd, &hot)
		if err != nil || upd >= want || time.Now().After(deadline) {
			return upd, hot, err
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return upd, hot, ctx.Err()
		}
	}
}

// settleBackends waits (at most 5 s) until the server processes pids have
// ended and been waited for. No pid (none seen) waits 200 ms instead.
func settleBackends(ctx context.Context, pids []int) error {
	if len(pids) == 0 {
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		return errors.New("pgbench's connection was not seen in pg_stat_activity (waited 200 ms for it to end)")
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for !processGone(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("pgbench's server process %d still runs 5 s after pgbench ended", pid)
			}
			select {
			case <-time.After(2 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// pgbenchConn turns a postgres:// DSN into pgbench's connection arguments
// (-h, -p, -U, the database name) and libpq environment variables (the
// password and the TLS settings). The DSN is not passed as a URI because
// it may hold parameters libpq refuses (pgx's, or search_path).
func pgbenchConn(dsn string) (args, env []string, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", database.ErrBadDSN, err)
	}
	q := u.Query()
	host := u.Hostname()
	if h := q.Get("host"); h != "" {
		host = h
	}
	if host != "" {
		args = append(args, "-h", host)
	}
	port := u.Port()
	if p := q.Get("port"); p != "" {
		port = p
	}
	if port != "" {
		args = append(args, "-p", port)
	}
	if u.User != nil {
		if name := u.User.Username(); name != "" {
			args = append(args, "-U", name)
		}
		if pw, ok := u.User.Password(); ok {
			env = append(env, "PGPASSWORD="+pw)
		}
	}
	for param, v := range map[string]string{"sslmode": "PGSSLMODE", "sslrootcert": "PGSSLROOTCERT",
		"sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "connect_timeout": "PGCONNECT_TIMEOUT"} {
		if x := q.Get(param); x != "" {
			env = append(env, v+"="+x)
		}
	}
	if db := strings.TrimPrefix(u.Path, "/"); db != "" {
		args = append(args, db)
	}
	return args, env, nil
}
