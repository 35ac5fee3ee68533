package envelope_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

type lessonPublished struct {
	LessonID string `json:"lesson_id"`
	Title    string `json:"title"`
}

func (lessonPublished) EventType() string { return "lesson.published" }

type quizSubmitted struct {
	QuizID string  `json:"quiz_id"`
	Score  float64 `json:"score"`
}

func (quizSubmitted) EventType() string { return "quiz.submitted" }

var (
	fixedID   = "01936f3e-7c00-7abc-8def-0123456789ab"
	fixedTime = time.Date(2026, 11, 25, 6, 30, 0, 123456000, time.UTC)
)

// fullEnvelope builds an envelope that uses every attribute.
func fullEnvelope(t testing.TB) envelope.Envelope {
	t.Helper()
	env, err := envelope.New("lesson-service", lessonPublished{LessonID: "l-1", Title: "Fractions"},
		envelope.WithID(fixedID),
		envelope.WithTime(fixedTime),
		envelope.WithKey("course-42"),
		envelope.WithSubject("lessons/l-1"),
		envelope.WithMeta("tenant", "acme"),
		envelope.WithMeta("correlationid", "c-123"),
		envelope.WithMeta("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
	)
	require.NoError(t, err)
	return env
}

// validMessage is the Kafka message of fullEnvelope.
func validMessage(t testing.TB) kafka.Message {
	t.Helper()
	msg, err := envelope.ToMessage(fullEnvelope(t))
	require.NoError(t, err)
	return msg
}

func TestToMessage_FromMessage_RoundTripsEveryHeader(t *testing.T) {
	t.Parallel()
	env := fullEnvelope(t)
	msg, err := envelope.ToMessage(env)
	require.NoError(t, err)

	require.Empty(t, msg.Topic, "the caller sets the topic")
	require.Equal(t, []byte("course-42"), msg.Key)
	require.JSONEq(t, `{"lesson_id":"l-1","title":"Fractions"}`, string(msg.Value))
	got := make([][2]string, len(msg.Headers))
	for i, h := range msg.Headers {
		got[i] = [2]string{h.Key, string(h.Value)}
	}
	require.Equal(t, [][2]string{
		{"ce_specversion", "1.0"},
		{"ce_id", "01936f3e-7c00-7abc-8def-0123456789ab"},
		{"ce_type", "lesson.published"},
		{"ce_source", "lesson-service"},
		{"ce_time", "2026-11-25T06:30:00.123456Z"},
		{"ce_subject", "lessons/l-1"},
		{"content-type", "application/json"},
		{"ce_correlationid", "c-123"},
		{"ce_tenant", "acme"},
		{"ce_traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
	}, got, "headers in documented order, meta sorted by key")

	back, err := envelope.FromMessage(msg)
	require.NoError(t, err)
	require.Equal(t, env, back)
}

func TestToMessage_OmitsOptionalHeaders(t *testing.T) {
	t.Parallel()
	env := envelope.Envelope{ID: fixedID, Type: "t", Source: "s", Time: fixedTime}
	msg, err := envelope.ToMessage(env)
	require.NoError(t, err)
	require.Nil(t, msg.Key, "no key means a nil Kafka key")
	var names []string
	for _, h := range msg.Headers {
		names = append(names, h.Key)
	}
	require.Equal(t, []string{"ce_specversion", "ce_id", "ce_type", "ce_source", "ce_time"}, names)
	back, err := envelope.FromMessage(msg)
	require.NoError(t, err)
	require.Equal(t, env, back)
}

func TestFromMessage_ToleratesForeignProducers(t *testing.T) {
	t.Parallel()
	msg := kafka.Message{
		Key:   []byte("k"),
		Value: []byte(`{}`),
		Headers: []kafka.Header{
			{Key: "traceparent-not-ce", Value: []byte{0xff}}, // not ours: ignored, even if not UTF-8
			{Key: "CE_SpecVersion", Value: []byte("1.0")},    // header names are case-insensitive
			{Key: "ce_id", Value: []byte("{01936f3e-7c00-7abc-8def-0123456789ab}")},
			{Key: "ce_type", Value: []byte("x.y")},
			{Key: "ce_source", Value: []byte("/svc")},
			{Key: "ce_time", Value: []byte("2026-11-25T07:30:00.123456+01:00")},
			{Key: "Content-Type", Value: []byte("application/json; charset=utf-8")},
			{Key: "ce_Tenant", Value: []byte("acme")},
		},
	}
	env, err := envelope.FromMessage(msg)
	require.NoError(t, err)
	require.Equal(t, envelope.Envelope{
		ID: "{" + fixedID + "}", Type: "x.y", Source: "/svc", Key: "k", Time: fixedTime,
		ContentType: "application/json; charset=utf-8",
		Meta:        map[string]string{"tenant": "acme"},
		Payload:     []byte(`{}`),
	}, env)
}

// withHeader returns msg with the header name set to value (replacing the
// first header of that name, or appended).
func withHeader(name string, value []byte) func(*kafka.Message) {
	return func(m *kafka.Message) {
		for i, h := range m.Headers {
			if h.Key == name {
				m.Headers[i].Value = value
				return
			}
		}
		m.Headers = append(m.Headers, kafka.Header{Key: name, Value: value})
	}
}

func withoutHeader(name string) func(*kafka.Message) {
	return func(m *kafka.Message) {
		hs := m.Headers[:0]
		for _, h := range m.Headers {
			if h.Key != name {
				hs = append(hs, h)
			}
		}
		m.Headers = hs
	}
}

func appendHeader(name string, value []byte) func(*kafka.Message) {
	return func(m *kafka.Message) { m.Headers = append(m.Headers, kafka.Header{Key: name, Value: value}) }
}

func TestFromMessage_BadMessages(t *testing.T) {
	t.Parallel()
	notUTF8 := []byte{'a', 0xff, 0xfe, 'b'}
	tests := []struct {
		name      string
		mutate    func(*kafka.Message)
		limits    *envelope.Limits // nil: DefaultLimits
		wantField string
		wantLimit bool // a *LimitError rather than a *FieldError
	}{
		{name: "missing ce_id", mutate: withoutHeader("ce_id"), wantField: "ce_id"},
		{name: "ce_id empty", mutate: withHeader("ce_id", nil), wantField: "ce_id"},
		{name: "ce_id not UTF-8", mutate: withHeader("ce_id", notUTF8), wantField: "ce_id"},
		{name: "ce_id with NUL", mutate: withHeader("ce_id", []byte("a\x00")), wantField: "ce_id"},
		{name: "ce_time not RFC 3339", mutate: withHeader("ce_time", []byte("yesterday")), wantField: "ce_time"},
		{name: "ce_time without zone", mutate: withHeader("ce_time", []byte("2026-11-25T06:30:00")), wantField: "ce_time"},
		{name: "ce_time month 13", mutate: withHeader("ce_time", []byte("2026-13-25T06:30:00Z")), wantField: "ce_time"},
		{name: "ce_time beyond year 9999 in UTC", mutate: withHeader("ce_time", []byte("9999-12-31T23:00:00-05:00")), wantField: "ce_time"},
		{name: "missing specversion", mutate: withoutHeader("ce_specversion"), wantField: "ce_specversion"},
		{name: "unknown specversion", mutate: withHeader("ce_specversion", []byte("0.3")), wantField: "ce_specversion"},
		{name: "missing ce_type", mutate: withoutHeader("ce_type"), wantField: "ce_type"},
		{name: "missing ce_source", mutate: withoutHeader("ce_source"), wantField: "ce_source"},
		{name: "ce_type not UTF-8", mutate: withHeader("ce_type", notUTF8), wantField: "ce_type"},
		{name: "ce_source not UTF-8", mutate: withHeader("ce_source", notUTF8), wantField: "ce_source"},
		{name: "ce_subject not UTF-8", mutate: withHeader("ce_subject", notUTF8), wantField: "ce_subject"},
		{name: "content-type not UTF-8", mutate: withHeader("content-type", notUTF8), wantField: "content-type"},
		{name: "meta value not UTF-8", mutate: withHeader("ce_tenant", notUTF8), wantField: "meta.tenant"},
		{name: "ce_type with NUL", mutate: withHeader("ce_type", []byte("a\x00b")), wantField: "ce_type"},
		{name: "content-type not a media type", mutate: withHeader("content-type", []byte("json")), wantField: "content-type"},
		{name: "key not UTF-8", mutate: func(m *kafka.Message) { m.Key = notUTF8 }, wantField: "key"},
		{name: "duplicate ce_id", mutate: appendHeader("ce_id", []byte(fixedID)), wantField: "ce_id"},
		{name: "duplicate ce_type in other case", mutate: appendHeader("CE_TYPE", []byte("x")), wantField: "ce_type"},
		{name: "duplicate meta", mutate: appendHeader("ce_tenant", []byte("other")), wantField: "ce_tenant"},
		{name: "meta name with dash", mutate: appendHeader("ce_bad-name", []byte("v")), wantField: "ce_bad-name"},
		{name: "meta name empty", mutate: appendHeader("ce_", []byte("v")), wantField: "ce_"},
		{name: "meta name is a core attribute", mutate: appendHeader("ce_data", []byte("v")), wantField: "ce_data"},
		{
			name:      "oversized payload",
			mutate:    func(m *kafka.Message) { m.Value = make([]byte, envelope.DefaultMaxPayloadBytes+1) },
			wantField: "payload", wantLimit: true,
		},
		{
			name:      "oversized key",
			mutate:    func(m *kafka.Message) { m.Key = []byte(strings.Repeat("k", envelope.DefaultMaxKeyBytes+1)) },
			wantField: "key", wantLimit: true,
		},
		{
			name: "too many headers",
			mutate: func(m *kafka.Message) {
				for len(m.Headers) <= envelope.DefaultMaxHeaders {
					m.Headers = append(m.Headers, kafka.Header{Key: "x-other", Value: []byte("v")})
				}
			},
			wantField: "headers", wantLimit: true,
		},
		{
			name:      "oversized header value",
			mutate:    withHeader("ce_tenant", []byte(strings.Repeat("x", envelope.DefaultMaxHeaderValueBytes+1))),
			wantField: "ce_tenant", wantLimit: true,
		},
		{
			name:      "oversized ce_id value",
			mutate:    withHeader("ce_id", []byte(strings.Repeat("x", envelope.DefaultMaxHeaderValueBytes+1))),
			wantField: "ce_id", wantLimit: true,
		},
		{
			name:      "payload over a custom limit",
			mutate:    func(m *kafka.Message) { m.Value = make([]byte, 11) },
			limits:    &envelope.Limits{MaxPayloadBytes: 10},
			wantField: "payload", wantLimit: true,
		},
		{
			name:      "header over a custom limit",
			mutate:    func(*kafka.Message) {},
			limits:    &envelope.Limits{MaxHeaderValueBytes: 10},
			wantField: "ce_id", wantLimit: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			msg := validMessage(t)
			tt.mutate(&msg)
			limits := envelope.DefaultLimits()
			if tt.limits != nil {
				limits = *tt.limits
			}
			var (
				env envelope.Envelope
				err error
			)
			require.NotPanics(t, func() { env, err = limits.FromMessage(msg) })
			require.Error(t, err)
			require.Zero(t, env, "no partial envelope on error")
			require.ErrorIs(t, err, envelope.ErrInvalid)
			if tt.wantLimit {
				var le *envelope.LimitError
				require.ErrorAs(t, err, &le, "got %T: %v", err, err)
				require.Equal(t, tt.wantField, le.Field, err.Error())
				require.Greater(t, le.Size, le.Limit)
			} else {
				var fe *envelope.FieldError
				require.ErrorAs(t, err, &fe, "got %T: %v", err, err)
				require.Equal(t, tt.wantField, fe.Field, err.Error())
			}
			require.Contains(t, err.Error(), tt.wantField, "the message names the field")
		})
	}
}

func TestValidate_CountsHeaders(t *testing.T) {
	t.Parallel()
	// 5 required attributes + subject + content-type + meta entries.
	env := fullEnvelope(t)
	for i := len(env.Meta); 7+i < envelope.DefaultMaxHeaders; i++ {
		env.Meta[fmt.Sprintf("m%d", i)] = "v"
	}
	msg, err := envelope.ToMessage(env)
	require.NoError(t, err, "exactly at the limit")
	require.Len(t, msg.Headers, envelope.DefaultMaxHeaders)

	env.Meta["onemore"] = "v"
	err = env.Validate()
	var le *envelope.LimitError
	require.ErrorAs(t, err, &le)
	require.Equal(t, "headers", le.Field)
	require.Equal(t, envelope.DefaultMaxHeaders+1, le.Size)

	env.ContentType = ""
	require.NoError(t, env.Validate(), "an absent content-type takes no header")
}

func TestLimits_ZeroMeansUnlimited(t *testing.T) {
	t.Parallel()
	var unlimited envelope.Limits
	env := fullEnvelope(t)
	env.Payload = make([]byte, envelope.DefaultMaxPayloadBytes+1)
	env.Meta["big"] = strings.Repeat("x", envelope.DefaultMaxHeaderValueBytes+1)
	msg, err := unlimited.ToMessage(env)
	require.NoError(t, err)
	back, err := unlimited.FromMessage(msg)
	require.NoError(t, err)
	require.Equal(t, env, back)

	_, err = envelope.ToMessage(env)
	require.ErrorIs(t, err, envelope.ErrInvalid, "the defaults still apply to the package functions")
}

func TestValidate_NamesTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		mutate    func(*envelope.Envelope)
		wantField string
	}{
		{"no id", func(e *envelope.Envelope) { e.ID = "" }, "ce_id"},
		{"id not UTF-8", func(e *envelope.Envelope) { e.ID = "a\xff" }, "ce_id"},
		{"dataschema not absolute", func(e *envelope.Envelope) { e.DataSchema = "schemas/lesson.json" }, "ce_dataschema"},
		{"meta key over 20 characters", func(e *envelope.Envelope) { e.Meta["averyveryverylongextension"] = "x" }, "meta.averyveryverylongextension"},
		{"no type", func(e *envelope.Envelope) { e.Type = "" }, "ce_type"},
		{"no source", func(e *envelope.Envelope) { e.Source = "" }, "ce_source"},
		{"time before year 1 in UTC", func(e *envelope.Envelope) {
			e.Time = time.Date(1, 1, 1, 0, 30, 0, 0, time.FixedZone("", 3600))
		}, "ce_time"},
		{"time after year 9999", func(e *envelope.Envelope) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "ce_time"},
		{"key with NUL", func(e *envelope.Envelope) { e.Key = "a\x00" }, "key"},
		{"meta key upper case", func(e *envelope.Envelope) { e.Meta["Tenant"] = "x" }, "meta.Tenant"},
		{"meta key reserved", func(e *envelope.Envelope) { e.Meta["id"] = "x" }, "meta.id"},
		{"meta value with NUL", func(e *envelope.Envelope) { e.Meta["tenant"] = "\x00" }, "meta.tenant"},
		{"content type bad", func(e *envelope.Envelope) { e.ContentType = "/" }, "content-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := fullEnvelope(t)
			tt.mutate(&env)
			err := env.Validate()
			var fe *envelope.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.wantField, fe.Field, err.Error())
			require.ErrorIs(t, err, envelope.ErrInvalid)
			_, err = envelope.ToMessage(env)
			require.ErrorAs(t, err, &fe, "ToMessage validates too")
		})
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	before := time.Now()
	env, err := envelope.New("lesson-service", lessonPublished{LessonID: "l-1"})
	require.NoError(t, err)
	parsed, err := uuid.Parse(env.ID)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(7), parsed.Version(), "ids are UUIDv7")
	require.Equal(t, parsed.String(), env.ID, "in canonical lower-case form")
	require.Equal(t, "lesson.published", env.Type)
	require.Equal(t, "lesson-service", env.Source)
	require.Equal(t, envelope.ContentTypeJSON, env.ContentType)
	require.Equal(t, time.UTC, env.Time.Location())
	require.Zero(t, env.Time.Nanosecond()%1000, "microsecond precision")
	require.WithinDuration(t, before, env.Time, time.Minute)
	require.JSONEq(t, `{"lesson_id":"l-1","title":""}`, string(env.Payload))

	other, err := envelope.New("lesson-service", lessonPublished{})
	require.NoError(t, err)
	require.NotEqual(t, env.ID, other.ID)
}

