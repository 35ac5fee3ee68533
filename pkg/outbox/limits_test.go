package outbox_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// publishError runs pulsebus.publish with args and returns its PostgreSQL
// error, nil when it accepted the event.
func publishError(t *testing.T, db *testdb.DB, c publishCase) *pgconn.PgError {
	t.Helper()
	meta, err := json.Marshal(c.meta)
	require.NoError(t, err)
	if c.meta == nil {
		meta = []byte("{}")
	}
	var subject any
	if c.subject != "" {
		subject = c.subject
	}
	_, err = db.Pool.Exec(context.Background(), `SELECT pulsebus.publish($1, $2, $3, $4::jsonb, $5::jsonb, $6, $7)`,
		c.topic, c.key, c.typ, c.payload, string(meta), c.source, subject)
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "publish must fail with a PostgreSQL error, not %v", err)
	return pgErr
}

// publishCase is one event, written with pulsebus.publish or, as the same
// envelope, with outbox.InsertTx.
type publishCase struct {
	name    string
	topic   string
	key     string
	typ     string
	source  string
	subject string
	meta    map[string]string
	payload string // JSON text
	// field names what is wrong; "" when the event is valid.
	field string
}

func (c publishCase) envelope(t *testing.T) envelope.Envelope {
	t.Helper()
	id, err := uuid.NewV7()
	require.NoError(t, err)
	return envelope.Envelope{ID: id.String(), Type: c.typ, Source: c.source, Subject: c.subject, Time: time.Now(),
		ContentType: envelope.ContentTypeJSON, Key: c.key, Meta: c.meta, Payload: []byte(c.payload)}
}

// jsonString is a JSON string whose text is exactly n bytes.
func jsonString(n int) string { return `"` + strings.Repeat("p", n-2) + `"` }

// metaEntries returns n meta entries m0, m1, ...
func metaEntries(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("m%d", i)] = "v"
	}
	return m
}

// limitCases are events at and just past every limit, and topics Kafka
// refuses.
func limitCases() []publishCase {
	base := publishCase{topic: "lessons", key: "k", typ: "lesson.published", source: "lesson-service", payload: `{"a":1}`}
	with := func(name, field string, change func(*publishCase)) publishCase {
		c := base
		c.name, c.field = name, field
		change(&c)
		return c
	}
	l := envelope.DefaultLimits()
	// publish always sets content-type: 6 headers before subject and meta.
	metaRoom := l.MaxHeaders - 6
	return []publishCase{
		with("valid", "", func(*publishCase) {}),
		with("topic with a space", "topic", func(c *publishCase) { c.topic = "bad topic!" }),
		with("topic with a slash", "topic", func(c *publishCase) { c.topic = "a/b" }),
		with("topic non-ASCII", "topic", func(c *publishCase) { c.topic = "leçons" }),
		with("topic dot", "topic", func(c *publishCase) { c.topic = "." }),
		with("topic dot dot", "topic", func(c *publishCase) { c.topic = ".." }),
		with("topic of dots and dashes", "", func(c *publishCase) { c.topic = "a.-_..B9" }),
		with("topic 249 bytes", "", func(c *publishCase) { c.topic = strings.Repeat("t", 249) }),
		with("topic 250 bytes", "topic", func(c *publishCase) { c.topic = strings.Repeat("t", 250) }),
		with("topic 300 bytes", "topic", func(c *publishCase) { c.topic = strings.Repeat("t", 300) }),
		with("key at the limit", "", func(c *publishCase) { c.key = strings.Repeat("k", l.MaxKeyBytes) }),
		with("key one byte over", "key", func(c *publishCase) { c.key = strings.Repeat("k", l.MaxKeyBytes+1) }),
		with("key 2000 characters", "key", func(c *publishCase) { c.key = strings.Repeat("é", 1000) }),
		with("type at the limit", "", func(c *publishCase) { c.typ = strings.Repeat("t", l.MaxHeaderValueBytes) }),
		with("type one byte over", "ce_type", func(c *publishCase) { c.typ = strings.Repeat("t", l.MaxHeaderValueBytes+1) }),
		with("source one byte over", "ce_source", func(c *publishCase) { c.source = strings.Repeat("s", l.MaxHeaderValueBytes+1) }),
		with("subject at the limit", "", func(c *publishCase) { c.subject = strings.Repeat("s", l.MaxHeaderValueBytes) }),
		with("subject one byte over", "ce_subject", func(c *publishCase) { c.subject = strings.Repeat("s", l.MaxHeaderValueBytes+1) }),
		with("meta value at the limit", "", func(c *publishCase) { c.meta = map[string]string{"tenant": strings.Repeat("v", l.MaxHeaderValueBytes)} }),
		with("meta value one byte over", "meta.tenant", func(c *publishCase) {
			c.meta = map[string]string{"a": "x", "tenant": strings.Repeat("v", l.MaxHeaderValueBytes+1)}
		}),
		with("meta entries at the limit", "", func(c *publishCase) { c.meta = metaEntries(metaRoom) }),
		with("meta entries one over", "headers", func(c *publishCase) { c.meta = metaEntries(metaRoom + 1) }),
		with("meta entries at the limit with a subject", "headers", func(c *publishCase) { c.meta, c.subject = metaEntries(metaRoom), "s" }),
		with("payload at the limit", "", func(c *publishCase) { c.payload = jsonString(l.MaxPayloadBytes) }),
		with("payload one byte over", "payload", func(c *publishCase) { c.payload = jsonString(l.MaxPayloadBytes + 1) }),
		with("payload 20 MB", "payload", func(c *publishCase) { c.payload = jsonString(20 << 20) }),
	}
}

