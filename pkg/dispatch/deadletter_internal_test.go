package dispatch

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// fuzzMessage builds a Kafka message from arbitrary bytes: chunks of a
// big-endian uint16 length and that many bytes (a length running past the
// end takes what is left): the key, the value, then header key and value
// pairs. A key chunk of length 0xffff is a nil key, a header value chunk of
// length 0xffff a header without a value.
func fuzzMessage(b []byte) kafka.Message {
	next := func() ([]byte, bool) {
		if len(b) < 2 {
			return nil, false
		}
		n := int(binary.BigEndian.Uint16(b))
		b = b[2:]
		if n == 0xffff {
			return nil, true
		}
		n = min(n, len(b))
		p := b[:n:n]
		b = b[n:]
		if p == nil {
			p = []byte{}
		}
		return p, true
	}
	var m kafka.Message
	m.Key, _ = next()
	m.Value, _ = next()
	for {
		k, ok := next()
		if !ok {
			break
		}
		v, _ := next()
		m.Headers = append(m.Headers, kafka.Header{Key: string(k), Value: v})
	}
	return m
}

func fuzzChunks(chunks ...[]byte) []byte {
	var b []byte
	for _, c := range chunks {
		if c == nil {
			b = binary.BigEndian.AppendUint16(b, 0xffff)
			continue
		}
		b = binary.BigEndian.AppendUint16(b, uint16(len(c)))
		b = append(b, c...)
	}
	return b
}

