package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/otel/trace"

	"github.com/edupulse/pulsebus/internal/redact"
	"github.com/edupulse/pulsebus/internal/tracing"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// DefaultTimeout bounds one delivery attempt when Config.Timeout is zero.
const DefaultTimeout = 10 * time.Second

// maxBodySnippet is how many bytes of a failed response's body an error
// quotes.
const maxBodySnippet = 256

// IdempotencyKeyHeader carries the event id, for endpoints that deduplicate
// by this common header rather than by ce-id.
const IdempotencyKeyHeader = "Idempotency-Key"

// Config configures a [Handler].
type Config struct {
	// URL is the endpoint, an absolute http or https URL. Required.
	URL string
	// Timeout bounds one attempt: connecting, sending and reading the
	// answer. Defaults to DefaultTimeout.
	Timeout time.Duration
	// Headers are sent with every request, e.g. Authorization. They may not
	// set the CloudEvents headers (ce-*), Content-Type, Content-Length,
	// Host, Transfer-Encoding or Idempotency-Key. Defaults to none.
	Headers http.Header
	// Transport sends the requests. Defaults to a clone of
	// http.DefaultTransport keeping up to 64 idle connections per host, as
	// the consumer calls the endpoint from one goroutine per handler and
	// partition. Redirects are never followed, whatever the transport.
	Transport http.RoundTripper
}

// Handler POSTs each event to a URL. It is safe for concurrent use.
type Handler struct {
	url     string
	safeURL string
	timeout time.Duration
	headers http.Header
	client  *http.Client
}

var _ dispatch.Handler = (*Handler)(nil)

// New checks cfg and returns the handler. Errors name the Config field.
func New(cfg Config) (*Handler, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case cfg.URL == "":
		return nil, errors.New("webhook: Config.URL is empty")
	case err != nil:
		return nil, fmt.Errorf("webhook: Config.URL is not a URL: %w", unwrapURLError(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("webhook: Config.URL %s: scheme must be http or https", redact.URL(cfg.URL))
	case u.Host == "":
		return nil, fmt.Errorf("webhook: Config.URL %s: no host", redact.URL(cfg.URL))
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("webhook: Config.Timeout %s is negative", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	headers := http.Header{}
	for name, values := range cfg.Headers {
		if err := checkHeader(name, values); err != nil {
			return nil, err
		}
		headers[http.CanonicalHeaderKey(name)] = append([]string(nil), values...)
	}
	tr := cfg.Transport
	if tr == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		tr = t
	}
	return &Handler{
		url:     cfg.URL,
		safeURL: redact.URL(cfg.URL),
		timeout: cfg.Timeout,
		headers: headers,
		client: &http.Client{
			Transport:     tr,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// reservedHeaders are set by the handler itself.
var reservedHeaders = map[string]bool{
	"Content-Type": true, "Content-Length": true, "Host": true, "Transfer-Encoding": true,
	http.CanonicalHeaderKey(IdempotencyKeyHeader): true,
}

func checkHeader(name string, values []string) error {
	if name == "" || strings.IndexFunc(name, func(r rune) bool { return !isTokenChar(r) }) >= 0 {
		return fmt.Errorf("webhook: Config.Headers: %q is not a valid header name", name)
	}
	if reservedHeaders[http.CanonicalHeaderKey(name)] || strings.HasPrefix(strings.ToLower(name), "ce-") {
		return fmt.Errorf("webhook: Config.Headers: %s is set by the handler and cannot be overridden", name)
	}
	for _, v := range values {
		if strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("webhook: Config.Headers: the value of %s contains a line break or NUL", name)
		}
	}
	return nil
}

// isTokenChar reports whether r may appear in an HTTP header name (RFC 9110
// token).
func isTokenChar(r rune) bool {
	if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
		return true
	}
	return strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}

// URL returns the endpoint as scheme://host/..., for logs: the path,
// query, user info and fragment may hold a token (see the package doc).
func (h *Handler) URL() string { return h.safeURL }

// Handle POSTs env and classifies the outcome: nil for 2xx,
// [dispatch.Transient] for what the endpoint coming back will fix (network
// errors, timeouts, 5xx, 408, 429; with the pause a Retry-After header asks
// for) and [dispatch.Permanent] for the rest.
func (h *Handler) Handle(ctx context.Context, env envelope.Envelope) error {
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.url, bytes.NewReader(env.Payload))
	if err != nil {
		return dispatch.Permanent(fmt.Errorf("webhook POST %s: %w", h.safeURL, unwrapURLError(err)))
	}
	for k, v := range h.headers {
		req.Header[k] = v
	}
	setHeaders(req.Header, env)
	setTraceContext(ctx, req.Header, env)
	resp, err := h.client.Do(req)
	if err != nil {
		err = unwrapURLError(err)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("webhook POST %s: %w", h.safeURL, ctx.Err())
		case errors.Is(err, context.DeadlineExceeded):
			return dispatch.Transient(fmt.Errorf("webhook POST %s: no answer within %s", h.safeURL, h.timeout))
		default:
			return dispatch.Transient(fmt.Errorf("webhook POST %s: %w", h.safeURL, err))
		}
	}
	defer func() {
		// Drain a little so the connection can be reused.
		_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
		_ = resp.Body.Close()
	}()
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, maxBodySnippet))
	serr := &StatusError{
		URL:        h.safeURL,
		StatusCode: resp.StatusCode,
		Status:     resp.Status,
		Body:       cleanSnippet(snippet),
		RetryAfter: resp.Header.Get("Retry-After"),
		Location:   redact.URL(resp.Header.Get("Location")),
	}
	if retryableStatus(resp.StatusCode) {
		return dispatch.TransientAfter(serr, ParseRetryAfter(serr.RetryAfter, time.Now()))
	}
	return dispatch.Permanent(serr)
}

