package dispatch

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// UnavailableError is a failed readiness check ([Consumer.Ready]).
// Dependency names what did not answer, "postgres" or "kafka", and is fit
// for anyone to read; Err says why, with the addresses and user and
// database names that belong in logs rather than in an anonymous /readyz
// body.
type UnavailableError struct {
	Dependency string
	Err        error
}

func (e *UnavailableError) Error() string { return e.Dependency + ": " + e.Err.Error() }

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Err }

// pingKafka asks every seed broker at once for its API versions, over a
// new connection made with the consumer's dialer (TLS and SASL included),
// and returns nil as soon as one answers: a real request, so a broker that
// accepts connections but answers nothing (a blackholed network, a hung
// process) fails it when ctx ends. Without a deadline in ctx, each attempt
// is bounded by the dialer's timeout (10 s when it has none).
func (c *Consumer) pingKafka(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // the slower brokers' attempts end with the first answer
	errs := make(chan error, len(c.cfg.Brokers))
	for _, b := range c.cfg.Brokers {
		go func() { errs <- c.pingBroker(ctx, b) }()
	}
	var failed []error
	for range c.cfg.Brokers {
		err := <-errs
		if err == nil {
			return nil
		}
		failed = append(failed, err)
	}
	return errors.Join(failed...)
}

func (c *Consumer) pingBroker(ctx context.Context, broker string) error {
	conn, err := c.cfg.Dialer.DialContext(ctx, "tcp", broker)
	if err != nil {
		return fmt.Errorf("broker %s: %w", broker, err)
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		timeout := c.cfg.Dialer.Timeout
		if timeout <= 0 {
			timeout = 10 * time.Second
		}
		deadline = time.Now().Add(timeout)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := conn.ApiVersions(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no answer: %w", ctx.Err())
		}
		return fmt.Errorf("broker %s: API versions request: %w", broker, err)
	}
	return nil
}
