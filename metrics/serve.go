package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Timeouts of the metrics server: a scrape is one small request, so a peer
// slower than this is stuck or hostile.
const (
	readHeaderTimeout = 5 * time.Second
	writeTimeout      = 30 * time.Second
	shutdownTimeout   = 2 * time.Second
)

// CheckListen says whether addr may be the metrics endpoint: a host:port on
// a loopback address (127.0.0.1, ::1 or localhost) or an absolute Unix
// socket path. The endpoint has no authentication, and queue and job type
// names are the user's; anything wider than the machine must go through a
// proxy that adds it.
func CheckListen(addr string) error {
	if filepath.IsAbs(addr) {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is neither host:port nor an absolute socket path: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%q is not a loopback address (127.0.0.1, ::1 or localhost): the endpoint has no authentication", addr)
}

// IsSocketPath reports whether addr (already checked) names a Unix socket.
func IsSocketPath(addr string) bool { return filepath.IsAbs(addr) }

// Handler serves the metrics in the exposition format. A store that cannot
// be read fails only its own metrics; the rest are still served.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Serve answers GET /metrics on ln until ctx ends, then closes it; it owns
// ln. It returns nil after a clean stop.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, log *slog.Logger) error {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout, WriteTimeout: writeTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	stopped := make(chan error, 1)
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		stopped <- srv.Shutdown(sctx)
	})
	err := srv.Serve(ln)
	if !errors.Is(err, http.ErrServerClosed) {
		if stop() { // Serve failed on its own: nothing else will close ln
			ln.Close()
		}
		return fmt.Errorf("serve metrics: %w", err)
	}
	if err := <-stopped; err != nil {
		srv.Close()
		return fmt.Errorf("stop metrics server: %w", err)
	}
	return nil
}
