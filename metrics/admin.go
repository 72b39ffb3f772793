package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultAdminAddr is ADMIN_ADDR's default (docs/SPEC.md §5).
const DefaultAdminAddr = ":9464"

// Admin server timeouts. Probes and scrapes are small; the limits keep a slow
// or stuck client from holding a connection.
const (
	adminReadHeaderTimeout = 5 * time.Second
	adminReadTimeout       = 10 * time.Second
	adminWriteTimeout      = 30 * time.Second // a /metrics scrape under load
	adminIdleTimeout       = 60 * time.Second
	adminMaxHeaderBytes    = 64 << 10
)

// AdminConfig configures the admin HTTP server.
type AdminConfig struct {
	// Addr is the listen address, ADMIN_ADDR; "" means DefaultAdminAddr
	// (":9464"). "127.0.0.1:0" picks a free loopback port (see Admin.Addr).
	Addr string
	// Ready is /readyz's check: nil error means ready; a non-nil error's
	// text is the 503 body. It is called on every /readyz request and every
	// scrape (graphops_ready), possibly concurrently, so it must be cheap,
	// safe for concurrent use and must not block. A nil Ready means always
	// ready.
	Ready func() error
}

// Validate reports a malformed Addr, naming ADMIN_ADDR.
func (c AdminConfig) Validate() error {
	_, port, err := net.SplitHostPort(c.addr())
	if err != nil {
		return fmt.Errorf("ADMIN_ADDR %q: want host:port: %w", c.addr(), err)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("ADMIN_ADDR %q: port %q is not a number from 0 to 65535", c.addr(), port)
	}
	return nil
}

func (c AdminConfig) addr() string {
	if c.Addr == "" {
		return DefaultAdminAddr
	}
	return c.Addr
}

// Admin serves /metrics, /healthz and /readyz (docs/SPEC.md §6).
type Admin struct {
	cfg AdminConfig
	log *slog.Logger
	srv *http.Server

	// lastReady remembers the last /readyz answer (0 none, 1 ready, 2 not
	// ready) so that changes are logged once, not on every probe.
	lastReady atomic.Int32

	mu     sync.Mutex
	ln     net.Listener
	served chan struct{} // closed when Serve returns
}

// NewAdmin returns a stopped admin server for m. It also makes m's
// graphops_ready gauge follow cfg.Ready. A nil log discards logs.
func NewAdmin(cfg AdminConfig, m *Metrics, log *slog.Logger) *Admin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = func() error { return nil }
	}
	m.setReady(cfg.Ready)
	a := &Admin{cfg: cfg, log: log}

	mux := http.NewServeMux()
	if m != nil {
		mux.Handle("GET /metrics", m.Handler())
	}
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	a.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: adminReadHeaderTimeout,
		ReadTimeout:       adminReadTimeout,
		WriteTimeout:      adminWriteTimeout,
		IdleTimeout:       adminIdleTimeout,
		MaxHeaderBytes:    adminMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return a
}

// Start listens on the configured address and serves in the background. It
// fails at once, with an error naming ADMIN_ADDR, when the address is
// malformed or cannot be bound (already in use): start-up must stop there.
func (a *Admin) Start() error {
	if err := a.cfg.Validate(); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln != nil {
		return errors.New("metrics: admin server already started")
	}
	ln, err := net.Listen("tcp", a.cfg.addr())
	if err != nil {
		return fmt.Errorf("ADMIN_ADDR %s: %w", a.cfg.addr(), err)
	}
	a.ln = ln
	a.served = make(chan struct{})
	go func() {
		defer close(a.served)
		if err := a.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("admin server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	a.log.Info("admin server listening", "addr", ln.Addr().String())
	return nil
}

// Addr is the address the server listens on (the port chosen for ":0"), or
// "" before Start.
func (a *Admin) Addr() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ln == nil {
		return ""
	}
	return a.ln.Addr().String()
}

// Shutdown stops accepting connections and waits, until ctx is done, for the
// requests being served. It is a no-op before Start.
func (a *Admin) Shutdown(ctx context.Context) error {
	a.mu.Lock()
	served := a.served
	a.mu.Unlock()
	if served == nil {
		return nil
	}
	if err := a.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("metrics: admin server shutdown: %w", err)
	}
	select {
	case <-served:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("metrics: admin server shutdown: %w", ctx.Err())
	}
}

// healthz answers 200 while the process can serve HTTP at all: liveness must
// not depend on the broker, or a broker outage would restart every pod.
func (a *Admin) healthz(w http.ResponseWriter, _ *http.Request) {
	writeText(w, http.StatusOK, "ok")
}

func (a *Admin) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := a.cfg.Ready(); err != nil {
		if a.lastReady.Swap(2) != 2 {
			a.log.Warn("not ready", "reason", err.Error())
		}
		writeText(w, http.StatusServiceUnavailable, err.Error())
		return
	}
	if a.lastReady.Swap(1) != 1 {
		a.log.Info("ready")
	}
	writeText(w, http.StatusOK, "ready")
}

func writeText(w http.ResponseWriter, status int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}
