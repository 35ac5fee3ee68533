package dispatch_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
)

// countStats summarises a handler's rows in handled.
type countStats struct{ distinct, total, maxN int }

func handledStats(t *testing.T, pool *pgxpool.Pool, handler string) countStats {
	t.Helper()
	var s countStats
	require.NoError(t, pool.QueryRow(context.Background(),
		`SELECT count(*), coalesce(sum(n), 0), coalesce(max(n), 0) FROM handled WHERE handler = $1`, handler).
		Scan(&s.distinct, &s.total, &s.maxN))
	return s
}

// The must-show of exactly-once effects: a consumer process with a
// transactional handler counting events (one transaction per event), a
// batch transactional handler and a plain handler (appending to a file) is
// SIGKILLed at random
// moments, at least five times, and restarted. Every one of the 50,000
// events is then counted exactly once by both transactional handlers, and
// at least once by the plain one.
func TestConsumer_SIGKILL_ExactlyOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	createChildTables(t, b.db.Pool)
	const total = 50_000
	envs := events(t, total, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)

	seed := uint64(time.Now().UnixNano())
	t.Logf("kill moments seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	plainFile := filepath.Join(t.TempDir(), "plain.log")
	plainSeen := func() map[string]int { return linesIn(t, plainFile) }
	const kills = 5
	for i := 0; i < kills; i++ {
		// Kill it while it works, at a random point of the i-th sixth of
		// the events.
		lo, hi := (5*i+1)*total/30, (i+1)*total/6
		target := lo + rng.IntN(hi-lo)
		c := startChild(t, b, "crash", fmt.Sprintf("m%d", i), "BATCH=1", "PLAIN_FILE="+plainFile)
		testpoll.Until(t, 3*time.Minute, 20*time.Millisecond, fmt.Sprintf("the consumer reaches %d events", target), func() bool {
			return handledStats(t, b.db.Pool, "count").distinct >= target
		})
		time.Sleep(time.Duration(rng.Int64N(int64(20 * time.Millisecond))))
		c.kill()
		s := handledStats(t, b.db.Pool, "count")
		t.Logf("kill %d: %d of %d events counted", i+1, s.distinct, total)
		require.Equal(t, 1, s.maxN, "an event was counted twice")
		require.Less(t, s.distinct, total, "all events were handled before the %d kills", kills)
	}

	c := startChild(t, b, "crash", "final", "BATCH=1", "PLAIN_FILE="+plainFile)
	testpoll.Until(t, 5*time.Minute, 20*time.Millisecond, "all events handled after the restarts", func() bool {
		return handledStats(t, b.db.Pool, "count").distinct == total &&
			handledStats(t, b.db.Pool, "batch").distinct == total &&
			len(plainSeen()) == total && offsetsAtEnd(t, b, "crash", "plain") // see TestConsumer_PlainAtLeastOnceAcrossKills
	})
	c.stop(30 * time.Second)

	for _, h := range []string{"count", "batch"} {
		s := handledStats(t, b.db.Pool, h)
		require.Equal(t, countStats{distinct: total, total: total, maxN: 1}, s, "handler %s: every event exactly once", h)
	}
	var logged int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM handled_log`).Scan(&logged))
	require.Equal(t, total, logged, "committed deliveries of the per-event transactional handler")
	seen := plainSeen()
	deliveries := 0
	for _, e := range envs {
		require.Positive(t, seen[e.ID], "the plain handler never saw %s", e.ID)
		deliveries += seen[e.ID]
	}
	require.Len(t, seen, total)
	t.Logf("plain handler: %d deliveries for %d events (at-least-once; redeliveries after the kills)", deliveries, total)

	ends := b.kc.EndOffsets(t, b.topic)
	for _, h := range []string{"count", "batch", "plain"} {
		offs := offsetsOf(t, b.db.Pool, "crash", h)
		for part, end := range ends {
			require.Equal(t, end, offs[int(part)], "handler %s partition %d", h, part)
		}
	}
}

// linesIn counts the lines of a file the child's plain handler appends to.
func linesIn(t *testing.T, path string) map[string]int {
	t.Helper()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	seen := map[string]int{}
	for _, line := range strings.Split(string(data), "\n") {
		if line != "" {
			seen[line]++
		}
	}
	return seen
}

// A plain handler is at-least-once across crashes: SIGKILLed twice while
// its progress is only in memory (flushed every second), the consumer
// re-delivers what it had not saved, and every event is handled.
func TestConsumer_PlainAtLeastOnceAcrossKills(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	const total = 4000
	envs := events(t, total, "lesson.published")
	produceToKafka(t, b.kc.Addrs, b.topic, envs)
	path := filepath.Join(t.TempDir(), "plain.log")
	deliveries := func() int {
		n := 0
		for _, c := range linesIn(t, path) {
			n += c
		}
		return n
	}
	for i, target := range []int{500 + rand.IntN(1000), 2000 + rand.IntN(1000)} {
		c := startChild(t, b, "plain", fmt.Sprintf("m%d", i), "NO_COUNT=1", "PLAIN_FILE="+path, "FLUSH_INTERVAL=1s")
		testpoll.Until(t, 60*time.Second, 20*time.Millisecond, fmt.Sprintf("%d deliveries", target), func() bool { return deliveries() >= target })
		c.kill()
	}
	c := startChild(t, b, "plain", "final", "NO_COUNT=1", "PLAIN_FILE="+path, "FLUSH_INTERVAL=1s")
	// Every event delivered is not enough: a killed member can have
	// delivered a partition's events without saving them, and the final
	// member only gets that partition once the group has dropped the dead
	// one. Wait for the saved offsets too.
	testpoll.Until(t, 2*time.Minute, 20*time.Millisecond, "every event delivered and saved", func() bool {
		return len(linesIn(t, path)) == total && offsetsAtEnd(t, b, "plain", "plain")
	})
	c.stop(30 * time.Second)
	seen := linesIn(t, path)
	for _, e := range envs {
		require.Positive(t, seen[e.ID], "event %s never delivered", e.ID)
	}
	n := deliveries()
	t.Logf("%d deliveries of %d events", n, total)
	require.Greater(t, n, total, "the kills lost unsaved progress, so some events came again")
	requireOffsetsAtEnd(t, b, "plain", "plain")
}

// partitionsHandled returns the partitions on which member committed
// events after the database time since.
func partitionsHandled(t *testing.T, pool *pgxpool.Pool, member string, since time.Time) []int {
	t.Helper()
	rows, err := pool.Query(context.Background(),
		`SELECT DISTINCT partition FROM handled_log WHERE member = $1 AND at > $2 ORDER BY 1`, member, since)
	require.NoError(t, err)
	defer rows.Close()
	var out []int
	for rows.Next() {
		var p int
		require.NoError(t, rows.Scan(&p))
		out = append(out, p)
	}
	require.NoError(t, rows.Err())
	return out
}

func dbNow(t *testing.T, pool *pgxpool.Pool) time.Time {
	t.Helper()
	var now time.Time
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT clock_timestamp()`).Scan(&now))
	return now
}

