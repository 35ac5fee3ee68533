package webhook_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/dispatch/webhook"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// received is one request as the endpoint saw it.
type received struct {
	method string
	path   string
	header http.Header
	body   []byte
}

// endpoint is an httptest server recording requests and answering with
// respond (200 when nil).
type endpoint struct {
	*httptest.Server
	mu      sync.Mutex
	got     []received
	respond func(w http.ResponseWriter, r *http.Request)
}

func newEndpoint(t *testing.T, respond func(w http.ResponseWriter, r *http.Request)) *endpoint {
	t.Helper()
	e := &endpoint{respond: respond}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e.mu.Lock()
		e.got = append(e.got, received{method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body})
		e.mu.Unlock()
		if e.respond != nil {
			e.respond(w, r)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *endpoint) requests() []received {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]received(nil), e.got...)
}

func newHandler(t *testing.T, cfg webhook.Config) *webhook.Handler {
	t.Helper()
	h, err := webhook.New(cfg)
	require.NoError(t, err)
	return h
}

func testEnvelope() envelope.Envelope {
	return envelope.Envelope{
		ID:          uuid.MustParse("0195f3c2-7a0e-7c4b-9d7e-2b1f0c9a6e11").String(),
		Type:        "lesson.published",
		Source:      "lessons-api",
		Subject:     "lessons/42",
		Key:         "lesson 42",
		Time:        time.Date(2025, 3, 1, 12, 0, 0, 123456000, time.UTC),
		ContentType: "application/json; charset=utf-8",
		Meta:        map[string]string{"tenant": "école \"A\" 100%", "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
		Payload:     []byte(`{"lesson_id":"42","title":"Fractions"}`),
	}
}

// The request is a CloudEvent in binary mode, with percent-encoded values,
// the payload as the body and the configured extra headers.
func TestHandler_BinaryModeRequest(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	h := newHandler(t, webhook.Config{URL: ep.URL + "/hooks/search",
		Headers: http.Header{"Authorization": {"Bearer s3cret"}, "x-team": {"search"}}})
	env := testEnvelope()
	require.NoError(t, h.Handle(context.Background(), env))

	reqs := ep.requests()
	require.Len(t, reqs, 1)
	r := reqs[0]
	require.Equal(t, http.MethodPost, r.method)
	require.Equal(t, "/hooks/search", r.path)
	require.Equal(t, env.Payload, r.body)
	want := map[string]string{
		"ce-specversion":  "1.0",
		"ce-id":           "0195f3c2-7a0e-7c4b-9d7e-2b1f0c9a6e11",
		"ce-type":         "lesson.published",
		"ce-source":       "lessons-api",
		"ce-time":         "2025-03-01T12:00:00.123456Z",
		"ce-subject":      "lessons/42",
		"ce-tenant":       "%C3%A9cole%20%22A%22%20100%25",
		"ce-traceparent":  "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"Content-Type":    "application/json; charset=utf-8",
		"Idempotency-Key": "0195f3c2-7a0e-7c4b-9d7e-2b1f0c9a6e11",
		"Authorization":   "Bearer s3cret",
		"X-Team":          "search",
	}
	for k, v := range want {
		require.Equal(t, []string{v}, r.header.Values(k), "header %s", k)
	}
	require.Empty(t, r.header.Values("ce-datacontenttype"), "binary mode carries the content type in Content-Type only")
	require.Empty(t, r.header.Values("ce-partitionkey"), "the Kafka key is not an attribute the producer set")
	// The receiver's single round of percent-decoding restores the value.
	dec, err := url.PathUnescape(r.header.Get("ce-tenant"))
	require.NoError(t, err)
	require.Equal(t, env.Meta["tenant"], dec)
}

func TestHandler_OptionalAttributesOmitted(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	h := newHandler(t, webhook.Config{URL: ep.URL})
	env := testEnvelope()
	env.Subject, env.Key, env.Meta = "", "", nil
	require.NoError(t, h.Handle(context.Background(), env))
	r := ep.requests()[0]
	for k := range r.header {
		if strings.HasPrefix(strings.ToLower(k), "ce-") {
			require.Contains(t, []string{"Ce-Specversion", "Ce-Id", "Ce-Type", "Ce-Source", "Ce-Time"}, k)
		}
	}
}

// What reaches the endpoint is what the producer sent: an upper-case or
// non-UUID id unchanged (also as Idempotency-Key), no ce-time for an event
// without a time, ce-dataschema when set, and ce-partitionkey only when the
// producer set that extension.
func TestHandler_ChangesNothingInTransit(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	h := newHandler(t, webhook.Config{URL: ep.URL})
	for _, id := range []string{"0195F3C2-7A0E-7C4B-9D7E-2B1F0C9A6E11", "order-1005/created#1"} {
		env := envelope.Envelope{ID: id, Type: "order.created", Source: "/orders", Key: "order-1005",
			DataSchema: "https://schemas.example/order.json", Payload: []byte("{}")}
		require.NoError(t, h.Handle(context.Background(), env))
	}
	withKey := envelope.Envelope{ID: "k-1", Type: "order.created", Source: "/orders", Key: "order-1005",
		Meta: map[string]string{"partitionkey": "order-1005"}, Payload: []byte("{}")}
	require.NoError(t, h.Handle(context.Background(), withKey))

	reqs := ep.requests()
	require.Len(t, reqs, 3)
	require.Equal(t, "0195F3C2-7A0E-7C4B-9D7E-2B1F0C9A6E11", reqs[0].header.Get("ce-id"))
	require.Equal(t, "0195F3C2-7A0E-7C4B-9D7E-2B1F0C9A6E11", reqs[0].header.Get("Idempotency-Key"))
	require.Equal(t, "order-1005/created#1", reqs[1].header.Get("ce-id"))
	require.Equal(t, "order-1005/created#1", reqs[1].header.Get("Idempotency-Key"))
	for _, r := range reqs[:2] {
		require.Empty(t, r.header.Values("ce-time"))
		require.Empty(t, r.header.Values("ce-partitionkey"))
		require.Equal(t, "https://schemas.example/order.json", r.header.Get("ce-dataschema"))
	}
	require.Equal(t, "order-1005", reqs[2].header.Get("ce-partitionkey"))
}

func TestHandler_StatusClassification(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status     int
		body       string
		retryAfter string
		wantErr    bool
		permanent  bool
		wantInErr  []string
	}{
		{status: 200},
		{status: 202},
		{status: 204},
		{status: 500, body: "boom", wantErr: true, wantInErr: []string{"500 Internal Server Error", `"boom"`}},
		{status: 502, wantErr: true, wantInErr: []string{"502"}},
		{status: 503, retryAfter: "7", wantErr: true, wantInErr: []string{"503", `Retry-After "7"`}},
		{status: 408, wantErr: true, wantInErr: []string{"408 Request Timeout"}},
		{status: 429, retryAfter: "Wed, 21 Oct 2015 07:28:00 GMT", wantErr: true, wantInErr: []string{"429 Too Many Requests", "Retry-After"}},
		{status: 400, body: `{"error":"title is required"}`, wantErr: true, permanent: true,
			wantInErr: []string{"400 Bad Request", `title is required`}},
		{status: 401, wantErr: true, permanent: true, wantInErr: []string{"401 Unauthorized"}},
		{status: 404, body: "no such hook\n", wantErr: true, permanent: true, wantInErr: []string{"404 Not Found", `"no such hook"`}},
		{status: 410, wantErr: true, permanent: true, wantInErr: []string{"410"}},
		{status: 422, wantErr: true, permanent: true, wantInErr: []string{"422"}},
	}
	for _, tc := range tests {
		t.Run(http.StatusText(tc.status), func(t *testing.T) {
			t.Parallel()
			ep := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request) {
				if tc.retryAfter != "" {
					w.Header().Set("Retry-After", tc.retryAfter)
				}
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, tc.body)
			})
			h := newHandler(t, webhook.Config{URL: ep.URL})
			err := h.Handle(context.Background(), testEnvelope())
			if !tc.wantErr {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Equal(t, tc.permanent, dispatch.IsPermanent(err), "permanent? %v", err)
			require.Equal(t, !tc.permanent, dispatch.IsTransient(err), "transient? %v", err)
			var te interface{ RetryAfter() time.Duration }
			if tc.status == 503 {
				require.ErrorAs(t, err, &te)
				require.Equal(t, 7*time.Second, te.RetryAfter(), "Retry-After honoured")
			}
			var se *webhook.StatusError
			require.ErrorAs(t, err, &se)
			require.Equal(t, tc.status, se.StatusCode)
			require.Equal(t, !tc.permanent, se.Retryable())
			require.Equal(t, tc.retryAfter, se.RetryAfter)
			for _, s := range tc.wantInErr {
				require.Contains(t, err.Error(), s)
			}
		})
	}
}