// parkingWorker is a worker of handler "h" on events/0 of group "g", enough
// to store dead letters.
func parkingWorker(t testing.TB, db *testdb.DB) *worker {
	c, err := New(Config{Brokers: []string{"unused:9092"}, Group: "g", Topics: []string{"events"}, Pool: db.Pool,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	return &worker{c: c, h: &registration{name: "h"}, workCtx: context.Background(), log: c.log,
		key: offsetKey{group: "g", handler: "h", topic: "events", partition: 0}}
}

// FuzzDeadLetter parks arbitrary messages, decoded or not as a worker
// would, with arbitrary error texts in PostgreSQL, and reads them back: the
// message is stored whole (never only its position) and byte for byte, and
// the text columns hold valid text.
func FuzzDeadLetter(f *testing.F) {
	valid, err := envelope.ToMessage(envelope.Envelope{ID: "01000000-0000-0000-0000-000000000000", Type: "lesson.published", Source: "s",
		Time: time.Unix(1, 0).UTC(), Payload: []byte(`{}`), Meta: map[string]string{"tenant": "acme"}})
	require.NoError(f, err)
	ce := func(typ string, extra ...[]byte) []byte {
		return fuzzChunks(append([][]byte{[]byte("k"), []byte("{}"),
			[]byte("ce_specversion"), []byte("1.0"), []byte("ce_id"), []byte("0190a3c4-0000-7000-8000-000000000001"),
			[]byte("ce_type"), []byte(typ), []byte("ce_source"), []byte("x"), []byte("ce_time"), []byte("2026-12-04T21:00:00Z")},
			extra...)...)
	}
	var validChunks [][]byte
	validChunks = append(validChunks, valid.Key, valid.Value)
	for _, h := range valid.Headers {
		validChunks = append(validChunks, []byte(h.Key), h.Value)
	}
	f.Add(fuzzChunks(validChunks...), "handler failed")
	f.Add(ce("poison.\xff"), "boom")
	f.Add(ce("poison\x00nul"), "boom")
	f.Add(ce("lesson.published", []byte("ce_bad\x00key"), []byte("v")), "boom")
	f.Add(ce("lesson.published", []byte("ce_\xff\xfe"), []byte{0, 0xff}, []byte("x-none"), nil), "boom")
	f.Add(fuzzChunks(nil, nil), "")
	f.Add(fuzzChunks([]byte{0xff, 0}, []byte{0, 0xc3}, []byte{}, []byte{}), "error with \x00 and \xff and "+strings.Repeat("é", 2500))
	f.Add([]byte{0xff}, "\xc3")

	db := testdb.New(f)
	w := parkingWorker(f, db)
	var offset atomic.Int64
	f.Fuzz(func(t *testing.T, raw []byte, errMsg string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		w.workCtx = ctx
		msg := fuzzMessage(raw)
		msg.Topic, msg.Partition, msg.Offset = "events", 0, offset.Add(1)
		env, bad := w.c.cfg.Limits.FromMessage(msg)
		it := item{msg: msg, env: env, bad: bad}
		cause := errors.New(errMsg)
		if bad != nil {
			cause = bad
		}
		require.NoError(t, w.deadLetter(db.Pool, it, cause, 1, time.Now()))

		var id int64
		require.NoError(t, db.Pool.QueryRow(ctx, `SELECT id FROM pulsebus.dead_letters
			WHERE group_id = 'g' AND handler = 'h' AND topic = 'events' AND partition = 0 AND kafka_offset = $1`,
			msg.Offset).Scan(&id))
		dls, err := (&Admin{Pool: db.Pool}).ListDeadLetters(ctx, DeadLetterFilter{Group: "g", ID: id})
		require.NoError(t, err)
		require.Len(t, dls, 1)
		d := dls[0]
		require.True(t, d.MessageStored, "stored only the position: %s", d.Error)
		got := d.Message()
		requireExactBytes(t, msg.Key, got.Key, "key")
		requireExactBytes(t, msg.Value, got.Value, "value")
		require.Equal(t, len(msg.Headers), len(got.Headers))
		for i, h := range msg.Headers {
			require.Equal(t, []byte(h.Key), []byte(got.Headers[i].Key), "header %d key", i)
			requireExactBytes(t, h.Value, got.Headers[i].Value, "header value")
		}
		require.True(t, utf8.ValidString(d.Error) && !strings.Contains(d.Error, "\x00"), "error %q", d.Error)
		require.LessOrEqual(t, len(d.Error), maxErrText+len("..."))
		if d.EventType != nil {
			require.True(t, utf8.ValidString(*d.EventType) && !strings.Contains(*d.EventType, "\x00"))
		}
		if bad == nil {
			require.Equal(t, env.ID, *d.EventID)
			require.Equal(t, env.Type, *d.EventType)
		}
	})
}

// requireExactBytes compares byte slices, telling nil (no value) from empty.
func requireExactBytes(t *testing.T, want, got []byte, what string) {
	t.Helper()
	require.Equal(t, want == nil, got == nil, "%s: want nil %t, got %q", what, want == nil, got)
	require.Equal(t, want, got, what)
}

// When PostgreSQL refuses the whole row (here a constraint standing in for
// any refusal), the dead letter records the message's position and why,
// on its own and inside a handler's transaction, which stays usable;
// redrive leaves such a row alone.
func TestDeadLetter_StoresThePositionWhenTheMessageIsRefused(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `ALTER TABLE pulsebus.dead_letters
		ADD CONSTRAINT test_small_values CHECK (octet_length(message_value) < 10)`)
	require.NoError(t, err)
	w := parkingWorker(t, db)
	w.workCtx = ctx
	big := item{msg: kafka.Message{Topic: "events", Offset: 1, Value: []byte("far too large a value")}}
	big.bad = errors.New("not an envelope")

	require.NoError(t, w.deadLetter(db.Pool, big, big.bad, 0, time.Now()))

	big.msg.Offset = 2
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, w.deadLetter(tx, big, big.bad, 0, time.Now()))
	_, err = tx.Exec(ctx, `SELECT 1`)
	require.NoError(t, err, "the transaction is still usable")
	require.NoError(t, tx.Commit(ctx))

	dls, err := (&Admin{Pool: db.Pool}).ListDeadLetters(ctx, DeadLetterFilter{Group: "g"})
	require.NoError(t, err)
	require.Len(t, dls, 2)
	for i, d := range dls {
		require.False(t, d.MessageStored)
		require.Equal(t, int64(i+1), d.Offset)
		require.Nil(t, d.Value)
		require.Empty(t, d.Headers)
		require.Contains(t, d.Error, "test_small_values")
		require.Contains(t, d.Error, "not an envelope")
	}

	require.NoError(t, w.c.Handle("h", []string{"*"}, HandlerFunc(func(context.Context, envelope.Envelope) error { return nil })))
	res, err := (&Admin{Pool: w.c.cfg.Pool, Consumer: w.c}).Redrive(ctx, DeadLetterFilter{Handler: "h"})
	require.NoError(t, err)
	require.Equal(t, 2, res.Failed)
	require.Contains(t, res.Errors[0], "message itself was not stored")
	after, err := (&Admin{Pool: db.Pool}).ListDeadLetters(ctx, DeadLetterFilter{Group: "g"})
	require.NoError(t, err)
	require.Equal(t, dls, after, "left untouched")
}

// Only refusals for the row's content fall back to storing the position;
// transient failures are retried with the message whole.
func TestRefusedForContent(t *testing.T) {
	t.Parallel()
	for code, want := range map[string]bool{
		"22021": true, "22P05": true, "23514": true, "54000": true,
		"40P01": false, "40001": false, "57P01": false, "57014": false, "53300": false, "08006": false,
	} {
		require.Equal(t, want, refusedForContent(fmt.Errorf("park: %w", &pgconn.PgError{Code: code})), code)
	}
	require.False(t, refusedForContent(io.ErrUnexpectedEOF))
}