func containsAll(have, want []int) bool {
	set := map[int]bool{}
	for _, p := range have {
		set[p] = true
	}
	for _, p := range want {
		if !set[p] {
			return false
		}
	}
	return true
}

// Two consumer processes in one group share the partitions (each handles
// some, none both). One is frozen
// (SIGSTOP) past its session timeout: the other takes its partitions over.
// The frozen one then resumes as a zombie with messages in hand that the
// other has already handled — older events redelivered after newer ones —
// and is fenced off; later it is SIGKILLed and the other takes over again.
// Events keep arriving throughout; every one is counted exactly once.
func TestConsumer_TwoMembers_TakeOver(t *testing.T) {
	t.Parallel()
	b := setup(t, 4)
	createChildTables(t, b.db.Pool)
	prod := startProducer(t, b, 20, 50*time.Millisecond)

	a := startChild(t, b, "pair", "A")
	bb := startChild(t, b, "pair", "B")
	all := []int{0, 1, 2, 3}
	var aParts, bParts []int
	testpoll.Until(t, 60*time.Second, 20*time.Millisecond, "the members share the partitions", func() bool {
		// What each handled in the last second: disjoint, together all.
		recent := dbNow(t, b.db.Pool).Add(-time.Second)
		aParts, bParts = partitionsHandled(t, b.db.Pool, "A", recent), partitionsHandled(t, b.db.Pool, "B", recent)
		return len(aParts) > 0 && len(bParts) > 0 && len(aParts)+len(bParts) == len(all) &&
			containsAll(append(append([]int(nil), aParts...), bParts...), all)
	})
	t.Logf("A handles partitions %v, B %v", aParts, bParts)

	a.signal(syscall.SIGSTOP)
	frozen := dbNow(t, b.db.Pool)
	testpoll.Until(t, 60*time.Second, 20*time.Millisecond, "B takes over the frozen member's partitions", func() bool {
		return containsAll(partitionsHandled(t, b.db.Pool, "B", frozen), all)
	})
	a.signal(syscall.SIGCONT)
	resumed := dbNow(t, b.db.Pool)
	testpoll.Until(t, 60*time.Second, 20*time.Millisecond, "the resumed member rejoins and handles events again", func() bool {
		return len(partitionsHandled(t, b.db.Pool, "A", resumed)) > 0
	})
	a.kill()
	killed := dbNow(t, b.db.Pool)
	testpoll.Until(t, 60*time.Second, 20*time.Millisecond, "B takes over the killed member's partitions", func() bool {
		return containsAll(partitionsHandled(t, b.db.Pool, "B", killed), all)
	})

	ids := prod.stop()
	testpoll.Until(t, 60*time.Second, 20*time.Millisecond, "every produced event is handled", func() bool {
		return handledStats(t, b.db.Pool, "count").distinct == len(ids)
	})
	bb.stop(30 * time.Second)
	s := handledStats(t, b.db.Pool, "count")
	require.Equal(t, countStats{distinct: len(ids), total: len(ids), maxN: 1}, s)
	var logged int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM handled_log`).Scan(&logged))
	require.Equal(t, len(ids), logged, "committed deliveries")
	var missing int
	require.NoError(t, b.db.Pool.QueryRow(context.Background(),
		`SELECT count(*) FROM unnest($1::uuid[]) AS p(id) WHERE NOT EXISTS (SELECT 1 FROM handled h WHERE h.handler = 'count' AND h.event_id = p.id)`,
		ids).Scan(&missing))
	require.Zero(t, missing)
	byMember := map[string]int{}
	rows, err := b.db.Pool.Query(context.Background(), `SELECT member, count(*) FROM handled_log GROUP BY 1`)
	require.NoError(t, err)
	for rows.Next() {
		var m string
		var n int
		require.NoError(t, rows.Scan(&m, &n))
		byMember[m] = n
	}
	require.NoError(t, rows.Err())
	t.Logf("%d events; committed by member: %v", len(ids), byMember)
	keys := make([]string, 0, len(byMember))
	for k := range byMember {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	require.Equal(t, []string{"A", "B"}, keys)
}
