package cli_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// exampleDocs documents exampleCommand's flags in two tables, the first
// with its columns in another order.
const exampleDocs = "# Tool\n\n### Run\n\n" +
	"| flag | default | env | meaning |\n|---|---|---|---|\n" +
	"| `--url` | `postgres://localhost/db` | `PULSEBUS_CLI_TEST_URL` | where |\n" +
	"| `--size`, `--wait` | 10, `1s` | `PULSEBUS_CLI_TEST_SIZE`, `PULSEBUS_CLI_TEST_WAIT` | how many, how long |\n" +
	"| `--format`, `--on` | `auto`, false | `PULSEBUS_CLI_TEST_FORMAT`, `PULSEBUS_CLI_TEST_ON` | format \\| switch |\n" +
	"| `--spec` (repeatable) | none | `PULSEBUS_CLI_TEST_SPECS` (separated by `;`) | specs |\n\n" +
	"### Connection\n\n" +
	"| flag | env | default | meaning |\n|---|---|---|---|\n" +
	"| `--name` | – | – | a name |\n" +
	"| `--brokers` | `PULSEBUS_CLI_TEST_BROKERS` | `a:1` | brokers |\n"

func TestSettings_CheckFlagTables(t *testing.T) {
	t.Parallel()
	c := exampleCommand(&example{})
	described := map[string]string{"spec": "none"}
	require.NoError(t, c.CheckFlagTables(exampleDocs, described, "Run", "Connection"))

	wrong := strings.NewReplacer(
		"| 10, `1s` |", "| 20, `1s` |",
		"| `--name` | – | – |", "| `--name` | `NAME` | `x` |",
		"| `--brokers` |", "| `--extra` |",
	).Replace(exampleDocs)
	require.EqualError(t, c.CheckFlagTables(wrong, map[string]string{"size": "many"}, "Run", "Connection", "Missing"),
		"### Missing: no table with columns flag, env and default\n"+
			`--size: documented default "many" stands for an empty one, but the registered default is "10"`+"\n"+
			`--size: documented default "20", registered "10" (to be shown as "many")`+"\n"+
			`--spec: documented default "none", registered "" (to be shown as "–")`+"\n"+
			`--name: documented variable "NAME", registered ""`+"\n"+
			`--name: documented default "x", registered "" (to be shown as "–")`+"\n"+
			`--brokers (PULSEBUS_CLI_TEST_BROKERS): not documented under ["Run" "Connection" "Missing"]`+"\n"+
			`--extra: documented under "Connection" but not a flag of this command`)
}