// A redirect is not followed (a POST would turn into a GET and lose its
// body); it is permanent and names the target.
func TestHandler_RedirectNotFollowed(t *testing.T) {
	t.Parallel()
	target := newEndpoint(t, nil)
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/new/T0123/s3cr3t?sig=abc", http.StatusFound)
	})
	h := newHandler(t, webhook.Config{URL: ep.URL})
	err := h.Handle(context.Background(), testEnvelope())
	require.True(t, dispatch.IsPermanent(err), "%v", err)
	require.Contains(t, err.Error(), "302 Found")
	require.Contains(t, err.Error(), "redirect to "+target.URL+"/...")
	require.NotContains(t, err.Error(), "sig=abc")
	require.NotContains(t, err.Error(), "s3cr3t")
	require.Empty(t, target.requests())
}

func TestHandler_LongBodyIsCut(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, strings.Repeat("é", 10000)) // 2 bytes each: the cut falls inside one
	})
	err := newHandler(t, webhook.Config{URL: ep.URL}).Handle(context.Background(), testEnvelope())
	var se *webhook.StatusError
	require.ErrorAs(t, err, &se)
	require.Equal(t, strings.Repeat("é", webhook.MaxBodySnippet/2)+"...", se.Body)
	require.Less(t, len(err.Error()), 1000)
}

