package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The container build cannot give the go command the VCS revision
// (.dockerignore leaves .git out), so the Dockerfile stamps it with the
// linker flag tested here: a binary built without VCS information and with
// the flag logs the revision at start.
func TestRelayBinary_LogsTheStampedRevision(t *testing.T) {
	t.Parallel()
	const revision = "0123456789abcdef0123456789abcdef01234567"
	bin := filepath.Join(t.TempDir(), "relay")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-buildvcs=false",
		"-ldflags", "-X github.com/edupulse/pulsebus/internal/cli.Revision="+revision, "-o", bin, ".")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "go build: %s", out)

	dockerfile, err := os.ReadFile("../../Dockerfile")
	require.NoError(t, err)
	require.Contains(t, string(dockerfile), "-X github.com/edupulse/pulsebus/internal/cli.Revision=${VCS_REVISION}",
		"the Dockerfile stamps the revision the way this test does")

	var stderr bytes.Buffer
	run := exec.CommandContext(ctx, bin, "run", "--database-url", "postgres://127.0.0.1:1/x", "--connect-timeout", "100ms", "--log-format", "json")
	run.Stderr = &stderr
	require.Error(t, run.Run(), "no database: the relay exits 1")
	for _, line := range strings.Split(stderr.String(), "\n") {
		var entry map[string]any
		if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == "relay starting" {
			require.Contains(t, entry["version"], "(devel) (rev 0123456789ab, ")
			return
		}
	}
	t.Fatalf("no start line in the relay's log:\n%s", stderr.String())
}