func TestNew_Refuses(t *testing.T) {
	t.Parallel()
	var nilEvent *lessonPublished
	tests := []struct {
		name      string
		source    string
		event     envelope.Event
		opts      []envelope.Option
		wantField string
	}{
		{"nil event", "s", nil, nil, "payload"},
		{"typed nil pointer", "s", nilEvent, nil, "payload"},
		{"no source", "", lessonPublished{}, nil, "ce_source"},
		{"bad meta key", "s", lessonPublished{}, []envelope.Option{envelope.WithMeta("Bad Key", "v")}, "meta.Bad Key"},
		{"unencodable payload", "s", badJSON{}, nil, "payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			require.NotPanics(t, func() { _, err = envelope.New(tt.source, tt.event, tt.opts...) })
			var fe *envelope.FieldError
			require.ErrorAs(t, err, &fe, "got %v", err)
			require.Equal(t, tt.wantField, fe.Field)
			require.ErrorIs(t, err, envelope.ErrInvalid)
		})
	}
}

type badJSON struct {
	C chan int `json:"c"`
}

func (badJSON) EventType() string { return "bad.json" }

func TestDecode(t *testing.T) {
	t.Parallel()
	env, err := envelope.New("quiz-service", quizSubmitted{QuizID: "q-1", Score: 0.75})
	require.NoError(t, err)

	got, err := envelope.Decode[quizSubmitted](env)
	require.NoError(t, err)
	require.Equal(t, quizSubmitted{QuizID: "q-1", Score: 0.75}, got)

	ptr, err := envelope.Decode[*quizSubmitted](env)
	require.NoError(t, err, "pointer event types decode too")
	require.Equal(t, &quizSubmitted{QuizID: "q-1", Score: 0.75}, ptr)
}

