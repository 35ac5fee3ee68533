package outbox_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/pkg/outbox"
)

func TestUnknownTopicError_NamesTheSettings(t *testing.T) {
	t.Parallel()
	msg := (&outbox.UnknownTopicError{Topics: []string{"lessons", "courses"}}).Error()
	require.Contains(t, msg, "lessons, courses")
	require.Contains(t, msg, "RelayConfig.AutoCreateTopics")
	require.NotContains(t, msg, "--create-topics", "the library names no CLI flag; relaycmd adds it")
	require.NotContains(t, msg, "--auto-create-topics", "no such flag")
}
