package outbox

import (
	"context"
	"strconv"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

const oldInsertRowsSQL = `
WITH inserted AS (
	INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload)
	SELECT e.event_id, $1, e.key, e.type, e.source, e.subject, e.event_time, e.content_type, e.meta::jsonb, e.payload
	  FROM unnest($2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::timestamptz[], $8::text[], $9::text[], $10::bytea[])
	       WITH ORDINALITY AS e(event_id, key, type, source, subject, event_time, content_type, meta, payload, ord)
	 ORDER BY e.ord
)
`

func InsertOldForTest(ctx context.Context, tx Executor, topic string, envs ...envelope.Envelope) error {
	return defaultProducer.insert(ctx, tx, oldInsertRowsSQL+`SELECT pg_notify('`+NotifyChannel+`', '') WHERE pg_try_advisory_xact_lock(`+strconv.FormatInt(NotifyLockKey, 10)+`)`, topic, envs)
}
