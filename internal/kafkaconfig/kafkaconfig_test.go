package kafkaconfig

import (
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/edupulse/pulsebus/internal/cli"
)

func parse(t *testing.T, args ...string) *Config {
	t.Helper()
	c, err := parseErr(args...)
	require.NoError(t, err)
	return c
}

func parseErr(args ...string) (*Config, error) {
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	ss := cli.NewSettings(fs)
	c.Register(ss)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	return &c, ss.Resolve()
}

// Register defines the Kafka settings: each from its flag, else its
// environment variable, else the default; help never shows a secret or an
// environment value.
func TestRegister(t *testing.T) {
	t.Run("the environment fills in, a flag overrides it", func(t *testing.T) {
		t.Setenv("KAFKA_BROKERS", "k1:9092, k2:9093")
		t.Setenv("KAFKA_SASL_MECHANISM", "PLAIN")
		require.Equal(t, []string{"k1:9092", "k2:9093"}, parse(t).Brokers)
		c := parse(t, "--kafka-brokers", "k3:19092", "--kafka-sasl-username", "u", "--kafka-sasl-password", "s3cret")
		require.Equal(t, []string{"k3:19092"}, c.Brokers)
		require.Equal(t, "PLAIN", c.SASLMechanism)
		require.NoError(t, c.Validate())
		require.NotContains(t, c.String(), "s3cret", "String must not show the password")
	})

	t.Run("help never shows the password or an environment value", func(t *testing.T) {
		t.Setenv("KAFKA_SASL_PASSWORD", "env-s3cret")
		t.Setenv("KAFKA_BROKERS", "kafka.internal:9092")
		var c Config
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		ss := cli.NewSettings(fs)
		c.Register(ss)
		var help strings.Builder
		ss.PrintUsage(&help)
		require.Contains(t, help.String(), "--kafka-sasl-password string  (env KAFKA_SASL_PASSWORD)")
		require.Contains(t, help.String(), "--kafka-brokers host:port,...  (env KAFKA_BROKERS, default 127.0.0.1:9092)")
		require.NotContains(t, help.String(), "env-s3cret")
		require.NotContains(t, help.String(), "kafka.internal", "help shows defaults, never environment values")
		require.NoError(t, fs.Parse(nil))
		require.NoError(t, ss.Resolve())
		require.Equal(t, "env-s3cret", c.SASLPassword, "the environment still supplies it")
		require.Equal(t, []string{"kafka.internal:9092"}, c.Brokers)
	})

	t.Run("the password flag wins over the environment", func(t *testing.T) {
		t.Setenv("KAFKA_SASL_PASSWORD", "env-s3cret")
		c := parse(t, "--kafka-sasl-password", "flag-s3cret")
		require.Equal(t, "flag-s3cret", c.SASLPassword)
	})

	// It used to be read as false.
	t.Run("a boolean variable that does not parse is an error naming it", func(t *testing.T) {
		t.Setenv("KAFKA_TLS", "yes please")
		_, err := parseErr()
		var ce *cli.ConfigError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, "--kafka-tls (KAFKA_TLS)", ce.Setting)
		require.Equal(t, `"yes please" (from KAFKA_TLS) is not true or false`, ce.Reason)

		c, err := parseErr("--kafka-tls=false")
		require.NoError(t, err, "the flag overrides the variable")
		require.False(t, c.TLS)
		t.Setenv("KAFKA_TLS", "1")
		require.True(t, parse(t).TLS)
	})
}

// A bad setting is a *cli.ConfigError naming it.
func TestValidate_NamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		setting string
	}{
		{"no brokers", []string{"--kafka-brokers", ""}, "--kafka-brokers"},
		{"broker without port", []string{"--kafka-brokers", "nohost"}, "--kafka-brokers"},
		{"broker port 0", []string{"--kafka-brokers", "h:0"}, "--kafka-brokers"},
		{"unsupported mechanism", []string{"--kafka-sasl-mechanism", "GSSAPI"}, "--kafka-sasl-mechanism"},
		{"SCRAM without password", []string{"--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "u"}, "--kafka-sasl-password"},
		{"username without mechanism", []string{"--kafka-sasl-username", "u"}, "--kafka-sasl-mechanism"},
		{"certificate without key", []string{"--kafka-tls-cert-file", "c.pem"}, "--kafka-tls-cert-file"},
		{"missing CA file", []string{"--kafka-tls-ca-file", "/does/not/exist.pem"}, "--kafka-tls-ca-file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := parse(t, tc.args...).Validate()
			var cfgErr *cli.ConfigError
			require.True(t, errors.As(err, &cfgErr), "%v: %v", tc.args, err)
			require.True(t, strings.HasPrefix(cfgErr.Setting, tc.setting), "%v: setting %q", tc.args, cfgErr.Setting)
		})
	}
}

func TestTransportAndDialer_ApplySASL(t *testing.T) {
	c := parse(t, "--kafka-sasl-mechanism", "SCRAM-SHA-256", "--kafka-sasl-username", "u", "--kafka-sasl-password", "p", "--kafka-tls")
	require.NoError(t, c.Validate())
	tr, err := c.Transport()
	require.NoError(t, err)
	require.Equal(t, "SCRAM-SHA-256", tr.SASL.Name())
	require.NotNil(t, tr.TLS)
	d, err := c.Dialer()
	require.NoError(t, err)
	require.Equal(t, "SCRAM-SHA-256", d.SASLMechanism.Name())
}

// SASL PLAIN sends the password as it is; without TLS anyone on the path
// reads it. SCRAM does not, and TLS protects PLAIN.
func TestWarnings_SASLPlainWithoutTLS(t *testing.T) {
	t.Setenv("KAFKA_SASL_PASSWORD", "s3cret")
	t.Run("PLAIN without TLS warns", func(t *testing.T) {
		plain := parse(t, "--kafka-brokers", "k:9092", "--kafka-sasl-mechanism", "plain", "--kafka-sasl-username", "u")
		require.Len(t, plain.Warnings(), 1)
		require.Contains(t, plain.Warnings()[0], "SASL PLAIN without TLS")
	})
	t.Run("PLAIN with TLS does not", func(t *testing.T) {
		withTLS := parse(t, "--kafka-brokers", "k:9092", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u", "--kafka-tls")
		require.Empty(t, withTLS.Warnings())
	})
	t.Run("SCRAM does not", func(t *testing.T) {
		scram := parse(t, "--kafka-brokers", "k:9092", "--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "u")
		require.Empty(t, scram.Warnings())
	})
}