// setHeaders writes the CloudEvents binary-mode headers of env into hdr:
// exactly the attributes the event carries, with the values it carries
// (the id as the producer wrote it; no time when it had none; the Kafka key
// only as the partitionkey extension when the producer set that).
func setHeaders(hdr http.Header, env envelope.Envelope) {
	set := func(name, value string) { hdr.Set(name, encodeHeaderValue(value)) }
	set("ce-specversion", envelope.SpecVersion)
	set("ce-id", env.ID)
	set("ce-type", env.Type)
	set("ce-source", env.Source)
	if !env.Time.IsZero() {
		set("ce-time", envelope.FormatTime(env.Time))
	}
	if env.Subject != "" {
		set("ce-subject", env.Subject)
	}
	if env.DataSchema != "" {
		set("ce-dataschema", env.DataSchema)
	}
	for k, v := range env.Meta {
		set("ce-"+k, v) // keys are valid extension names (envelope.ValidMetaKey)
	}
	if env.ContentType != "" {
		hdr.Set("Content-Type", env.ContentType)
	}
	hdr.Set(IdempotencyKeyHeader, encodeHeaderValue(env.ID))
	if hdr.Get("User-Agent") == "" {
		hdr.Set("User-Agent", "pulsebus-webhook")
	}
}

// setTraceContext sets the W3C traceparent (and tracestate) header: the
// span context in ctx (the consumer's handler span; with tracing off, the
// event's own context unchanged, as the consumer then carries it), else
// the event's traceparent extension as it came.
func setTraceContext(ctx context.Context, hdr http.Header, env envelope.Envelope) {
	if trace.SpanContextFromContext(ctx).IsValid() {
		tracing.InjectHeaders(ctx, hdr.Set)
		return
	}
	if tp := env.Meta[tracing.TraceParent]; tp != "" {
		hdr.Set(tracing.TraceParent, tp)
		if ts := env.Meta[tracing.TraceState]; ts != "" {
			hdr.Set(tracing.TraceState, ts)
		}
	}
}

// encodeHeaderValue percent-encodes s as the CloudEvents HTTP binding
// requires for header values: space, '"', '%' and every byte outside
// printable ASCII (U+0021-U+007E) become %XY with upper-case hex.
func encodeHeaderValue(s string) string {
	const hex = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEscape(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEscape(c) {
			b = append(b, '%', hex[c>>4], hex[c&15])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

func mustEscape(c byte) bool { return c < 0x21 || c > 0x7e || c == '"' || c == '%' }

// retryableStatus reports whether an HTTP status is worth a retry: 408,
// 429 and 5xx.
func retryableStatus(code int) bool {
	return code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || (code >= 500 && code <= 599)
}

// MaxRetryAfter caps the pause a Retry-After header can ask for, so a
// misconfigured endpoint cannot hold a handler for hours; the handler's
// RetryPolicy.RetryFor still bounds the whole outage.
const MaxRetryAfter = 5 * time.Minute

// ParseRetryAfter returns the pause a Retry-After header value asks for
// (RFC 9110: delay seconds or an HTTP date, relative to now), at most
// MaxRetryAfter; 0 for an empty, invalid or past value.
func ParseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		if secs >= int64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), MaxRetryAfter)
}

// StatusError is a non-2xx answer. Retryable ones are wrapped in
// [dispatch.TransientAfter] (with the Retry-After pause), the others in
// [dispatch.Permanent]; use errors.As.
type StatusError struct {
	// URL is the endpoint as scheme://host/... (see [Handler.URL]).
	URL string
	// StatusCode and Status are the answer's, e.g. 503 and
	// "503 Service Unavailable".
	StatusCode int
	Status     string
	// Body is the start of the answer's body (256 bytes at most),
	// as valid UTF-8 without control characters.
	Body string
	// RetryAfter is the answer's Retry-After header, if any. For a
	// retryable status the consumer waits at least that long
	// ([ParseRetryAfter]) before the next attempt.
	RetryAfter string
	// Location is a redirect's target as scheme://host/..., like URL.
	Location string
}

// Error names the status, any Retry-After or Location and quotes the body.
func (e *StatusError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "webhook POST %s: HTTP %s", e.URL, e.Status)
	if e.RetryAfter != "" {
		fmt.Fprintf(&b, " (Retry-After %q)", e.RetryAfter)
	}
	if e.Location != "" {
		fmt.Fprintf(&b, " (redirect to %s; redirects are not followed, configure the final URL)", e.Location)
	}
	if e.Body != "" {
		fmt.Fprintf(&b, ": %q", e.Body)
	}
	return b.String()
}

// Retryable reports whether the status is worth a retry: 408, 429 and 5xx.
func (e *StatusError) Retryable() bool { return retryableStatus(e.StatusCode) }

func cleanSnippet(b []byte) string {
	truncated := len(b) == maxBodySnippet
	if truncated {
		// Do not cut a UTF-8 sequence in two.
		for i := 0; i < utf8.UTFMax && len(b) > 0 && !utf8.Valid(b); i++ {
			b = b[:len(b)-1]
		}
	}
	s := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(string(b), "\uFFFD"))
	s = strings.TrimSpace(s)
	if truncated {
		s += "..."
	}
	return s
}

// unwrapURLError drops the *url.Error wrapper, whose text repeats the full
// URL, query and all.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
