package main

import (
	"context"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

// contenderAppName is the application_name of every PostgreSQL connection
// a contender opens (it is in the URL the child gets), so the PostgreSQL
// backends working for the contender can be told from the producers' and
// other engineers'.
const contenderAppName = "pulsebench-contender"

// contenderURL returns the database URL for a contender's connections.
func contenderURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	q := u.Query()
	q.Set("application_name", contenderAppName)
	u.RawQuery = q.Encode()
	return u.String()
}

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times (100 on
// every Linux architecture Go supports).
const clockTicks = 100

// procCPU returns the user+system CPU time of process pid from
// /proc/<pid>/stat, or false if it is gone.
func procCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The command name (field 2) may hold spaces; fields after it are
	// counted from the closing parenthesis: utime and stime are fields
	// 14 and 15 of the line, so 12 and 13 after the name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, false
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	return time.Duration(ut+st) * time.Second / clockTicks, true
}

// backendCPU snapshots the CPU time of the PostgreSQL backends serving a
// contender (by application_name) on database db.
type backendCPU map[int]time.Duration

func snapshotBackendCPU(ctx context.Context, db *testdb.DB) backendCPU {
	out := backendCPU{}
	rows, err := db.Pool.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND application_name = $2`, db.Name, contenderAppName)
	if err != nil {
		return out
	}
	defer rows.Close()
	for rows.Next() {
		var pid int
		if rows.Scan(&pid) == nil {
			if cpu, ok := procCPU(pid); ok {
				out[pid] = cpu
			}
		}
	}
	return out
}

// since returns the CPU the backends of now used after the snapshot before
// (all of it for backends that did not exist then). Backends that exited
// in between are missed, so it is a lower bound; contenders keep their
// connections for the whole run, so in practice it is all of it.
func (now backendCPU) since(before backendCPU) time.Duration {
	var d time.Duration
	for pid, cpu := range now {
		d += cpu - before[pid]
	}
	return d
}

// selfCPU returns this process's user+system CPU time: the in-process
// kfake broker and the parent's bookkeeping.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuMeter measures, around one contender's run, the CPU of its
// PostgreSQL backends and of the parent process (the broker).
type cpuMeter struct {
	db      *testdb.DB
	backend backendCPU
	self    time.Duration
}

func startCPUMeter(ctx context.Context, db *testdb.DB) *cpuMeter {
	return &cpuMeter{db: db, backend: snapshotBackendCPU(ctx, db), self: selfCPU()}
}

// stop returns the backends' and the parent's CPU since start. Call it
// before the contender closes its connections.
func (m *cpuMeter) stop(ctx context.Context) (backends, parent time.Duration) {
	return snapshotBackendCPU(ctx, m.db).since(m.backend), selfCPU() - m.self
}
