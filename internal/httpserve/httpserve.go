// Package httpserve runs the small HTTP server both binaries expose:
// /metrics (Prometheus), /healthz (the process is alive) and /readyz (its
// dependencies answer).
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler returns the mux: /metrics from gatherer, /healthz always 200, and
// /readyz 200 when ready returns nil, else 503 with the error text, which
// anyone who can reach the port reads: it must name what is not ready
// without addresses, user or database names (log those). ready runs at
// most once per ReadyCacheTTL, bounded by ReadyTimeout, whatever the number
// of callers (see [Cache]).
func Handler(gatherer prometheus.Gatherer, ready func(context.Context) error) http.Handler {
	var cache *Cache[error]
	if ready != nil {
		cache = NewCache(ReadyCacheTTL, ReadyTimeout, ready)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(gatherer, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if cache != nil {
			ctx, cancel := context.WithTimeout(r.Context(), ReadyTimeout)
			defer cancel()
			err, waitErr := cache.Get(ctx)
			if waitErr != nil {
				err = errors.New("readiness check still running")
			}
			if err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	return mux
}

// Start listens on addr (":0" picks a free port) and serves [Handler] until
// ctx is done, then shuts down gracefully. It returns the bound address and
// a channel that receives the server's final error (nil after a clean
// shutdown) and is then closed.
func Start(ctx context.Context, addr string, gatherer prometheus.Gatherer, ready func(context.Context) error, log *slog.Logger) (string, <-chan error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen on %s for metrics and health: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           Handler(gatherer, ready),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan error, 1)
	go func() {
		defer close(done)
		errc := make(chan error, 1)
		go func() { errc <- srv.Serve(ln) }()
		select {
		case err := <-errc:
			done <- err
			return
		case <-ctx.Done():
		}
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := srv.Shutdown(shutdownCtx)
		if serveErr := <-errc; !errors.Is(serveErr, http.ErrServerClosed) && err == nil {
			err = serveErr
		}
		done <- err
	}()
	if log != nil {
		log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	}
	return ln.Addr().String(), done, nil
}

// Serve is [Start] that blocks until ctx is done and the server stopped.
func Serve(ctx context.Context, addr string, gatherer prometheus.Gatherer, ready func(context.Context) error, log *slog.Logger) error {
	_, done, err := Start(ctx, addr, gatherer, ready, log)
	if err != nil {
		return err
	}
	return <-done
}