// A slow endpoint times out as a retryable error after Config.Timeout.
func TestHandler_Timeout(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) })
	h := newHandler(t, webhook.Config{URL: ep.URL, Timeout: 150 * time.Millisecond})
	start := time.Now()
	err := h.Handle(context.Background(), testEnvelope())
	require.Error(t, err)
	require.False(t, dispatch.IsPermanent(err))
	require.Contains(t, err.Error(), "no answer within 150ms")
	require.True(t, dispatch.IsTransient(err), "%v", err)
	require.Less(t, time.Since(start), 5*time.Second)
}

// The consumer's context ending (drain timeout) stops the request; the
// error is not permanent, so the event is not dead-lettered for it.
func TestHandler_ContextCancelled(t *testing.T) {
	t.Parallel()
	arrived := make(chan struct{})
	ep := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done()
	})
	h := newHandler(t, webhook.Config{URL: ep.URL})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-arrived; cancel() }()
	err := h.Handle(ctx, testEnvelope())
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, dispatch.IsPermanent(err))
}

// Nothing listening: a retryable network error, and the URL's credentials
// stay out of the message: user info, query, fragment and the path, where
// services such as Slack put the token (/services/T.../B.../secret).
func TestHandler_NetworkErrorRedactsURL(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	addr := ep.Listener.Addr().String()
	ep.Close()
	h := newHandler(t, webhook.Config{URL: "http://bob:hunter2@" + addr + "/services/T0001/B0002/p4thT0ken?token=tok3n#frag"})
	require.Equal(t, "http://"+addr+"/...", h.URL())
	err := h.Handle(context.Background(), testEnvelope())
	require.Error(t, err)
	require.False(t, dispatch.IsPermanent(err))
	require.True(t, dispatch.IsTransient(err), "%v", err)
	for _, secret := range []string{"hunter2", "tok3n", "bob", "frag", "p4thT0ken", "T0001", "services"} {
		require.NotContains(t, err.Error(), secret)
	}
	require.Contains(t, err.Error(), "http://"+addr+"/...")
}