func TestDecode_WrongTypeNamesBoth(t *testing.T) {
	t.Parallel()
	env, err := envelope.New("quiz-service", quizSubmitted{QuizID: "q-1"})
	require.NoError(t, err)

	_, err = envelope.Decode[lessonPublished](env)
	var tm *envelope.TypeMismatchError
	require.ErrorAs(t, err, &tm)
	require.ErrorIs(t, err, envelope.ErrInvalid)
	require.Equal(t, "quiz.submitted", tm.Got)
	require.Equal(t, "lesson.published", tm.Want)
	require.Equal(t, "envelope_test.lessonPublished", tm.GoType)
	for _, s := range []string{"quiz.submitted", "lesson.published", "envelope_test.lessonPublished"} {
		require.Contains(t, err.Error(), s)
	}
}

func TestDecode_BadPayload(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		contentType string
		payload     string
		wantField   string
	}{
		{"not JSON", envelope.ContentTypeJSON, "{", "payload"},
		{"wrong JSON shape", envelope.ContentTypeJSON, `{"score":"high"}`, "payload"},
		{"not a JSON content type", "text/plain", `{}`, "content-type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := envelope.Envelope{ID: fixedID, Type: "quiz.submitted", Source: "s", Time: fixedTime,
				ContentType: tt.contentType, Payload: []byte(tt.payload)}
			_, err := envelope.Decode[quizSubmitted](env)
			var fe *envelope.FieldError
			require.ErrorAs(t, err, &fe)
			require.Equal(t, tt.wantField, fe.Field)
			require.ErrorIs(t, err, envelope.ErrInvalid)
		})
	}
	// A JSON-suffixed media type and no content type at all both decode.
	for _, ct := range []string{"", "application/vnd.edupulse+json; charset=utf-8"} {
		env := envelope.Envelope{ID: fixedID, Type: "quiz.submitted", Source: "s", Time: fixedTime,
			ContentType: ct, Payload: []byte(`{"quiz_id":"q"}`)}
		got, err := envelope.Decode[quizSubmitted](env)
		require.NoError(t, err, ct)
		require.Equal(t, "q", got.QuizID)
	}
}

