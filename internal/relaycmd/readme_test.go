package relaycmd

import (
	"flag"
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
)

// README.md's configuration reference lists every flag of relay run, the
// Kafka connection's included, with its variable and default, and no other.
func TestReadme_DocumentsRunFlags(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	ss := cli.NewSettings(flag.NewFlagSet("relay run", flag.ContinueOnError))
	runFlags(ss, &runConfig{})
	described := map[string]string{"id": "hostname-pid-random", "write-timeout": "min(10s, TTL/2)"}
	require.NoError(t, ss.CheckFlagTables(string(readme), described,
		"Kafka connection (relay, and consumer `run`, `offsets`, `replay`)", "`relay run` (the default command)",
		"Console (relay and consumer `run`)"))
}