// pulsebus.publish refuses, at insert, every event the relay could never
// publish: SQLSTATE 22023, the message and the error's column naming the
// field, nothing written.
func TestPublishSQL_RefusesWhatCanNeverBePublished(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	accepted := 0
	for _, c := range limitCases() {
		pgErr := publishError(t, db, c)
		if c.field == "" {
			require.Nil(t, pgErr, "%s: refused: %v", c.name, pgErr)
			accepted++
			continue
		}
		require.NotNil(t, pgErr, "%s: accepted", c.name)
		require.Equal(t, "22023", pgErr.Code, "%s: %s", c.name, pgErr.Message)
		require.Equal(t, c.field, pgErr.ColumnName, "%s: %s", c.name, pgErr.Message)
		require.True(t, strings.HasPrefix(pgErr.Message, "pulsebus.publish: "+c.field+" "), "%s: %q names the field", c.name, pgErr.Message)
		t.Logf("%-28s %s (%s)", c.name, pgErr.Message, pgErr.Detail)
	}
	require.Equal(t, accepted, len(readRows(t, db.Pool)), "only the valid events were written")

	// meta straight from a table column, stored compressed (far smaller
	// than its value): still measured by its value.
	ctx := context.Background()
	_, err := db.Pool.Exec(ctx, `CREATE TABLE compressed_meta AS SELECT jsonb_build_object('tenant', repeat('a', 10000)) AS meta`)
	require.NoError(t, err)
	var stored int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT pg_column_size(meta) FROM compressed_meta`).Scan(&stored))
	require.Less(t, stored, 1000, "the value is stored compressed")
	_, err = db.Pool.Exec(ctx, `SELECT pulsebus.publish('lessons', 'k', 'lesson.published', '{}', meta) FROM compressed_meta`)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr)
	require.Equal(t, "meta.tenant", pgErr.ColumnName, pgErr.Message)
	require.Equal(t, accepted, len(readRows(t, db.Pool)))
}

// outbox.InsertTx and pulsebus.publish accept and refuse the same events,
// at every limit and for every topic rule, and name the same field.
func TestInsertTxAndPublishSQL_AgreeAtTheLimits(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	for _, c := range limitCases() {
		env := c.envelope(t)
		goErr := outbox.InsertTx(ctx, db.Pool, c.topic, env)
		sqlErr := publishError(t, db, c)
		if c.field == "" {
			require.NoError(t, goErr, c.name)
			require.Nil(t, sqlErr, c.name)
			continue
		}
		require.Error(t, goErr, "%s: InsertTx accepted what publish refuses (%v)", c.name, sqlErr)
		require.NotNil(t, sqlErr, "%s: publish accepted what InsertTx refuses (%v)", c.name, goErr)
		if c.field != "topic" {
			require.ErrorIs(t, goErr, envelope.ErrInvalid, c.name)
		}
		require.Equal(t, c.field, refusedField(goErr), "%s: %v", c.name, goErr)
		require.Equal(t, c.field, sqlErr.ColumnName, c.name)
	}
}

// refusedField is the field an InsertTx error names.
func refusedField(err error) string {
	var (
		fe *envelope.FieldError
		le *envelope.LimitError
	)
	switch {
	case errors.Is(err, outbox.ErrInvalidTopic):
		return "topic"
	case errors.As(err, &le):
		return le.Field
	case errors.As(err, &fe):
		return fe.Field
	}
	return ""
}

// The limits live in one place, pulsebus.limits: its values at migration
// are the Go defaults, and raising one there raises it for both producers.
func TestLimits_OneRowForBothProducers(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	ctx := context.Background()
	got, err := outbox.LoadLimits(ctx, db.Pool)
	require.NoError(t, err)
	require.Equal(t, envelope.DefaultLimits(), got, "the schema's limits are envelope.DefaultLimits")

	big := publishCase{name: "950 KiB", topic: "media", typ: "media.uploaded", source: "media", payload: jsonString(950 << 10)}
	require.Equal(t, "payload", publishError(t, db, big).ColumnName)
	var le *envelope.LimitError
	err = outbox.InsertTx(ctx, db.Pool, "media", big.envelope(t))
	require.ErrorAs(t, err, &le)
	require.Equal(t, envelope.LimitError{Field: "payload", Size: 950 << 10, Limit: envelope.DefaultMaxPayloadBytes}, *le)
	require.ErrorContains(t, err, "event 0 of 1")

	_, err = db.Pool.Exec(ctx, `UPDATE pulsebus.limits SET max_payload_bytes = 2000000`)
	require.NoError(t, err)
	require.Nil(t, publishError(t, db, big))
	require.NoError(t, outbox.InsertTx(ctx, db.Pool, "media", big.envelope(t)))
	got, err = outbox.LoadLimits(ctx, db.Pool)
	require.NoError(t, err)
	require.Equal(t, 2000000, got.MaxPayloadBytes)
	require.Len(t, readRows(t, db.Pool), 2)

	// The row cannot go away: without it nothing could be checked.
	_, err = db.Pool.Exec(ctx, `DELETE FROM pulsebus.limits`)
	require.ErrorContains(t, err, "pulsebus.limits keeps its one row: UPDATE it instead")
}
