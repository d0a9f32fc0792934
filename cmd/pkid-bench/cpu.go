package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// cpuMeter measures the CPU time that a run costs, which other work on a
// shared machine barely changes, unlike rates and latencies: this process's
// (server and load generator together, as they share the process) and that
// of the Postgres backends serving the scratch database plus the server's
// WAL writer, checkpointer and background writer (shared with any other
// database on the server, so an upper bound).
type cpuMeter struct {
	adminURL string
	database string
}

// cpuSample is a point-in-time reading of cumulative CPU time.
type cpuSample struct {
	self, postgres time.Duration
}

func (m cpuMeter) sample(ctx context.Context) (cpuSample, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return cpuSample{}, err
	}
	s := cpuSample{self: time.Duration(ru.Utime.Nano() + ru.Stime.Nano())}
	conn, err := pgx.Connect(ctx, m.adminURL)
	if err != nil {
		return cpuSample{}, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE (datname = $1 AND pid <> pg_backend_pid())
		   OR backend_type IN ('walwriter', 'checkpointer', 'background writer')`, m.database)
	if err != nil {
		return cpuSample{}, err
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return cpuSample{}, err
	}
	for _, pid := range pids {
		// A backend that has gone since the query simply counts nothing.
		if d, err := procCPU(pid); err == nil {
			s.postgres += d
		}
	}
	return s, nil
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the user + system time of process pid.
func procCPU(pid int32) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) may hold spaces; the fields after its
	// closing parenthesis are plain. utime and stime are fields 14 and 15.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	var ticks int64
	for _, x := range f[11:13] {
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}
