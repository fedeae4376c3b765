package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gotasks/gotasks/backends/database"
)

// clockTicks is the unit of the CPU times in /proc/PID/stat: USER_HZ, what
// sysconf(_SC_CLK_TCK) returns. Linux reports these times in USER_HZ
// whatever its internal HZ, and USER_HZ is 100 on every architecture Go
// runs on (getconf CLK_TCK says 100 here too); Go has no sysconf without
// cgo, hence the constant.
const clockTicks = 100

// procKey identifies a process: its pid and its start time (field 22 of
// /proc/PID/stat, in ticks since boot), which tells a reused pid apart.
type procKey struct {
	pid   int
	start uint64
}

// postgresCPU returns, for every process on this machine whose command
// name is "postgres", its CPU time in clock ticks: user + system time
// (fields 14 and 15 of /proc/PID/stat) plus that of its children it has
// waited for (fields 16 and 17; see costMeter). The command name is read
// from the stat line, whose field 2 is the same value as /proc/PID/comm
// (PostgreSQL's process titles change the command line, not that name).
// It returns an empty map when /proc cannot be read (off Linux).
func postgresCPU() map[procKey]int64 {
	out := map[procKey]int64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile, or not readable
		}
		k, ticks, ok := parseStat(pid, data)
		if ok {
			out[k] = ticks
		}
	}
	return out
}

// parseStat reads a /proc/PID/stat line: ok when the process is a
// "postgres" one, with its key and utime+stime+cutime+cstime.
func parseStat(pid int, data []byte) (procKey, int64, bool) {
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open || string(data[open+1:closing]) != "postgres" {
		return procKey{}, 0, false
	}
	f := strings.Fields(string(data[closing+1:])) // f[0] is field 3 (state)
	if len(f) < 20 {
		return procKey{}, 0, false
	}
	var ticks int64
	for _, i := range []int{14, 15, 16, 17} { // utime, stime, cutime, cstime
		v, err := strconv.ParseInt(f[i-3], 10, 64)
		if err != nil {
			return procKey{}, 0, false
		}
		ticks += v
	}
	start, err := strconv.ParseUint(f[22-3], 10, 64)
	if err != nil {
		return procKey{}, 0, false
	}
	return procKey{pid: pid, start: start}, ticks, true
}

// dbCPU is the CPU time the postgres processes used between two readings
// of postgresCPU: the sum at the second minus the sum at the first. A
// process present at both counts its delta, and one that appeared in
// between its full time. One that ended in between counts minus its time at
// the first reading, and its full time is in the children's time of the
// process that waited for it (the postmaster, present at both): its net
// share is its time in between. This counts the backends that came and went
// between the readings (pgbench's, in floor: once it has been waited for).
// The times include every postgres process of the machine (walwriter,
// checkpointer, autovacuum, other databases' backends): the server's whole
// cost.
func dbCPU(before, after map[procKey]int64) time.Duration {
	var ticks int64
	for _, t := range after {
		ticks += t
	}
	for _, t := range before {
		ticks -= t
	}
	return time.Duration(ticks) * time.Second / clockTicks
}

// costMeter measures what a stretch of work costs the PostgreSQL server on
// this machine: the CPU time of its processes (dbCPU) and the WAL it wrote.
type costMeter struct {
	admin *sql.DB
	cpu0  map[procKey]int64
	lsn0  string
}

// cost is what a costMeter measured.
type cost struct {
	dbCPU time.Duration
	wal   int64 // bytes
	procs int   // postgres processes at the end
}

// startCost starts a costMeter. It returns nil, and says why in a
// progress line, when the server is not PostgreSQL on this machine (no
// process named "postgres" in /proc); on SQLite it says nothing.
func (bn *bench) startCost(ctx context.Context) (*costMeter, error) {
	if bn.t.dialect != database.Postgres {
		return nil, nil
	}
	cpu := postgresCPU()
	if len(cpu) == 0 {
		bn.logf("  cost per task: skipped (no postgres process in /proc: the server is not on this machine)")
		return nil, nil
	}
	m := &costMeter{admin: bn.t.admin, cpu0: cpu}
	if err := bn.t.admin.QueryRowContext(ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&m.lsn0); err != nil {
		return nil, fmt.Errorf("read the WAL position: %w", err)
	}
	return m, nil
}

// stop ends the measurement.
func (m *costMeter) stop(ctx context.Context) (cost, error) {
	var c cost
	if err := m.admin.QueryRowContext(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint`,
		m.lsn0).Scan(&c.wal); err != nil {
		return c, fmt.Errorf("read the WAL position: %w", err)
	}
	cpu := postgresCPU()
	if len(cpu) == 0 {
		return c, errors.New("the postgres processes vanished from /proc during the measurement")
	}
	c.dbCPU, c.procs = dbCPU(m.cpu0, cpu), len(cpu)
	return c, nil
}

// usPerTask returns d per task in microseconds.
func usPerTask(d time.Duration, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(d.Nanoseconds()) / 1e3 / float64(n)
}

// processGone reports whether process pid has ended and been waited for
// (it is no longer in /proc).
func processGone(pid int) bool {
	_, err := os.Stat("/proc/" + strconv.Itoa(pid))
	return errors.Is(err, os.ErrNotExist)
}
