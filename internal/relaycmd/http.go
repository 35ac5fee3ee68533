package relaycmd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
// lease state. The body, which anyone who reaches the port can read, names
// what is not ready and the lease state, never the relay's name or id, nor
// addresses, user or database names: those go to the log, when readiness
// changes.
type readiness struct {
	pool     *pgxpool.Pool
	client   *kafka.Client
	relay    *outbox.Relay
	name     string
	log      *slog.Logger
	stopping atomic.Bool

	cacheOnce sync.Once
	cache     *httpserve.Cache[readyReport]
	mu        sync.Mutex
	lastCause string // the causes last logged, "" when ready
}

// readyReport is one check of the relay's dependencies.
type readyReport struct {
	pending             bool // the caller gave up waiting for a check
	dbErr, kafkaErr     error
	leader              bool // this relay holds the lease, as it knew at the check
	ownsLeaseRow        bool // the lease row names this relay
	leaderID            string
	term                int64
	held, leaseRowFound bool
}

// report returns the latest check, running one at most every
// httpserve.ReadyCacheTTL however many callers ask (httpserve.Cache).
func (r *readiness) report(ctx context.Context) readyReport {
	r.cacheOnce.Do(func() { r.cache = httpserve.NewCache(httpserve.ReadyCacheTTL, httpserve.ReadyTimeout, r.check) })
	rep, err := r.cache.Get(ctx)
	if err != nil {
		rep.pending = true
	}
	return rep
}

// check asks PostgreSQL for the lease row and a Kafka broker for its API
// versions, at once, and logs the causes when they change.
func (r *readiness) check(ctx context.Context) readyReport {
	var (
		wg  sync.WaitGroup
		rep readyReport
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		err := r.pool.QueryRow(ctx, `SELECT leader_id, term, expires_at > clock_timestamp() FROM pulsebus.relay_leader WHERE name = $1`,
			r.name).Scan(&rep.leaderID, &rep.term, &rep.held)
		switch {
		case err == nil:
			rep.leaseRowFound = true
		case errors.Is(err, pgx.ErrNoRows):
		default:
			rep.dbErr = err
		}
	}()
	go func() {
		defer wg.Done()
		rep.kafkaErr = pingKafka(ctx, r.client)
	}()
	wg.Wait()
	rep.leader = r.relay.IsLeader()
	rep.ownsLeaseRow = rep.leaseRowFound && rep.leaderID == r.relay.ID()
	r.logChange(rep)
	return rep
}

// logChange logs the causes of a failed check at warn when they differ
// from the last ones logged, and the return to ready at info.
func (r *readiness) logChange(rep readyReport) {
	var causes []string
	if rep.dbErr != nil {
		causes = append(causes, "postgres: "+oneLine(rep.dbErr.Error(), 0))
	}
	if rep.kafkaErr != nil {
		causes = append(causes, "kafka: "+oneLine(rep.kafkaErr.Error(), 0))
	}
	cause := strings.Join(causes, "; ")
	r.mu.Lock()
	changed := cause != r.lastCause
	r.lastCause = cause
	r.mu.Unlock()
	switch {
	case !changed || r.log == nil:
	case cause != "":
		r.log.Warn("not ready", "err", cause)
	default:
		r.log.Info("ready again")
	}
}

// lines renders rep as the /readyz body and says whether the relay is
// ready: PostgreSQL and a Kafka broker answer and it is not shutting down.
func (r *readiness) lines(rep readyReport) (lines []string, ok bool) {
	ok = true
	if r.stopping.Load() {
		ok = false
		lines = append(lines, "not ready: shutting down")
	}
	if rep.pending {
		ok = false
		lines = append(lines, "not ready: readiness check still running")
	}
	if rep.dbErr != nil {
		ok = false
		lines = append(lines, "not ready: postgres does not answer")
	}
	if rep.kafkaErr != nil {
		ok = false
		lines = append(lines, "not ready: kafka does not answer")
	}
	if ok {
		lines = append(lines, "ready")
	}
	switch {
	case rep.leader && rep.ownsLeaseRow:
		lines = append(lines, fmt.Sprintf("lease: leader (term %d)", rep.term))
	case rep.leader:
		lines = append(lines, "lease: leader")
	case rep.dbErr != nil || rep.pending:
		lines = append(lines, "lease: standby (leader unknown)")
	case rep.leaseRowFound && rep.held:
		lines = append(lines, fmt.Sprintf("lease: standby (another relay leads, term %d)", rep.term))
	default:
		lines = append(lines, "lease: standby (no leader)")
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
		lines, ok := ready.lines(ready.report(ctx))
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
