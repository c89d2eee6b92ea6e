// Package observe serves every role's operational endpoints on its admin
// listener: /healthz (the process is alive), /readyz (its dependencies
// answer) and /metrics (Prometheus).
package observe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fanout-dev/fanout/internal/redact"
	"github.com/fanout-dev/fanout/internal/secret"
)

// Check is one readiness check; it returns nil when ready.
type Check func(ctx context.Context) error

// Server is a role's admin listener.
type Server struct {
	reg    *prometheus.Registry
	log    *slog.Logger
	mux    *http.ServeMux
	mu     sync.Mutex
	checks map[string]Check
	addr   string
	tls    *tls.Config
	mtls   bool
	limits Limits
}

// NewServer returns a server with a fresh registry holding the Go and
// process collectors. Extra handlers can be added with Handle.
func NewServer(log *slog.Logger) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s := &Server{reg: reg, log: log, mux: http.NewServeMux(), checks: map[string]Check{}, limits: DefaultLimits()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	s.mux.HandleFunc("GET /readyz", s.ready)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	return s
}

// UseTLS makes the listener serve HTTPS with the certificate and key in
// the given PEM files, followed by polling (see UseKeyPair). Call it
// before Serve.
func (s *Server) UseTLS(certFile, keyFile string) error {
	kp, err := (*secret.Store)(nil).KeyPair("admin.tls_cert_file", certFile, "admin.tls_key_file", keyFile)
	if err != nil {
		return fmt.Errorf("admin listener TLS: load %s and %s: %w", certFile, keyFile, err)
	}
	s.UseKeyPair(kp)
	return nil
}

// UseKeyPair makes the listener serve HTTPS with kp's current pair: a
// rotated certificate is served from the next handshake on. Call it
// before Serve.
func (s *Server) UseKeyPair(kp *secret.KeyPair) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	kp.ServerConfig(c)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tls = c
}

// UseClientCA turns on mutual TLS: every route but /healthz, /readyz and
// /metrics needs a client certificate issued by a CA of the PEM file
// (verified in the handshake: a certificate of another CA fails it).
// Those three stay open to certificate-less clients because kubelet
// probes present none; they change nothing and reveal no secret. Call it
// after UseTLS.
func (s *Server) UseClientCA(caFile string) error {
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return fmt.Errorf("admin listener client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return fmt.Errorf("admin listener client CA: %s holds no PEM certificate", caFile)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tls == nil {
		return errors.New("admin listener client CA: set admin.tls_cert_file and admin.tls_key_file too (mutual TLS needs TLS)")
	}
	s.tls.ClientCAs = pool
	s.tls.ClientAuth = tls.VerifyClientCertIfGiven
	s.mtls = true
	return nil
}

// openPaths are the routes a client without a certificate may call under
// mutual TLS: probes and scrapes.
var openPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// requireClientCert refuses requests without a verified client
// certificate, but for openPaths.
func requireClientCert(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !openPaths[r.URL.Path] && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "a client certificate issued by admin.tls_client_ca_file is required", "code": "client_certificate_required"}` + "\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Limits bound what one client may hold of the listener, so that a slow
// or hostile client (slow loris) cannot keep connections open. They are
// http.Server's fields of the same names; zero fields take DefaultLimits'.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing an answer, from the end of the request's
	// headers. A handler that legitimately runs longer (a rate-limited
	// replay) extends its own deadline with http.ResponseController.
	WriteTimeout time.Duration
	// IdleTimeout bounds an idle keep-alive connection.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (answered 431 above).
	MaxHeaderBytes int
}

// DefaultLimits are the limits of config.Default's admin section.
func DefaultLimits() Limits {
	return Limits{ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second,
		IdleTimeout: 120 * time.Second, MaxHeaderBytes: 64 << 10}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.ReadHeaderTimeout <= 0 {
		l.ReadHeaderTimeout = d.ReadHeaderTimeout
	}
	if l.ReadTimeout <= 0 {
		l.ReadTimeout = d.ReadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	if l.IdleTimeout <= 0 {
		l.IdleTimeout = d.IdleTimeout
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return l
}

// SetLimits sets the listener's limits (default DefaultLimits). Call it
// before Serve.
func (s *Server) SetLimits(l Limits) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limits = l.withDefaults()
}

// Registry is where the role registers its metrics.
func (s *Server) Registry() *prometheus.Registry { return s.reg }

// AddCheck adds a readiness check under name.
func (s *Server) AddCheck(name string, c Check) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks[name] = c
}

// Handle adds a handler (the admin API adds its routes here).
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Handler returns the server's handler (tests).
func (s *Server) Handler() http.Handler { return s.mux }

// Addr returns the address the server listens on once Serve has started.
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) ready(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	names := make([]string, 0, len(s.checks))
	for n := range s.checks {
		names = append(names, n)
	}
	checks := make(map[string]Check, len(s.checks))
	for n, c := range s.checks {
		checks[n] = c
	}
	s.mu.Unlock()
	sort.Strings(names)
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	result := map[string]string{}
	ok := true
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := checks[n](ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				ok = false
				result[n] = redact.Credentials(err.Error()) // /readyz needs no token
			} else {
				result[n] = "ok"
			}
		}()
	}
	wg.Wait()
	w.Header().Set("Content-Type", "application/json")
	if !ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": result})
}

// Serve listens on addr until ctx ends. An empty addr disables the server.
func (s *Server) Serve(ctx context.Context, addr string) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin listener %s: %w (set admin.listen or FANOUT_ADMIN_LISTEN to a free address)", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener serves on ln until ctx ends.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	s.addr = ln.Addr().String()
	tc := s.tls
	l := s.limits
	var h http.Handler = s.mux
	mtls := s.mtls
	if mtls {
		h = requireClientCert(h)
	}
	s.mu.Unlock()
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: l.ReadHeaderTimeout, ReadTimeout: l.ReadTimeout,
		WriteTimeout: l.WriteTimeout, IdleTimeout: l.IdleTimeout, MaxHeaderBytes: l.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("admin listener started", "addr", s.addr, "tls", tc != nil, "client_certificates", mtls)
	select {
	case err := <-errc:
		return fmt.Errorf("admin listener: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("admin listener shutdown: %w", err)
	}
	return nil
}
