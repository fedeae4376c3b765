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

// postgresCPU returns, for the postmaster pid and every process on this
// machine whose command name is "postgres" and whose parent it is (the
// server's backends and background processes; 0: every "postgres"
// process), its CPU time in clock ticks: user + system time
// (fields 14 and 15 of /proc/PID/stat) plus that of its children it has
// waited for (fields 16 and 17; see costMeter). The command name is read
// from the stat line, whose field 2 is the same value as /proc/PID/comm
// (PostgreSQL's process titles change the command line, not that name).
// It returns an empty map when /proc cannot be read (off Linux).
func postgresCPU(postmaster int) map[procKey]int64 {
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
		if ok && (postmaster == 0 || pid == postmaster || statPPID(data) == postmaster) {
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

// statPPID returns the parent pid of a /proc/PID/stat line (field 4), or
// -1.
func statPPID(data []byte) int {
	closing := bytes.LastIndexByte(data, ')')
	if closing < 0 {
		return -1
	}
	f := strings.Fields(string(data[closing+1:])) // f[0] is field 3 (state)
	if len(f) < 2 {
		return -1
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return -1
	}
	return ppid
}

// serverPostmaster returns the pid of the postmaster of the server admin
// is connected to when that server runs on this machine: the parent of
// the admin connection's backend, found in /proc as a "postgres" process.
// ok is false for a server elsewhere (or in another pid namespace, where
// the backend's pid means nothing here).
func serverPostmaster(ctx context.Context, admin *sql.DB) (int, bool, error) {
	var pid int
	if err := admin.QueryRowContext(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return 0, false, fmt.Errorf("read the backend pid: %w", err)
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, nil
	}
	if _, _, ok := parseStat(pid, data); !ok {
		return 0, false, nil // another process with that pid: not our server
	}
	ppid := statPPID(data)
	return ppid, ppid > 0, nil
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
	admin      *sql.DB
	postmaster int // the server's postmaster pid
	cpu0       map[procKey]int64
	lsn0       string
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
	pm, ok, err := serverPostmaster(ctx, bn.t.admin)
	if err != nil {
		return nil, err
	}
	cpu := postgresCPU(pm)
	if !ok || len(cpu) == 0 {
		bn.logf("  cost per task: skipped (the server's backend is not a process of this machine)")
		return nil, nil
	}
	m := &costMeter{admin: bn.t.admin, postmaster: pm, cpu0: cpu}
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
	cpu := postgresCPU(m.postmaster)
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
