package dispatch

import (
	"strings"

	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/pkg/envelope"
)

// window remembers the event ids of the latest messages of a partition, to
// tell a republished event (same ce_id, later offset) from a new one. Only
// first occurrences enter it, so whether a message is a duplicate depends
// on the log alone: the same after a restart, when the window is rebuilt by
// reading the messages before the handler's next offset. A nil window
// remembers nothing.
type window struct {
	ring []string
	size int
	at   map[string]uint64 // id → its sequence number in ring
	seq  uint64
}

func newWindow(size int) *window {
	if size <= 0 {
		return nil
	}
	return &window{size: size, at: make(map[string]uint64)}
}

// observe reports whether id is already in the window and, when it is
// not, adds it, forgetting the oldest id beyond the window's size.
func (w *window) observe(id string) (duplicate bool) {
	if w == nil {
		return false
	}
	if _, ok := w.at[id]; ok {
		return true
	}
	slot := int(w.seq % uint64(w.size))
	if len(w.ring) < w.size {
		w.ring = append(w.ring, id)
	} else {
		old := w.ring[slot]
		if w.at[old] == w.seq-uint64(w.size) {
			delete(w.at, old)
		}
		w.ring[slot] = id
	}
	w.at[id] = w.seq
	w.seq++
	return false
}

// headerID returns the message's ce_id, without decoding the envelope;
// false when it has none (or an empty one). Ids are opaque: compared byte
// for byte.
func headerID(m *kafka.Message) (string, bool) {
	for i := range m.Headers {
		h := &m.Headers[i]
		if len(h.Key) == len(envelope.HeaderID) && strings.EqualFold(h.Key, envelope.HeaderID) {
			return string(h.Value), len(h.Value) > 0
		}
	}
	return "", false
}

// headerType returns the message's ce_type, without decoding the envelope.
func headerType(m *kafka.Message) ([]byte, bool) {
	for i := range m.Headers {
		h := &m.Headers[i]
		if len(h.Key) == len(envelope.HeaderType) && strings.EqualFold(h.Key, envelope.HeaderType) {
			return h.Value, true
		}
	}
	return nil, false
}
