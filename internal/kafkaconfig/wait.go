package kafkaconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"
)

// Bounds of the back-off between [Config.WaitForBroker]'s attempts.
const (
	waitRetryFirst = 100 * time.Millisecond
	waitRetryMax   = 2 * time.Second
)

// WaitForBroker asks the brokers for their API versions until one answers,
// as both binaries do at start. While none is reachable (nothing listening
// yet, a connection reset, a name not resolving yet) it retries with
// back-off, logging once that it waits, until timeout or ctx ends; then the
// error names the brokers and the last failure. A failure that retrying
// cannot fix (SASL refused, a TLS certificate not trusted, another Kafka
// error) returns at once. timeout is --connect-timeout, named in the error.
func (c *Config) WaitForBroker(ctx context.Context, timeout time.Duration, log *slog.Logger) error {
	transport, err := c.Transport()
	if err != nil {
		return err
	}
	defer transport.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(c.Brokers...), Transport: transport}
	brokers := strings.Join(c.Brokers, ",")
	// c.String() names the brokers and the credentials' user, never the
	// password.
	where := c.String()
	start, wait := time.Now(), waitRetryFirst
	for attempt := 1; ; attempt++ {
		err := apiVersions(ctx, client)
		if err == nil {
			if attempt > 1 {
				log.Info("a Kafka broker answered", "brokers", brokers, "attempts", attempt, "waited", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if !retryable(err) {
			return fmt.Errorf("connect to Kafka (%s): %w", where, err)
		}
		if attempt == 1 {
			log.Warn("waiting for a Kafka broker", "brokers", brokers, "connect_timeout", timeout, "err", err)
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
		case <-timer.C:
		}
		if ctx.Err() != nil {
			return fmt.Errorf("connect to Kafka (%s): no broker answered within --connect-timeout %s: %w (%d attempts in %s)",
				where, timeout, err, attempt, time.Since(start).Round(time.Millisecond))
		}
		wait = min(2*wait, waitRetryMax)
	}
}

// apiVersions asks a broker for its API versions.
func apiVersions(ctx context.Context, client *kafka.Client) error {
	resp, err := client.ApiVersions(ctx, &kafka.ApiVersionsRequest{})
	if err != nil {
		return err
	}
	return resp.Error
}

// retryable reports whether a failed attempt to reach a broker may succeed
// later: anything but an answer from Kafka refusing the request (a
// kafka.Error such as SASL authentication failed) and a TLS handshake that
// failed on the certificate or the protocol.
func retryable(err error) bool {
	var kerr kafka.Error
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	var header tls.RecordHeaderError
	return !errors.As(err, &kerr) && !errors.As(err, &unknownCA) && !errors.As(err, &hostname) &&
		!errors.As(err, &invalid) && !errors.As(err, &verify) && !errors.As(err, &header)
}
