package consumercmd

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
)

// README.md's configuration reference lists every flag of consumer run, the
// Kafka connection's included, with its variable and default, and no other.
func TestReadme_DocumentsRunFlags(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	cmd := cli.NewCommand("consumer run", "", "")
	new(runConfig).register(cmd)
	described := map[string]string{"group": "required", "topics": "required", "handler": "at least one"}
	require.NoError(t, cmd.CheckFlagTables(string(readme), described,
		"Kafka connection (relay, and consumer `run`, `offsets`, `replay`)", "`consumer run` (the default command)",
		"Console (relay and consumer `run`)"))
}
