package relaycmd

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/edupulse/pulsebus/internal/httpserve"
	"github.com/edupulse/pulsebus/pkg/outbox"
)

// readiness checks the relay's dependencies for /readyz and reports its
// lease state.
type readiness struct {
	pool     *pgxpool.Pool
	client   *kafka.Client
	relay    *outbox.Relay
	name     string
	stopping atomic.Bool
}

// check returns the lines of the /readyz body and whether the relay is
// ready: PostgreSQL and a Kafka broker answer and it is not shutting down.
func (r *readiness) check(ctx context.Context) (lines []string, ok bool) {
	var (
		wg                  sync.WaitGroup
		dbErr, kafkaErr     error
		leaderID            string
		term                int64
		held, leaseRowFound bool
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := r.pool.QueryRow(ctx, `SELECT leader_id, term, expires_at > clock_timestamp() FROM pulsebus.relay_leader WHERE name = $1`,
			r.name).Scan(&leaderID, &term, &held)
		switch {
		case err == nil:
			leaseRowFound = true
		case errors.Is(err, pgx.ErrNoRows):
		default:
			dbErr = err
		}
	}()
	go func() {
		defer wg.Done()
		kafkaErr = pingKafka(ctx, r.client)
	}()
	wg.Wait()

	ok = true
	if r.stopping.Load() {
		ok = false
		lines = append(lines, "not ready: shutting down")
	}
	if dbErr != nil {
		ok = false
		lines = append(lines, "not ready: postgres: "+oneLine(dbErr.Error(), 0))
	}
	if kafkaErr != nil {
		ok = false
		lines = append(lines, "not ready: kafka: "+oneLine(kafkaErr.Error(), 0))
	}
	if ok {
		lines = append(lines, "ready")
	}
	switch {
	case r.relay.IsLeader() && leaseRowFound && leaderID == r.relay.ID():
		lines = append(lines, fmt.Sprintf("lease: leader (relay %s, id %s, term %d)", r.name, r.relay.ID(), term))
	case r.relay.IsLeader():
		lines = append(lines, fmt.Sprintf("lease: leader (relay %s, id %s)", r.name, r.relay.ID()))
	case dbErr != nil:
		lines = append(lines, fmt.Sprintf("lease: standby (relay %s, id %s; leader unknown)", r.name, r.relay.ID()))
	case leaseRowFound && held:
		lines = append(lines, fmt.Sprintf("lease: standby (relay %s, id %s; leader %s, term %d)", r.name, r.relay.ID(), leaderID, term))
	default:
		lines = append(lines, fmt.Sprintf("lease: standby (relay %s, id %s; no leader)", r.name, r.relay.ID()))
	}
	return lines, ok
}

// handler serves httpserve's /metrics and /healthz, and /readyz with the
// lease state in its body.
func handler(gatherer prometheus.Gatherer, ready *readiness) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", httpserve.Handler(gatherer, nil))
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), httpserve.ReadyTimeout)
		defer cancel()
		lines, ok := ready.check(ctx)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprintln(w, strings.Join(lines, "\n"))
	})
	return mux
}

// serveHTTP listens on addr and serves h until ctx is done, then shuts down
// gracefully. done receives the server's final error (nil after a clean
// shutdown) and is closed.
func serveHTTP(ctx context.Context, addr string, h http.Handler) (bound string, done <-chan error, err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on --metrics-addr (METRICS_ADDR) %s: %w", addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	ch := make(chan error, 1)
	go func() {
		defer close(ch)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			ch <- err
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		err := srv.Shutdown(sctx)
		if serr := <-errc; err == nil && !errors.Is(serr, http.ErrServerClosed) {
			err = serr
		}
		ch <- err
	}()
	return ln.Addr().String(), ch, nil
}
