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
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	require.NoError(t, fs.Parse(args))
	return &c
}

func TestRegisterFlags_EnvFallbackAndFlagOverride(t *testing.T) {
	t.Setenv("KAFKA_BROKERS", "k1:9092, k2:9093")
	t.Setenv("KAFKA_SASL_MECHANISM", "PLAIN")
	require.Equal(t, []string{"k1:9092", "k2:9093"}, parse(t).Brokers)
	c := parse(t, "--kafka-brokers", "k3:19092", "--kafka-sasl-username", "u", "--kafka-sasl-password", "s3cret")
	require.Equal(t, []string{"k3:19092"}, c.Brokers)
	require.Equal(t, "PLAIN", c.SASLMechanism)
	require.NoError(t, c.Validate())
	require.NotContains(t, c.String(), "s3cret", "String must not show the password")
}

func TestValidate_NamesTheSetting(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		setting string
	}{
		{[]string{"--kafka-brokers", ""}, "--kafka-brokers"},
		{[]string{"--kafka-brokers", "nohost"}, "--kafka-brokers"},
		{[]string{"--kafka-brokers", "h:0"}, "--kafka-brokers"},
		{[]string{"--kafka-sasl-mechanism", "GSSAPI"}, "--kafka-sasl-mechanism"},
		{[]string{"--kafka-sasl-mechanism", "SCRAM-SHA-512", "--kafka-sasl-username", "u"}, "--kafka-sasl-password"},
		{[]string{"--kafka-sasl-username", "u"}, "--kafka-sasl-mechanism"},
		{[]string{"--kafka-tls-cert-file", "c.pem"}, "--kafka-tls-cert-file"},
		{[]string{"--kafka-tls-ca-file", "/does/not/exist.pem"}, "--kafka-tls-ca-file"},
	} {
		err := parse(t, tc.args...).Validate()
		var cfgErr *cli.ConfigError
		require.True(t, errors.As(err, &cfgErr), "%v: %v", tc.args, err)
		require.True(t, strings.HasPrefix(cfgErr.Setting, tc.setting), "%v: setting %q", tc.args, cfgErr.Setting)
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

func TestRegisterFlags_HelpNeverShowsThePassword(t *testing.T) {
	t.Setenv("KAFKA_SASL_PASSWORD", "env-s3cret")
	var c Config
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	c.RegisterFlags(fs)
	var help strings.Builder
	fs.SetOutput(&help)
	fs.PrintDefaults()
	require.Contains(t, help.String(), "kafka-sasl-password")
	require.NotContains(t, help.String(), "env-s3cret")
	require.NoError(t, fs.Parse(nil))
	require.Equal(t, "env-s3cret", c.SASLPassword, "the environment still supplies it")
	require.NoError(t, fs.Parse([]string{"--kafka-sasl-password", "flag-s3cret"}))
	require.Equal(t, "flag-s3cret", c.SASLPassword, "the flag wins")
}