func TestNew_ConfigErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cfg  webhook.Config
		want string
	}{
		{webhook.Config{}, "Config.URL is empty"},
		{webhook.Config{URL: "ftp://host/x"}, "scheme must be http or https"},
		{webhook.Config{URL: "/relative"}, "scheme must be http or https"},
		{webhook.Config{URL: "http:///path"}, "no host"},
		{webhook.Config{URL: "http://h:pw@[::1"}, "Config.URL is not a URL"},
		{webhook.Config{URL: "http://h", Timeout: -time.Second}, "Config.Timeout -1s is negative"},
		{webhook.Config{URL: "http://h", Headers: http.Header{"ce-id": {"x"}}}, "ce-id is set by the handler"},
		{webhook.Config{URL: "http://h", Headers: http.Header{"Content-Type": {"x"}}}, "Content-Type is set by the handler"},
		{webhook.Config{URL: "http://h", Headers: http.Header{"idempotency-key": {"x"}}}, "idempotency-key is set by the handler"},
		{webhook.Config{URL: "http://h", Headers: http.Header{"Bad Name": {"x"}}}, `"Bad Name" is not a valid header name`},
		{webhook.Config{URL: "http://h", Headers: http.Header{"X-A": {"a\r\nX-B: b"}}}, "X-A contains a line break"},
	}
	for _, tc := range tests {
		_, err := webhook.New(tc.cfg)
		require.ErrorContains(t, err, tc.want, "config %+v", tc.cfg)
		require.NotContains(t, err.Error(), ":pw@")
	}
}

func TestEncodeHeaderValue(t *testing.T) {
	t.Parallel()
	// The binding's own example.
	require.Equal(t, "Euro%20%E2%82%AC%20%F0%9F%98%80", webhook.EncodeHeaderValue("Euro € 😀"))
	require.Equal(t, "plain-ASCII_value/1:2", webhook.EncodeHeaderValue("plain-ASCII_value/1:2"))
	require.Equal(t, "%22q%22%25%09%7F", webhook.EncodeHeaderValue("\"q\"%\t\x7f"))
}

func TestRetryableStatus(t *testing.T) {
	t.Parallel()
	for code := 100; code < 600; code++ {
		want := code == 408 || code == 429 || code >= 500
		require.Equal(t, want, webhook.RetryableStatus(code), "status %d", code)
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"7":                             7 * time.Second,
		" 120 ":                         2 * time.Minute,
		"0":                             0,
		"-3":                            0,
		"86400":                         webhook.MaxRetryAfter,
		"99999999999999999999":          0, // overflows int64: ignored
		"soon":                          0,
		"Fri, 04 Dec 2026 12:00:30 GMT": 30 * time.Second,
		"Fri, 04 Dec 2026 11:00:00 GMT": 0,
		"Sat, 05 Dec 2026 12:00:00 GMT": webhook.MaxRetryAfter,
	} {
		require.Equal(t, want, webhook.ParseRetryAfter(v, now), "Retry-After %q", v)
	}
}

// The W3C traceparent header: an event's own trace context passes on
// unchanged when no span is in the context (tracing off); a span in the
// context (the consumer's handler span) goes instead.
func TestHandler_TraceContext(t *testing.T) {
	t.Parallel()
	ep := newEndpoint(t, nil)
	h := newHandler(t, webhook.Config{URL: ep.URL})
	const eventTP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	env := envelope.Envelope{ID: "t-1", Type: "x.y", Source: "s",
		Meta: map[string]string{"traceparent": eventTP, "tracestate": "vendor=1"}, Payload: []byte("{}")}
	require.NoError(t, h.Handle(context.Background(), env))

	traceID, _ := trace.TraceIDFromHex("0af7651916cd43dd8448eb211c80319c")
	spanID, _ := trace.SpanIDFromHex("b7ad6b7169203331")
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled})
	env.ID = "t-2"
	require.NoError(t, h.Handle(trace.ContextWithSpanContext(context.Background(), sc), env))

	reqs := ep.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, eventTP, reqs[0].header.Get("traceparent"))
	require.Equal(t, "vendor=1", reqs[0].header.Get("tracestate"))
	require.Equal(t, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", reqs[1].header.Get("traceparent"))
	require.Equal(t, eventTP, reqs[1].header.Get("ce-traceparent"), "the event's own extension is unchanged")
}
