package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return strings.ToLower(hex.EncodeToString(b))
}

// newScratchDB creates a database for one scenario, migrated to the latest
// PulseBus schema, with a pool of at most maxConns connections. Drop it
// with dropScratchDB.
func newScratchDB(ctx context.Context, maxConns int) (*testdb.DB, error) {
	return testdb.Create(ctx, "pulsebench_", maxConns)
}

// dropScratchDB drops a database of newScratchDB, logging a failure.
func dropScratchDB(db *testdb.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := db.Drop(ctx); err != nil {
		logf("%v", err)
	}
}

// kafkaAdmin is a small franz-go client for topic creation and offsets.
type kafkaAdmin struct {
	cl    *kgo.Client
	addrs []string
}

func newKafkaAdmin(addrs []string) (*kafkaAdmin, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...))
	if err != nil {
		return nil, fmt.Errorf("kafka admin client: %w", err)
	}
	return &kafkaAdmin{cl: cl, addrs: addrs}, nil
}

func (a *kafkaAdmin) Close() { a.cl.Close() }

// EndOffsets returns the high watermark of each partition of topic.
func (a *kafkaAdmin) EndOffsets(ctx context.Context, topic string, partitions int) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for p := range partitions {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = int32(p)
		rp.Timestamp = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, a.cl)
	if err != nil {
		return nil, fmt.Errorf("list offsets %s: %w", topic, err)
	}
	ends := map[int32]int64{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
				return nil, fmt.Errorf("list offsets %s/%d: %w", topic, p.Partition, err)
			}
			ends[p.Partition] = p.Offset
		}
	}
	return ends, nil
}

// TotalEnd returns the sum of the high watermarks of topic.
func (a *kafkaAdmin) TotalEnd(ctx context.Context, topic string, partitions int) (int64, error) {
	ends, err := a.EndOffsets(ctx, topic, partitions)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, e := range ends {
		n += e
	}
	return n, nil
}

// payloadSeq extracts the sequence number from a benchmark payload, which
// always starts with {"seq":N.
func payloadSeq(b []byte) (int64, bool) {
	const prefix = `{"seq":`
	if len(b) < len(prefix)+1 || string(b[:len(prefix)]) != prefix {
		return 0, false
	}
	end := len(prefix)
	for end < len(b) && b[end] >= '0' && b[end] <= '9' {
		end++
	}
	n, err := strconv.ParseInt(string(b[len(prefix):end]), 10, 64)
	return n, err == nil
}

// makePayload builds the JSON payload for event seq, padded to size bytes.
func makePayload(seq int64, size int) []byte {
	b := make([]byte, 0, size+32)
	b = append(b, `{"seq":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"pad":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	b = append(b, `"}`...)
	return b
}

// verifyTopic reads every record of topic and checks that the sequence
// numbers 0..want-1 each appear at least once. It returns the number of
// distinct events found and the number of duplicates.
func verifyTopic(ctx context.Context, addrs []string, topic string, partitions int, want int64) (distinct, dups int64, err error) {
	admin, err := newKafkaAdmin(addrs)
	if err != nil {
		return 0, 0, err
	}
	defer admin.Close()
	ends, err := admin.EndOffsets(ctx, topic, partitions)
	if err != nil {
		return 0, 0, err
	}
	offsets := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	for p, e := range ends {
		if e > 0 {
			offsets[p] = kgo.NewOffset().AtStart()
			remaining[p] = e
		}
	}
	seen := make([]bool, want)
	if len(remaining) == 0 {
		return 0, 0, nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchMaxWait(50*time.Millisecond), kgo.FetchMaxBytes(64<<20))
	if err != nil {
		return 0, 0, fmt.Errorf("verify client: %w", err)
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return distinct, dups, fmt.Errorf("verify %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return distinct, dups, fmt.Errorf("verify %s: %w", topic, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			end, ok := remaining[r.Partition]
			if !ok || r.Offset >= end {
				return
			}
			if seq, ok := payloadSeq(r.Value); ok && seq >= 0 && seq < want {
				if seen[seq] {
					dups++
				} else {
					seen[seq] = true
					distinct++
				}
			}
			if r.Offset == end-1 {
				delete(remaining, r.Partition)
			}
		})
	}
	return distinct, dups, nil
}

// waitFor polls cond every interval until it returns true, fails, or
// timeout passes.
func waitFor(ctx context.Context, timeout, interval time.Duration, cond func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ok, err := cond(ctx)
		if err != nil && ctx.Err() == nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("condition not met within %s: %w", timeout, ctx.Err())
		case <-t.C:
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pulsebench: "+format+"\n", args...)
}

// oldestSnapshotHolder describes the oldest transaction on the whole
// server that holds back pg_snapshot_xmin, or "" if none is older than a
// second. Watermill's PostgreSQL subscriber reads only rows of
// transactions below that horizon, so such a transaction, in any database,
// stalls it.
func oldestSnapshotHolder(ctx context.Context, db *testdb.DB) string {
	var (
		pid     int
		datname string
		state   string
		age     float64
	)
	err := db.Pool.QueryRow(ctx, `SELECT pid, coalesce(datname, ''), coalesce(state, ''), extract(epoch FROM now() - xact_start)::float8
		  FROM pg_stat_activity
		 WHERE (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
		 ORDER BY xact_start LIMIT 1`).Scan(&pid, &datname, &state, &age)
	if err != nil || age < 1 {
		return ""
	}
	return fmt.Sprintf("a transaction open for %.0fs on the server (pid %d, database %s, %s) holds pg_snapshot_xmin back, and Watermill's subscriber reads only rows below it", age, pid, datname, state)
}

// postgresInfo describes the PostgreSQL server for the report: version and
// the settings that bound commit rates.
func postgresInfo(ctx context.Context) string {
	conn, err := pgx.Connect(ctx, testdb.ServerURL())
	if err != nil {
		return "?"
	}
	defer conn.Close(context.Background())
	var v, fsync, syncCommit, buffers string
	if err := conn.QueryRow(ctx, `SELECT current_setting('server_version'), current_setting('fsync'),
		current_setting('synchronous_commit'), current_setting('shared_buffers')`).Scan(&v, &fsync, &syncCommit, &buffers); err != nil {
		return "?"
	}
	return fmt.Sprintf("%s (fsync %s, synchronous_commit %s, shared_buffers %s)", v, fsync, syncCommit, buffers)
}
