package outbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/segmentio/kafka-go"
	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

var flatJSONSeeds = []string{
	`{}`, ` { } `, `{"tenant": "acme"}`, `{"a": "1", "bb": "2", "ccc": ""}`, `{"tenant":"acme","x":"y"}`,
	`{"k": "caf\u00e9"}`, `{"k": "café ☕"}`, `{"k": "a\"b"}`, `{"k": "a\\b"}`, `{"k": 1}`, `{"k": null}`,
	`{"k": ["a"]}`, `{"k": {"a": "b"}}`, `{"k": "v",}`, `{"k" "v"}`, `{"k": "v"} x`, `{"k": "v"`, `[]`, `"s"`,
	`null`, ``, `{`, `{"a": "1", "a": "2"}`, "{\"k\": \"a\tb\"}", `{"k":"v"}` + "\n",
}

// FuzzParseFlatJSON: whenever the fast meta parser accepts its input, it
// agrees with encoding/json.
func FuzzParseFlatJSON(f *testing.F) {
	for _, s := range flatJSONSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, ok := parseFlatJSON([]byte(s), &interner{})
		if !ok {
			return
		}
		var want map[string]string
		require.NoError(t, json.Unmarshal([]byte(s), &want), "accepted %q", s)
		if len(want) == 0 {
			require.Empty(t, m)
			return
		}
		require.Equal(t, want, m, "input %q", s)
	})
}

func TestParseFlatJSON(t *testing.T) {
	accept := map[string]map[string]string{
		`{}`:                               nil,
		`{"tenant": "acme"}`:               {"tenant": "acme"},
		`{"a": "1", "bb": "2", "ccc": ""}`: {"a": "1", "bb": "2", "ccc": ""},
		`{"k": "café ☕"}`:                  {"k": "café ☕"},
	}
	for in, want := range accept {
		m, ok := parseFlatJSON([]byte(in), nil)
		require.True(t, ok, in)
		require.Equal(t, want, m, in)
	}
	// Escapes and non-strings go to encoding/json.
	for _, in := range []string{`{"k": "a\"b"}`, `{"k": 1}`, `{"k": "v",}`, `{"a": "1", "a": "2"}`, `[]`} {
		_, ok := parseFlatJSON([]byte(in), nil)
		require.False(t, ok, in)
	}
}

// TestMessageBuilder_MatchesToMessage holds the relay's message builder to
// envelope.Limits.ToMessage, byte for byte, over random envelopes valid and
// invalid, several to a builder as in a batch.
func TestMessageBuilder_MatchesToMessage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	limits := envelope.DefaultLimits()
	pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
	locs := []*time.Location{time.UTC, time.FixedZone("x", 5*3600+1800), time.FixedZone("y", -7*3600)}
	for batch := range 200 {
		b := newMessageBuilder(&limits)
		type pair struct {
			got, want kafka.Message
		}
		var built []pair
		for i := range 40 {
			env := envelope.Envelope{
				ID:          uuid.Must(uuid.NewRandom()).String(),
				Type:        pick("lesson.published", "x.y", "", "t\x00"),
				Source:      pick("svc", "lesson-service", "https://example.com/a b"),
				Subject:     pick("", "", "sub/1", "ünïcode"),
				Key:         pick("", "course-1", "k", strings.Repeat("k", 300)),
				Time:        time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)).In(locs[rng.IntN(len(locs))]),
				ContentType: pick("", "application/json", "text/plain; charset=utf-8", "json"),
				Payload:     []byte(pick("", `{"a":1}`, strings.Repeat("p", 5000))),
			}
			if rng.IntN(8) == 0 {
				env.Payload = nil
			}
			for range rng.IntN(12) {
				env.Meta = mapSet(env.Meta, pick("tenant", "traceparent", "correlationid", "a", "b0", "Bad"), pick("acme", "", "00-abc-01"))
			}
			if rng.IntN(20) == 0 {
				env.Time = time.Time{}
			}
			want, werr := limits.ToMessage(env)
			got, gerr := b.build(&env)
			if werr != nil || gerr != nil {
				require.Equal(t, fmt.Sprint(werr), fmt.Sprint(gerr), "batch %d message %d", batch, i)
				continue
			}
			built = append(built, pair{got, want})
		}
		// Checked after the batch: later messages must not overwrite
		// earlier ones' bytes.
		for i, p := range built {
			require.Equal(t, p.want.Key == nil, p.got.Key == nil, "batch %d message %d key nil", batch, i)
			require.True(t, bytes.Equal(p.want.Key, p.got.Key))
			require.True(t, bytes.Equal(p.want.Value, p.got.Value))
			require.Equal(t, len(p.want.Headers), len(p.got.Headers))
			for j := range p.want.Headers {
				require.Equal(t, p.want.Headers[j].Key, p.got.Headers[j].Key)
				require.Equal(t, string(p.want.Headers[j].Value), string(p.got.Headers[j].Value), "header %s", p.want.Headers[j].Key)
			}
			require.True(t, reflect.DeepEqual(p.want.Time, p.got.Time))
		}
	}
}

func mapSet(m map[string]string, k, v string) map[string]string {
	if m == nil {
		m = map[string]string{}
	}
	m[k] = v
	return m
}
