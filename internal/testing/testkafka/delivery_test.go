package testkafka_test

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/edupulse/pulsebus/internal/testing/testkafka"
	"github.com/edupulse/pulsebus/pkg/envelope"
)

func rec(t *testing.T, id, key string, seq int) *kgo.Record {
	t.Helper()
	v, err := json.Marshal(testkafka.SeqEvent{Key: key, Seq: seq})
	require.NoError(t, err)
	return &kgo.Record{Key: []byte(key), Value: v, Headers: []kgo.RecordHeader{{Key: envelope.HeaderID, Value: []byte(id)}}}
}

// fatalT records the first Fatalf and ends the goroutine, as testing.T does.
type fatalT struct {
	testing.TB
	msg string
}

func (f *fatalT) Helper() {}

func (f *fatalT) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// check runs CheckDelivery on a fatalT and returns its result and failure.
func check(t *testing.T, recs []*kgo.Record, want map[string]int) (dups int, failure string) {
	ft := &fatalT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		dups = testkafka.CheckDelivery(ft, recs, want)
	}()
	<-done
	return dups, ft.msg
}

func TestCheckDelivery(t *testing.T) {
	t.Parallel()
	a0, a1, b0 := rec(t, "1", "a", 0), rec(t, "2", "a", 1), rec(t, "3", "b", 0)
	want := map[string]int{"a": 2, "b": 1}

	dups, failure := check(t, []*kgo.Record{a0, b0, a0, a1, b0}, want)
	require.Empty(t, failure)
	require.Equal(t, 2, dups, "redelivered records after their first occurrence are duplicates")

	_, failure = check(t, []*kgo.Record{a1, a0, b0}, want)
	require.Contains(t, failure, "key a: first occurrence of seq 1 where 0 was due")

	_, failure = check(t, []*kgo.Record{a0, b0}, want)
	require.Equal(t, "key a: 1 events on Kafka, want 2", failure)

	_, failure = check(t, []*kgo.Record{a0, a1, b0, rec(t, "4", "c", 0)}, want)
	require.Equal(t, "distinct ce_id count 4, want 3", failure)

	_, failure = check(t, []*kgo.Record{rec(t, "", "a", 0)}, want)
	require.Contains(t, failure, "record without ce_id")
}