func TestErrors_AreDistinguishable(t *testing.T) {
	t.Parallel()
	cause := errors.New("cause")
	fe := &envelope.FieldError{Field: "f", Reason: "r", Err: cause}
	require.ErrorIs(t, fe, cause, "FieldError unwraps its cause")
	require.Equal(t, "envelope: f: r: cause", fe.Error())
	require.NotErrorIs(t, errors.New("other"), envelope.ErrInvalid)
}

func TestValidMetaKey(t *testing.T) {
	t.Parallel()
	for key, want := range map[string]bool{
		"tenant": true, "traceparent": true, "a1": true, strings.Repeat("a", 20): true,
		"": false, strings.Repeat("a", 21): false, "Tenant": false, "trace-parent": false,
		"trace_parent": false, "id": false, "time": false, "datacontenttype": false, "ü": false,
	} {
		require.Equal(t, want, envelope.ValidMetaKey(key), key)
	}
}

// Validate's fast path for bare type/subtype media types agrees with
// mime.ParseMediaType, which handles the rest.
func TestValidate_MediaTypes(t *testing.T) {
	for ct, ok := range map[string]bool{
		"application/json":                    true,
		"application/cloudevents+json":        false, // reserved for the structured mode
		"Application/JSON":                    true,
		"text/plain; charset=utf-8":           true,
		"application/json;":                   true,
		"application/vnd.api+json; version=2": true,
		"json":                                false,
		"/json":                               false,
		"application/":                        false,
		"/":                                   false,
		"appl ication/json":                   false,
		"application/json/x":                  false,
		"application/js(on":                   false,
		"text/plain; charset":                 false,
	} {
		env := fullEnvelope(t)
		env.ContentType = ct
		err := env.Validate()
		if ok {
			require.NoError(t, err, "%q", ct)
			continue
		}
		var fe *envelope.FieldError
		require.ErrorAs(t, err, &fe, "%q", ct)
		require.Equal(t, "content-type", fe.Field, "%q", ct)
	}
}

