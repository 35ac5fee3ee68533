// Package kafkaconfig holds the Kafka connection settings both binaries
// share: brokers, client id, TLS and SASL (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512), read from flags with environment fallbacks, validated with
// errors that name the setting, and turned into kafka-go transports and
// dialers. Its String method never shows the password.
package kafkaconfig

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"

	"github.com/edupulse/pulsebus/internal/cli"
)

// DefaultBrokers is used when neither --kafka-brokers nor KAFKA_BROKERS is
// set.
const DefaultBrokers = "127.0.0.1:9092"

// DefaultClientID is the Kafka client id when none is set.
const DefaultClientID = "pulsebus"

// SASL mechanisms accepted by SASLMechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Config is how to reach and authenticate to Kafka.
type Config struct {
	// Brokers are host:port seed addresses. Defaults to DefaultBrokers.
	Brokers []string
	// ClientID names this client to the brokers. Defaults to DefaultClientID.
	ClientID string
	// TLS enables TLS. Implied by any of the TLS file settings.
	TLS bool
	// TLSCAFile is a PEM file of CAs to trust instead of the system pool.
	TLSCAFile string
	// TLSCertFile and TLSKeyFile are a PEM client certificate and key, for
	// mutual TLS. Both or neither.
	TLSCertFile, TLSKeyFile string
	// TLSInsecureSkipVerify turns off server certificate checks. Tests only.
	TLSInsecureSkipVerify bool
	// SASLMechanism is "", PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	SASLMechanism string
	// SASLUsername and SASLPassword are the SASL credentials.
	SASLUsername, SASLPassword string
}

// RegisterFlags defines the Kafka flags on fs, with defaults from the
// environment, writing into c.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.Func("kafka-brokers", "comma-separated Kafka seed brokers host:port (env KAFKA_BROKERS, default "+DefaultBrokers+")", func(s string) error {
		c.Brokers = splitList(s)
		return nil
	})
	c.Brokers = splitList(cli.EnvString("KAFKA_BROKERS", DefaultBrokers))
	fs.StringVar(&c.ClientID, "kafka-client-id", cli.EnvString("KAFKA_CLIENT_ID", DefaultClientID), "Kafka client id (env KAFKA_CLIENT_ID)")
	fs.BoolVar(&c.TLS, "kafka-tls", envBool("KAFKA_TLS"), "connect to Kafka over TLS (env KAFKA_TLS)")
	fs.StringVar(&c.TLSCAFile, "kafka-tls-ca-file", os.Getenv("KAFKA_TLS_CA_FILE"), "PEM file of CAs to trust (env KAFKA_TLS_CA_FILE)")
	fs.StringVar(&c.TLSCertFile, "kafka-tls-cert-file", os.Getenv("KAFKA_TLS_CERT_FILE"), "PEM client certificate for mutual TLS (env KAFKA_TLS_CERT_FILE)")
	fs.StringVar(&c.TLSKeyFile, "kafka-tls-key-file", os.Getenv("KAFKA_TLS_KEY_FILE"), "PEM client key for mutual TLS (env KAFKA_TLS_KEY_FILE)")
	fs.BoolVar(&c.TLSInsecureSkipVerify, "kafka-tls-insecure-skip-verify", envBool("KAFKA_TLS_INSECURE_SKIP_VERIFY"), "do not verify the brokers' certificates; tests only (env KAFKA_TLS_INSECURE_SKIP_VERIFY)")
	fs.StringVar(&c.SASLMechanism, "kafka-sasl-mechanism", os.Getenv("KAFKA_SASL_MECHANISM"), "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (env KAFKA_SASL_MECHANISM)")
	fs.StringVar(&c.SASLUsername, "kafka-sasl-username", os.Getenv("KAFKA_SASL_USERNAME"), "SASL username (env KAFKA_SASL_USERNAME)")
	// The password comes from the environment without becoming the flag's
	// default, which --help would print.
	c.SASLPassword = os.Getenv("KAFKA_SASL_PASSWORD")
	fs.Func("kafka-sasl-password", "SASL password; prefer the env KAFKA_SASL_PASSWORD over the flag, which other users can see in the process list", func(s string) error {
		c.SASLPassword = s
		return nil
	})
}

