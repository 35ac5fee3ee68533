// Package kafkaconfig holds the Kafka connection settings both binaries
// share: brokers, client id, TLS and SASL (PLAIN, SCRAM-SHA-256,
// SCRAM-SHA-512), read from flags with environment fallbacks, validated with
// errors that name the setting, and turned into kafka-go transports and
// dialers. Its String method never shows the password, and help never
// shows a value from the environment (see cli.Settings).
package kafkaconfig

import (
	"crypto/tls"
	"crypto/x509"
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

// Register defines the Kafka settings on ss, writing into c when ss is
// resolved. Each flag has an environment variable fallback (KAFKA_BROKERS,
// KAFKA_CLIENT_ID, KAFKA_TLS, KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE,
// KAFKA_TLS_KEY_FILE, KAFKA_TLS_INSECURE_SKIP_VERIFY, KAFKA_SASL_MECHANISM,
// KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD). Call [Config.Validate] after
// resolving.
func (c *Config) Register(ss *cli.Settings) {
	ss.One("kafka-brokers", "KAFKA_BROKERS", DefaultBrokers, "host:port,...", "comma-separated Kafka seed brokers", func(s string) error {
		c.Brokers = cli.SplitList(s)
		return nil
	})
	ss.String(&c.ClientID, "kafka-client-id", "KAFKA_CLIENT_ID", DefaultClientID, "Kafka client id", nil)
	ss.Bool(&c.TLS, "kafka-tls", "KAFKA_TLS", false, "connect to Kafka over TLS")
	ss.String(&c.TLSCAFile, "kafka-tls-ca-file", "KAFKA_TLS_CA_FILE", "", "PEM file of CAs to trust", nil)
	ss.String(&c.TLSCertFile, "kafka-tls-cert-file", "KAFKA_TLS_CERT_FILE", "", "PEM client certificate for mutual TLS", nil)
	ss.String(&c.TLSKeyFile, "kafka-tls-key-file", "KAFKA_TLS_KEY_FILE", "", "PEM client key for mutual TLS", nil)
	ss.Bool(&c.TLSInsecureSkipVerify, "kafka-tls-insecure-skip-verify", "KAFKA_TLS_INSECURE_SKIP_VERIFY", false,
		"do not verify the brokers' certificates; tests only")
	ss.String(&c.SASLMechanism, "kafka-sasl-mechanism", "KAFKA_SASL_MECHANISM", "", "SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", nil)
	ss.String(&c.SASLUsername, "kafka-sasl-username", "KAFKA_SASL_USERNAME", "", "SASL username", nil)
	ss.String(&c.SASLPassword, "kafka-sasl-password", "KAFKA_SASL_PASSWORD", "",
		"SASL password; prefer the environment variable over the flag, which other users can see in the process list", nil)
	ss.Secret()
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

// Warnings says what in valid settings is still unsafe: SASL PLAIN without
// TLS sends the password to every broker in clear text.
func (c *Config) Warnings() []string {
	tls := c.TLS || c.TLSCAFile != "" || c.TLSCertFile != ""
	if strings.EqualFold(c.SASLMechanism, SASLPlain) && !tls {
		return []string{"SASL PLAIN without TLS sends the Kafka password in clear text; set --kafka-tls (KAFKA_TLS) or use SCRAM-SHA-512"}
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
