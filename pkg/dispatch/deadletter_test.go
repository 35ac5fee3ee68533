package dispatch_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// hostileRecord is a CloudEvent in binary mode as another producer might
// write it, with extra headers appended.
func hostileRecord(partition int32, typ string, key []byte, extra ...kgo.RecordHeader) *kgo.Record {
	hs := []kgo.RecordHeader{
		{Key: "ce_specversion", Value: []byte("1.0")},
		{Key: "ce_id", Value: []byte(uuid.NewString())},
		{Key: "ce_type", Value: []byte(typ)},
		{Key: "ce_source", Value: []byte("x")},
		{Key: "ce_time", Value: []byte("2026-12-04T21:00:00Z")},
	}
	return &kgo.Record{Topic: "events", Partition: partition, Key: key, Value: []byte("{}"), Headers: append(hs, extra...)}
}

// produceRecords writes records with franz-go, a client independent of the
// consumer's kafka-go, to the partitions the records name.
func produceRecords(t *testing.T, addrs []string, recs ...*kgo.Record) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(addrs...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, recs...).FirstErr())
}

// One malformed message never stops a partition: messages whose event type
// or header names PostgreSQL cannot store as text (byte 0xff, NUL) are
// dead-lettered byte for byte by a transactional and a plain handler, and
// the events after them on the same partition are delivered.
func TestConsumer_HostileMessagesDoNotStopThePartition(t *testing.T) {
	t.Parallel()
	b := setup(t, 2)
	hostile := []*kgo.Record{
		hostileRecord(1, "poison.\xff", []byte("k\xff")),
		hostileRecord(1, "poison\x00nul", nil),
		hostileRecord(1, "lesson.published", []byte("k"), kgo.RecordHeader{Key: "ce_bad\x00key", Value: []byte("v")}),
		hostileRecord(1, "lesson.published", nil, kgo.RecordHeader{Key: "ce_\xff\xfe", Value: []byte{0, 0xff}},
			kgo.RecordHeader{Key: "x-empty", Value: []byte{}}),
	}
	hostile[0].Value = []byte{0xff, 0x00, 0xfe}
	produceRecords(t, b.kc.Addrs, hostile...)
	later := events(t, 3, "lesson.published")
	var laterRecs []*kgo.Record
	for _, e := range later {
		m, err := envelope.ToMessage(e)
		require.NoError(t, err)
		r := &kgo.Record{Topic: b.topic, Partition: 1, Key: m.Key, Value: m.Value}
		for _, h := range m.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		laterRecs = append(laterRecs, r)
	}
	produceRecords(t, b.kc.Addrs, laterRecs...)

	c, err := dispatch.New(b.config("svc"))
	require.NoError(t, err)
	rec := newRecorder()
	require.NoError(t, c.HandleTx("tx", []string{"*"}, countTx("tx")))
	require.NoError(t, c.Handle("plain", []string{"*"}, rec))
	stop := start(t, c)
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the events after the hostile ones handled", func() bool {
		n, _ := countHandled(t, b.db.Pool, "tx")
		d, _ := rec.total()
		return n == len(later) && d == len(later)
	})
	stop()

	dls := deadLetters(t, b.db.Pool, "svc")
	require.Len(t, dls, 2*len(hostile))
	for _, d := range dls {
		require.Equal(t, 1, d.Partition)
		require.Less(t, d.Offset, int64(len(hostile)))
		want := hostile[d.Offset]
		requireSameBytes(t, want.Key, d.Key, "key of %s@%d", d.Handler, d.Offset)
		requireSameBytes(t, want.Value, d.Value, "value of %s@%d", d.Handler, d.Offset)
		require.Len(t, d.Headers, len(want.Headers), "%s@%d", d.Handler, d.Offset)
		for i, h := range want.Headers {
			require.Equal(t, []byte(h.Key), []byte(d.Headers[i].Key), "header %d key of %s@%d", i, d.Handler, d.Offset)
			requireSameBytes(t, h.Value, d.Headers[i].Value, "header %d value of %s@%d", i, d.Handler, d.Offset)
		}
		require.NotEmpty(t, d.Error)
		switch d.Offset {
		case 0:
			require.Equal(t, "poison.\uFFFD", *d.EventType, "the event type column is readable text")
		case 1:
			require.Equal(t, "poison\uFFFDnul", *d.EventType)
		}
		m := d.Message()
		require.Equal(t, kafka.Message{Topic: b.topic, Partition: 1, Offset: d.Offset, Key: d.Key, Value: d.Value, Headers: d.Headers}, m)
	}
	requireOffsetsAtEnd(t, b, "svc", "tx")
	requireOffsetsAtEnd(t, b, "svc", "plain")

	// A redrive runs on the exact bytes: they fail to decode again, and the
	// new error is recorded.
	res, err := (&dispatch.Admin{Pool: b.db.Pool, Consumer: c}).Redrive(context.Background(), dispatch.DeadLetterFilter{Handler: "tx"})
	require.NoError(t, err)
	require.Equal(t, len(hostile), res.Failed, "%+v", res)
	for _, d := range deadLetters(t, b.db.Pool, "svc") {
		if d.Handler == "tx" {
			require.Equal(t, 1, d.Attempts, "one more attempt recorded for %d: %s", d.Offset, d.Error)
		}
	}
}

// requireSameBytes compares byte slices, an empty one equal to none.
func requireSameBytes(t *testing.T, want, got []byte, msgAndArgs ...any) {
	t.Helper()
	if len(want) == 0 && len(got) == 0 {
		return
	}
	require.Equal(t, want, got, msgAndArgs...)
}
