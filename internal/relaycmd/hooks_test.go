package relaycmd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/outbox"
	"github.com/edupulse/pulsebus/pkg/outbox/outboxprom"
)

func TestRelayHooks_HintAtTheCreateTopicsFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name         string
		createTopics bool
		wantHints    int
	}{
		{"topics not created: hint once a minute", false, 1},
		{"topics created: no hint", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			hooks := relayHooks(outboxprom.New(), tc.createTopics, slog.New(slog.NewTextHandler(&logs, nil)))
			hooks.OnPublishFailed(outbox.ReasonBrokerUnavailable)
			hooks.OnPublishFailed(outbox.ReasonUnknownTopic)
			hooks.OnPublishFailed(outbox.ReasonUnknownTopic)
			require.Equal(t, tc.wantHints, strings.Count(logs.String(), "--create-topics (RELAY_CREATE_TOPICS)"), logs.String())
		})
	}
}
