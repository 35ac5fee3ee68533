package e2e_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/edupulse/pulsebus/internal/testing/procharness"
	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/envelope"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// otlpReceiver is an OTLP/HTTP trace endpoint: it keeps every span the
// binaries export.
type otlpReceiver struct {
	mu    sync.Mutex
	spans []*tracepb.Span
}

func (o *otlpReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = zr
	}
	raw, err := io.ReadAll(body)
	if err != nil || r.URL.Path != "/v1/traces" {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	var req collectortrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(raw, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	o.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			o.spans = append(o.spans, ss.Spans...)
		}
	}
	o.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	out, _ := proto.Marshal(&collectortrace.ExportTraceServiceResponse{})
	_, _ = w.Write(out)
}

// span returns the first exported span named name whose trace is traceID.
func (o *otlpReceiver) span(name string, traceID trace.TraceID) *tracepb.Span {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, s := range o.spans {
		if s.Name == name && bytes.Equal(s.TraceId, traceID[:]) {
			return s
		}
	}
	return nil
}

// One trace from the producer's request to the handler, through the real
// binaries: a producer span around InsertTx; the relay's publish span
// linked to it; the consumer's handler span its child; the webhook request
// carrying the trace in its traceparent header. The binaries export over
// OTLP/HTTP to a receiver in the test, configured only by OTEL_* variables.
func TestEndToEnd_OneTraceFromProducerToWebhook(t *testing.T) {
	db := testdb.New(t)
	kc := testkafka.New(t)
	const topic = "lessons"
	kc.CreateTopic(t, topic, 2)

	otlp := &otlpReceiver{}
	otlpSrv := httptest.NewServer(otlp)
	t.Cleanup(otlpSrv.Close)
	var hookMu sync.Mutex
	hookHeaders := map[string]http.Header{} // ce-id → headers
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hookMu.Lock()
		hookHeaders[r.Header.Get("ce-id")] = r.Header.Clone()
		hookMu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(hook.Close)

	otel := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlpSrv.URL, "OTEL_BSP_SCHEDULE_DELAY=100"}
	common := append([]string{"DATABASE_URL=" + db.URL, "KAFKA_BROKERS=" + strings.Join(kc.Addrs, ","), "LOG_FORMAT=json"}, otel...)
	relayAddr, consumerAddr := procharness.FreeAddr(t), procharness.FreeAddr(t)
	relay := procharness.Start(t, procharness.Build(t, "github.com/edupulse/pulsebus/cmd/relay"), procharness.Options{
		Name: "relay", HTTPAddr: relayAddr, Args: []string{"run"},
		Env: append([]string{"METRICS_ADDR=" + relayAddr, "RELAY_POLL_INTERVAL=200ms", "OTEL_SERVICE_NAME=relay-under-test"}, common...)})
	consumer := procharness.Start(t, procharness.Build(t, "github.com/edupulse/pulsebus/cmd/consumer"), procharness.Options{
		Name: "consumer", HTTPAddr: consumerAddr, Args: []string{"run"},
		Env: append([]string{"METRICS_ADDR=" + consumerAddr, "CONSUMER_GROUP=traced", "CONSUMER_TOPICS=" + topic,
			"CONSUMER_HANDLERS=name=hook,types=*,webhook=" + hook.URL + "/events"}, common...)})
	require.NoError(t, relay.WaitHTTP("/readyz", 30*time.Second))
	require.NoError(t, consumer.WaitHTTP("/readyz", 30*time.Second))

	// The producer: an API request's span, and the event inserted in its
	// transaction under it.
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	ctx, reqSpan := tp.Tracer("api").Start(context.Background(), "POST /lessons", trace.WithSpanKind(trace.SpanKindServer))
	env, err := envelope.New("lessons-api", lessonEvent{ID: "l-1"}, envelope.WithKey("course-1"))
	require.NoError(t, err)
	require.NoError(t, pgx.BeginFunc(ctx, db.Pool, func(tx pgx.Tx) error { return outbox.InsertTx(ctx, tx, topic, env) }))
	reqSpan.End()
	producer := reqSpan.SpanContext()

	var hdr http.Header
	testpoll.Until(t, 30*time.Second, 20*time.Millisecond, "the webhook called", func() bool {
		hookMu.Lock()
		defer hookMu.Unlock()
		hdr = hookHeaders[env.ID]
		return hdr != nil
	})
	tp0 := hdr.Get("traceparent")
	require.True(t, strings.HasPrefix(tp0, "00-"+producer.TraceID().String()+"-"), "the webhook's traceparent %q carries the producer's trace %s", tp0, producer.TraceID())
	require.Equal(t, "00-"+producer.TraceID().String()+"-"+producer.SpanID().String()+"-01", hdr.Get("ce-traceparent"),
		"the event's own trace context, as InsertTx wrote it")

	var publish, process *tracepb.Span
	testpoll.Until(t, 30*time.Second, 50*time.Millisecond, "the relay's and the consumer's spans exported", func() bool {
		publish, process = otlp.span("publish "+topic, producer.TraceID()), otlp.span("process "+topic, producer.TraceID())
		if publish == nil {
			// The publish span has a trace of its own, linked to the producer's.
			otlp.mu.Lock()
			for _, s := range otlp.spans {
				for _, l := range s.Links {
					if s.Name == "publish "+topic && bytes.Equal(l.TraceId, traceBytes(producer.TraceID())) {
						publish = s
					}
				}
			}
			otlp.mu.Unlock()
		}
		return publish != nil && process != nil
	})
	require.Equal(t, tracepb.Span_SPAN_KIND_PRODUCER, publish.Kind)
	linked := false
	for _, l := range publish.Links {
		linked = linked || (bytes.Equal(l.TraceId, traceBytes(producer.TraceID())) && bytes.Equal(l.SpanId, spanBytes(producer.SpanID())))
	}
	require.True(t, linked, "the publish span links to the event's context")

	require.Equal(t, tracepb.Span_SPAN_KIND_CONSUMER, process.Kind)
	require.Equal(t, hex.EncodeToString(spanBytes(producer.SpanID())), hex.EncodeToString(process.ParentSpanId),
		"the handler span is a child of the event's context")
	require.Equal(t, "00-"+producer.TraceID().String()+"-"+hex.EncodeToString(process.SpanId)+"-01", tp0,
		"with tracing on, the webhook gets the handler span's context")
	attrs := map[string]string{}
	for _, kv := range process.Attributes {
		attrs[kv.Key] = kv.Value.String()
	}
	for _, k := range []string{"messaging.system", "messaging.destination.name", "messaging.destination.partition.id",
		"messaging.kafka.offset", "messaging.consumer.group.name", "messaging.message.id", "cloudevents.event_type"} {
		require.Contains(t, attrs, k)
	}
	require.Contains(t, attrs["messaging.consumer.group.name"], "traced")
	require.Contains(t, attrs["messaging.message.id"], env.ID)
}

type lessonEvent struct {
	ID string `json:"id"`
}

func (lessonEvent) EventType() string { return "lesson.published" }

func traceBytes(id trace.TraceID) []byte { return id[:] }
func spanBytes(id trace.SpanID) []byte   { return id[:] }
