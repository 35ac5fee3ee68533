package console_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/console"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
)

// BenchmarkOverview measures the server time of the overview page (the
// page that refreshes itself every 5 s) on a large installation: 100,000
// waiting rows over 20 topics, 10,000 dead letters and 50 handler ×
// partition offsets (10 handlers on a 5-partition topic), with high
// watermarks from Kafka (kfake).
func BenchmarkOverview(b *testing.B) {
	db := testdb.New(b)
	kc := testkafka.New(b)
	const topic = "edupulse.events"
	kc.CreateTopic(b, topic, 5)
	ctx := context.Background()
	for _, q := range []string{
		`INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, event_time, payload, attempts, last_error)
		 SELECT gen_random_uuid(), 'topic-' || (i % 20), 'k' || i, 'lesson.published', 'bench', now(),
		        convert_to('{"lesson":"' || i || '"}', 'UTF8'), CASE WHEN i <= 20 THEN 3 ELSE 0 END,
		        CASE WHEN i <= 20 THEN 'kafka: not leader for partition' END
		   FROM generate_series(1, 100000) i`,
		`INSERT INTO pulsebus.dead_letters (group_id, handler, topic, partition, kafka_offset, event_type, message_headers,
		        message_value, error, attempts, first_failed_at, last_failed_at)
		 SELECT 'svc', 'handler-' || (i % 10), '` + topic + `', i % 5, i, 'lesson.published', '[]',
		        convert_to('{"n":' || i || '}', 'UTF8'), 'webhook answered 500', 5, now(), now()
		   FROM generate_series(1, 10000) i`,
		`INSERT INTO pulsebus.handler_offsets (group_id, handler, topic, partition, next_offset)
		 SELECT 'svc', 'handler-' || h, '` + topic + `', p, 0 FROM generate_series(0, 9) h, generate_series(0, 4) p`,
		`INSERT INTO pulsebus.outbox_parked (id, event_id, topic, key, type, source, subject, event_time, content_type, meta,
		        payload, created_at, attempts, error)
		 SELECT i, gen_random_uuid(), 'topic-1', 'k', 't', 's', '', now(), 'application/json', '{}', '\x7b7d', now(), 1, 'too large'
		   FROM generate_series(1, 500) i`,
		`ANALYZE pulsebus.outbox, pulsebus.dead_letters, pulsebus.handler_offsets, pulsebus.outbox_parked`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	transport := &kafka.Transport{}
	b.Cleanup(transport.CloseIdleConnections)
	s, err := console.New(console.Config{
		Settings: console.Settings{Addr: ":0", Token: testToken},
		Data:     console.NewData(db.Pool),
		Kafka:    &kafka.Client{Addr: kafka.TCP(kc.Addrs...), Transport: transport, Timeout: 5 * time.Second},
	})
	if err != nil {
		b.Fatal(err)
	}
	get := func() string {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("overview: HTTP %d: %s", rec.Code, rec.Body)
		}
		return rec.Body.String()
	}
	body := get()
	for _, want := range []string{`10000&#43; \(about 1\d{5}\)`, `>10000<`, "kafka: not leader for partition", "handler-9"} {
		if !regexp.MustCompile(want).MatchString(body) {
			b.Fatalf("the overview does not show %s:\n%s", want, body)
		}
	}
	b.ResetTimer()
	for b.Loop() {
		get()
	}
}