// More meta entries than ToMessage keeps on its stack still come out sorted
// and whole.
func TestToMessage_ManyMetaEntries(t *testing.T) {
	env := fullEnvelope(t)
	env.Meta = map[string]string{}
	for i := range 20 {
		env.Meta[fmt.Sprintf("k%02d", 19-i)] = strings.Repeat("v", i+1)
	}
	msg, err := envelope.ToMessage(env)
	require.NoError(t, err)
	var metaKeys []string
	for _, h := range msg.Headers {
		if k, ok := strings.CutPrefix(h.Key, "ce_k"); ok {
			metaKeys = append(metaKeys, "k"+k)
			require.Equal(t, env.Meta["k"+k], string(h.Value))
		}
	}
	require.True(t, slices.IsSorted(metaKeys))
	require.Len(t, metaKeys, 20)
	back, err := envelope.FromMessage(msg)
	require.NoError(t, err)
	require.Equal(t, env, back)
}

// A meta error names the one rule broken, and says when it is the value,
// not the key, that breaks it.
func TestValidate_MetaErrorsNameKeyOrValue(t *testing.T) {
	t.Parallel()
	for want, meta := range map[string]map[string]string{
		"envelope: meta.Tenant: extension attribute names are lower-case ASCII letters and digits only": {"Tenant": "x"},
		`envelope: meta.id: "id" is a core CloudEvents attribute, not an extension`:                     {"id": "x"},
		"envelope: meta.averyveryverylongextension: 26 characters: PulseBus writes extension names of at most 20": {
			"averyveryverylongextension": "x"},
		"envelope: meta.tenant: the value contains a NUL byte": {"tenant": "a\x00"},
		"envelope: meta.tenant: the value is not valid UTF-8":  {"tenant": "a\xff"},
		"envelope: meta.tenant: size 1025 exceeds limit 1024":  {"tenant": strings.Repeat("v", 1025)},
	} {
		env := fullEnvelope(t)
		env.Meta = meta
		err := envelope.Limits{MaxHeaderValueBytes: 1024}.Validate(env)
		require.EqualError(t, err, want)
	}
}