// Validate checks the settings; errors are *cli.ConfigError naming the flag
// and its environment variable.
func (c *Config) Validate() error {
	if len(c.Brokers) == 0 {
		return &cli.ConfigError{Setting: "--kafka-brokers (KAFKA_BROKERS)", Reason: "no brokers given"}
	}
	for _, b := range c.Brokers {
		host, port, err := net.SplitHostPort(b)
		if err != nil || host == "" {
			return &cli.ConfigError{Setting: "--kafka-brokers (KAFKA_BROKERS)", Reason: fmt.Sprintf("%q is not host:port", b)}
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return &cli.ConfigError{Setting: "--kafka-brokers (KAFKA_BROKERS)", Reason: fmt.Sprintf("%q has no valid port", b)}
		}
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return &cli.ConfigError{Setting: "--kafka-tls-cert-file/--kafka-tls-key-file (KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE)", Reason: "give both or neither"}
	}
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		if c.SASLUsername != "" || c.SASLPassword != "" {
			return &cli.ConfigError{Setting: "--kafka-sasl-mechanism (KAFKA_SASL_MECHANISM)", Reason: "SASL credentials given without a mechanism"}
		}
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		if c.SASLUsername == "" {
			return &cli.ConfigError{Setting: "--kafka-sasl-username (KAFKA_SASL_USERNAME)", Reason: "required with a SASL mechanism"}
		}
		if c.SASLPassword == "" {
			return &cli.ConfigError{Setting: "--kafka-sasl-password (KAFKA_SASL_PASSWORD)", Reason: "required with a SASL mechanism"}
		}
	default:
		return &cli.ConfigError{Setting: "--kafka-sasl-mechanism (KAFKA_SASL_MECHANISM)", Reason: fmt.Sprintf("%q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism)}
	}
	if _, err := c.tlsConfig(); err != nil {
		return err
	}
	return nil
}

// String describes the settings without the password.
func (c *Config) String() string {
	s := fmt.Sprintf("brokers=%s client_id=%s tls=%t", strings.Join(c.Brokers, ","), c.ClientID, c.TLS || c.TLSCAFile != "" || c.TLSCertFile != "")
	if c.SASLMechanism != "" {
		s += fmt.Sprintf(" sasl=%s user=%s", strings.ToUpper(c.SASLMechanism), c.SASLUsername)
	}
	return s
}

// Transport returns a kafka-go transport (for Writer and Client) with TLS and
// SASL applied.
func (c *Config) Transport() (*kafka.Transport, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Transport{ClientID: c.clientID(), TLS: tlsCfg, SASL: mech, DialTimeout: 10 * time.Second}, nil
}

// Dialer returns a kafka-go dialer (for Reader and ConsumerGroup) with TLS
// and SASL applied.
func (c *Config) Dialer() (*kafka.Dialer, error) {
	tlsCfg, err := c.tlsConfig()
	if err != nil {
		return nil, err
	}
	mech, err := c.mechanism()
	if err != nil {
		return nil, err
	}
	return &kafka.Dialer{ClientID: c.clientID(), TLS: tlsCfg, SASLMechanism: mech, Timeout: 10 * time.Second, DualStack: true}, nil
}

func (c *Config) clientID() string {
	if c.ClientID == "" {
		return DefaultClientID
	}
	return c.ClientID
}

func (c *Config) tlsConfig() (*tls.Config, error) {
	if !c.TLS && c.TLSCAFile == "" && c.TLSCertFile == "" && !c.TLSInsecureSkipVerify {
		return nil, nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: c.TLSInsecureSkipVerify} //nolint:gosec // opt-in, documented as tests only
	if c.TLSCAFile != "" {
		pem, err := os.ReadFile(c.TLSCAFile)
		if err != nil {
			return nil, &cli.ConfigError{Setting: "--kafka-tls-ca-file (KAFKA_TLS_CA_FILE)", Reason: err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &cli.ConfigError{Setting: "--kafka-tls-ca-file (KAFKA_TLS_CA_FILE)", Reason: "no PEM certificates in " + c.TLSCAFile}
		}
		cfg.RootCAs = pool
	}
	if c.TLSCertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			return nil, &cli.ConfigError{Setting: "--kafka-tls-cert-file/--kafka-tls-key-file (KAFKA_TLS_CERT_FILE/KAFKA_TLS_KEY_FILE)", Reason: err.Error()}
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

func (c *Config) mechanism() (sasl.Mechanism, error) {
	switch strings.ToUpper(c.SASLMechanism) {
	case "":
		return nil, nil
	case SASLPlain:
		return plain.Mechanism{Username: c.SASLUsername, Password: c.SASLPassword}, nil
	case SASLScramSHA256:
		return scram.Mechanism(scram.SHA256, c.SASLUsername, c.SASLPassword)
	case SASLScramSHA512:
		return scram.Mechanism(scram.SHA512, c.SASLUsername, c.SASLPassword)
	default:
		return nil, &cli.ConfigError{Setting: "--kafka-sasl-mechanism (KAFKA_SASL_MECHANISM)", Reason: fmt.Sprintf("%q is not supported", c.SASLMechanism)}
	}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}
