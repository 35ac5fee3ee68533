package consumercmd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/consumercmd"
	"github.com/edupulse/pulsebus/internal/testing/testpoll"
	"github.com/edupulse/pulsebus/pkg/dispatch"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

// The kcat reproduction, written with franz-go: an event whose
// ce_type holds byte 0xff, then one whose header name holds a NUL, then a
// valid event, on one partition. consumer run dead-letters the first two
// and delivers the third; dead-letters list --json shows their exact
// bytes; a redrive fails again and records it.
func TestDeadLetters_HostileMessagesDoNotStopThePartition(t *testing.T) {
	t.Parallel()
	b := setup(t, 1)
	h := newHook(t)
	ce := func(typ string, extra ...kgo.RecordHeader) *kgo.Record {
		return &kgo.Record{Topic: b.topic, Value: []byte("{}"), Headers: append([]kgo.RecordHeader{
			{Key: "ce_specversion", Value: []byte("1.0")}, {Key: "ce_id", Value: []byte(uuid.NewString())},
			{Key: "ce_type", Value: []byte(typ)}, {Key: "ce_source", Value: []byte("x")},
			{Key: "ce_time", Value: []byte("2026-12-04T21:00:00Z")}}, extra...)}
	}
	valid, err := envelope.ToMessage(lessons(t, 1)[0])
	require.NoError(t, err)
	later := &kgo.Record{Topic: b.topic, Key: valid.Key, Value: valid.Value}
	for _, hd := range valid.Headers {
		later.Headers = append(later.Headers, kgo.RecordHeader{Key: hd.Key, Value: hd.Value})
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(b.kc.Addrs...))
	require.NoError(t, err)
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, cl.ProduceSync(ctx, ce("poison.\xff"), ce("lesson.published", kgo.RecordHeader{Key: "ce_a\x00b", Value: []byte("v")}), later).FirstErr())

	spec := "name=hook,types=*,webhook=" + h.URL + "/in"
	r := start(t, b.runArgs(spec))
	testpoll.Until(t, 30*time.Second, 25*time.Millisecond, "the valid event after the hostile ones delivered", func() bool {
		return len(h.delivered("/in")) == 1
	})
	require.NoError(t, r.stop())
	require.NotContains(t, r.logs.String(), "handler worker failed")

	out, _, err := command(t, append([]string{"dead-letters", "list", "--json"}, b.dbOnly()...)...)
	require.NoError(t, err)
	var rows []struct {
		Offset     int64  `json:"offset"`
		EventType  string `json:"event_type"`
		Error      string `json:"error"`
		HeaderList []struct {
			Key         *string `json:"key"`
			KeyBase64   []byte  `json:"key_base64"`
			Value       *string `json:"value"`
			ValueBase64 []byte  `json:"value_base64"`
		} `json:"header_list"`
		MessageStored bool `json:"message_stored"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	require.Len(t, rows, 2, out)
	require.Equal(t, "poison.\uFFFD", rows[0].EventType)
	require.Equal(t, []byte("poison.\xff"), rows[0].HeaderList[2].ValueBase64, out)
	require.Equal(t, "ce_type", *rows[0].HeaderList[2].Key)
	require.Equal(t, []byte("ce_a\x00b"), rows[1].HeaderList[5].KeyBase64, out)
	require.Equal(t, "v", *rows[1].HeaderList[5].Value)
	for _, row := range rows {
		require.True(t, row.MessageStored)
	}

	dls, err := (&dispatch.Admin{Pool: b.db.Pool}).ListDeadLetters(context.Background(), dispatch.DeadLetterFilter{Group: b.group})
	require.NoError(t, err)
	out, _, err = command(t, append([]string{"dead-letters", "show", "--id", fmt.Sprint(dls[0].ID)}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, out, `"ce_type": "poison.\xff"`, out)
	require.Contains(t, out, "read from:  edupulse.events/0 at offset 0", out)
	require.Contains(t, out, "value: 2 bytes\n\"{}\"", out)
	out, _, err = command(t, append([]string{"dead-letters", "show", "--id", fmt.Sprint(dls[1].ID)}, b.dbOnly()...)...)
	require.NoError(t, err)
	require.Contains(t, out, `"ce_a\x00b": "v"`, out)
	_, _, err = command(t, append([]string{"dead-letters", "show", "--id", "0"}, b.dbOnly()...)...)
	require.Equal(t, 2, consumercmd.ExitCode(err))

	out, _, err = command(t, append([]string{"dead-letters", "redrive", "--handler-name", "hook", "--handler", spec}, b.dbOnly()...)...)
	require.Error(t, err)
	require.Equal(t, 1, consumercmd.ExitCode(err))
	require.Contains(t, out, "redriven 0, failed 2", out)
	require.Len(t, h.requests(), 1, "nothing more delivered")
}
