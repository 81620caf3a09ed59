// Package control assembles the control plane process: the gRPC services
// proxies talk to (Destination, Identity, gRPC health; Policy later) on one
// listener, and an admin HTTP server with /ready, /live and /metrics.
package control

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/weft-mesh/weft/internal/control/destination"
	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/control/outbound"
	proxyadmin "github.com/weft-mesh/weft/internal/proxy/admin"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// Defaults for Config.
const (
	DefaultAddr          = "127.0.0.1:8086"
	DefaultAdminAddr     = "127.0.0.1:9996"
	DefaultShutdownGrace = 10 * time.Second
	// DefaultIssuerReloadInterval is how often the identity files are
	// checked for a rotated issuer.
	DefaultIssuerReloadInterval = 10 * time.Second
)

// Config configures a control plane.
type Config struct {
	// Addr is the gRPC listen address; "" means DefaultAddr.
	Addr string
	// AdminAddr is the admin HTTP listen address; "" means DefaultAdminAddr.
	AdminAddr string
	// Store is where resources are read from. Required.
	Store store.Store
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
	// ShutdownGrace bounds how long a graceful stop waits for RPCs to
	// finish before closing connections; 0 means DefaultShutdownGrace.
	ShutdownGrace time.Duration
	// Identity configures the Identity service (the CA); its zero value
	// leaves the service off.
	Identity IdentityConfig
	// Webhook, if set, is served over TLS for the Kubernetes API server
	// (the proxy injector, see internal/inject).
	Webhook *WebhookConfig
	// Pprof serves Go's profiles under /debug/pprof/ on the admin
	// server (--enable-pprof, as Linkerd's controllers have): off by
	// default, since profiles reveal internals and cost CPU.
	Pprof bool
}

// WebhookConfig is an admission webhook the control plane serves.
type WebhookConfig struct {
	// Addr is the HTTPS listen address (--webhook-addr).
	Addr string
	// TLS holds the serving certificate the API server is told to trust
	// (caBundle of the MutatingWebhookConfiguration).
	TLS *tls.Config
	// Handler answers AdmissionReviews.
	Handler http.Handler
}

// IdentityConfig configures the control plane's certificate authority.
type IdentityConfig struct {
	// Dir is the identity directory (D/identity in local mode): the trust
	// anchor and issuer are generated there on first start unless Files
	// are given, and the local token key lives there.
	Dir string
	// Files, all three or none, load the anchors and issuer from elsewhere
	// (--identity-trust-anchors-file and friends).
	Files tlsid.Files
	// TrustDomain is the identities' trust domain; "" means cluster.local.
	TrustDomain string
	// IssuanceLifetime is the leaf lifetime; 0 means 24h.
	IssuanceLifetime time.Duration
	// ClockSkewAllowance backdates leaves; 0 means 20s, negative none.
	ClockSkewAllowance time.Duration
	// Validator checks proxies' tokens; nil means local-mode HMAC tokens
	// keyed by Dir's token key.
	Validator identity.TokenValidator
	// ReloadInterval is how often the CA files are checked for a rotated
	// issuer; 0 means DefaultIssuerReloadInterval, negative never.
	ReloadInterval time.Duration
}

func (c IdentityConfig) enabled() bool {
	return c.Dir != "" || c.Files != (tlsid.Files{}) || c.Validator != nil
}

// files are where the authority is read from.
func (c IdentityConfig) files() tlsid.Files {
	if c.Files != (tlsid.Files{}) {
		return c.Files
	}
	return tlsid.DirFiles(c.Dir)
}

// loadAuthority reads the authority (generating it in Dir on first start
// when generate is set and no files are given).
func loadAuthority(c IdentityConfig, generate bool, logger *slog.Logger) (*tlsid.Authority, error) {
	domain := tlsid.Domain{TrustDomain: c.TrustDomain}
	if err := domain.Validate(); err != nil {
		return nil, fmt.Errorf("control: --identity-trust-domain: %w", err)
	}
	f := c.Files
	var ca *tlsid.Authority
	var err error
	switch {
	case f.TrustAnchors != "" && f.IssuerCertificate != "" && f.IssuerKey != "":
		ca, err = tlsid.Load(f, domain)
	case f != (tlsid.Files{}):
		return nil, errors.New("control: --identity-trust-anchors-file, --identity-issuer-certificate-file and --identity-issuer-key-file go together: give all three or none")
	case c.Dir != "" && generate:
		var generated bool
		ca, generated, err = tlsid.LoadOrGenerate(c.Dir, domain, time.Now())
		if generated {
			logger.Info("generated a trust anchor and issuer", "dir", c.Dir, "notAfter", ca.Issuer.NotAfter)
		}
	case c.Dir != "":
		ca, err = tlsid.Load(tlsid.DirFiles(c.Dir), domain)
	default:
		return nil, errors.New("control: identity needs --identity-dir or the --identity-*-file flags")
	}
	if err != nil {
		return nil, fmt.Errorf("control: identity: %w", err)
	}
	ca.Lifetime, ca.ClockSkew = c.IssuanceLifetime, c.ClockSkewAllowance
	return ca, nil
}

// newIdentity loads (or generates) the authority and builds the service.
func newIdentity(c IdentityConfig, logger *slog.Logger) (*identity.Server, error) {
	ca, err := loadAuthority(c, true, logger)
	if err != nil {
		return nil, err
	}
	v := c.Validator
	if v == nil {
		if c.Dir == "" {
			return nil, errors.New("control: identity needs --identity-dir for the local token key")
		}
		key, err := identity.LoadOrCreateTokenKey(c.Dir)
		if err != nil {
			return nil, fmt.Errorf("control: %w", err)
		}
		v = identity.NewHMACValidator(key)
	}
	return identity.New(identity.Config{Authority: ca, Validator: v, Logger: logger})
}

// watchIssuer reloads the authority when its files change, so an issuer
// can be rotated without restarting the control plane. A change that
// cannot be used (a half-written file, a key that does not match) is
// logged and the current issuer stays.
func (p *Plane) watchIssuer(ctx context.Context) {
	c := p.cfg.Identity
	every := c.ReloadInterval
	if every == 0 {
		every = DefaultIssuerReloadInterval
	}
	if every < 0 {
		return
	}
	files := c.files()
	last := stampFiles(files)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := stampFiles(files)
		if cur == last {
			continue
		}
		last = cur
		ca, err := loadAuthority(c, false, p.log)
		if err == nil {
			err = p.identity.SetAuthority(ca)
		}
		if err != nil {
			p.reloadErrors.Add(1)
			p.log.Warn("identity files changed but cannot be used; keeping the current issuer", "err", err)
		}
	}
}

// stampFiles identifies the files' current contents by size and mtime.
func stampFiles(f tlsid.Files) string {
	var b strings.Builder
	for _, name := range []string{f.TrustAnchors, f.IssuerCertificate, f.IssuerKey} {
		if st, err := os.Stat(name); err == nil {
			fmt.Fprintf(&b, "%d/%d;", st.Size(), st.ModTime().UnixNano())
		} else {
			b.WriteString("-;")
		}
	}
	return b.String()
}

// Plane is a running control plane's listeners and servers.
type Plane struct {
	cfg      Config
	log      *slog.Logger
	lis      net.Listener
	adminLis net.Listener
	// webhookLis is nil without a webhook.
	webhookLis net.Listener
	dest       *destination.Server
	identity   *identity.Server // nil when identity is off
	// reloadErrors counts changes of the identity files that could not be
	// used.
	reloadErrors atomic.Uint64
}

// Listen validates cfg and binds both listeners, so that a port already in
// use is reported before anything starts. Run serves them (or Close
// releases them).
func Listen(cfg Config) (*Plane, error) {
	if cfg.Store == nil {
		return nil, errors.New("control: no store configured")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.AdminAddr == "" {
		cfg.AdminAddr = DefaultAdminAddr
	}
	if cfg.ShutdownGrace <= 0 {
		cfg.ShutdownGrace = DefaultShutdownGrace
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// With identity on, meshed endpoints are announced with their
	// tls_identity in the CA's domain, so proxies reach them over mTLS.
	var domain *tlsid.Domain
	if cfg.Identity.enabled() {
		domain = &tlsid.Domain{TrustDomain: cfg.Identity.TrustDomain}
	}
	dest, err := destination.New(destination.Config{Store: cfg.Store, Logger: cfg.Logger, Identity: domain,
		// Reading the store at start (informers' first lists, or the
		// state file) is by far the largest transient allocation the
		// control plane makes; return it to the OS now rather than
		// over the scavenger's minutes (bench/control: 10,000 pods
		// left ~120 MB of idle heap resident).
		Loaded: debug.FreeOSMemory})
	if err != nil {
		return nil, err
	}
	var id *identity.Server
	if cfg.Identity.enabled() {
		if id, err = newIdentity(cfg.Identity, cfg.Logger); err != nil {
			return nil, err
		}
	}
	lis, err := listen("--addr", "gRPC", cfg.Addr)
	if err != nil {
		return nil, err
	}
	adminLis, err := listen("--admin-addr", "admin", cfg.AdminAddr)
	if err != nil {
		lis.Close()
		return nil, err
	}
	var webhookLis net.Listener
	if cfg.Webhook != nil {
		if webhookLis, err = listen("--webhook-addr", "webhook", cfg.Webhook.Addr); err != nil {
			lis.Close()
			adminLis.Close()
			return nil, err
		}
	}
	return &Plane{cfg: cfg, log: cfg.Logger.With("component", "control"), lis: lis, adminLis: adminLis, webhookLis: webhookLis, dest: dest, identity: id}, nil
}

func listen(flag, what, addr string) (net.Listener, error) {
	lis, err := net.Listen("tcp", addr)
	if err == nil {
		return lis, nil
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("control: %s address %s is already in use (is another 'weft control' or mesh running?); stop it or choose another address with %s", what, addr, flag)
	}
	return nil, fmt.Errorf("control: cannot listen for %s on %s (check %s): %w", what, addr, flag, err)
}

// Close releases the listeners of a Plane that will not Run.
func (p *Plane) Close() error {
	err := errors.Join(p.lis.Close(), p.adminLis.Close())
	if p.webhookLis != nil {
		err = errors.Join(err, p.webhookLis.Close())
	}
	return err
}

// WebhookAddr returns the webhook listener's address, or nil without one.
func (p *Plane) WebhookAddr() net.Addr {
	if p.webhookLis == nil {
		return nil
	}
	return p.webhookLis.Addr()
}

// Addr returns the gRPC listener's address.
func (p *Plane) Addr() net.Addr { return p.lis.Addr() }

// AdminAddr returns the admin listener's address.
func (p *Plane) AdminAddr() net.Addr { return p.adminLis.Addr() }

// Destination returns the Destination server, for its metrics.
func (p *Plane) Destination() *destination.Server { return p.dest }

// Identity returns the Identity server, or nil when identity is off.
func (p *Plane) Identity() *identity.Server { return p.identity }

// Run serves until ctx ends, then stops gracefully: Destination streams end
// (proxies reconnect to the next control plane), in-flight RPCs get
// ShutdownGrace to finish, and then connections are closed. It returns an
// error only if a server fails.
func (p *Plane) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	g := grpc.NewServer(
		// Proxies keep idle control streams open for long periods; allow
		// their keepalive pings rather than answering with GOAWAY.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// Find clients that vanished without closing their streams.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Minute, Timeout: 20 * time.Second}),
		// Every proxy holds a connection that is idle nearly all the
		// time: give its write buffer back between flushes, and read
		// through a small buffer (updates are small). At 1,000 proxies
		// the defaults (32 KiB each way per connection) were most of
		// the control plane's memory (bench/control).
		grpc.SharedWriteBuffer(true),
		grpc.ReadBufferSize(4<<10),
	)
	p.dest.Register(g)
	// Failure accrual from Service annotations (routes, retries and
	// timeouts travel in Destination profiles).
	outbound.New(p.cfg.Store, p.cfg.Logger).Register(g)
	if p.identity != nil {
		p.identity.Register(g)
		go p.watchIssuer(ctx)
	}
	// gRPC health lets 'weft check' (and Kubernetes probes) ask whether the
	// control plane answers at all.
	hs := health.NewServer()
	healthpb.RegisterHealthServer(g, hs)
	admin := &http.Server{Handler: p.adminHandler(), ReadHeaderTimeout: 10 * time.Second}

	errc := make(chan error, 4)
	destDone := make(chan struct{})
	go func() {
		defer close(destDone)
		errc <- p.dest.Run(ctx)
	}()
	go func() {
		if err := g.Serve(p.lis); err != nil {
			errc <- fmt.Errorf("control: gRPC server: %w", err)
		}
	}()
	go func() {
		if err := admin.Serve(p.adminLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("control: admin server: %w", err)
		}
	}()
	var webhook *http.Server
	if p.webhookLis != nil {
		webhook = &http.Server{Handler: p.cfg.Webhook.Handler, TLSConfig: p.cfg.Webhook.TLS, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := webhook.ServeTLS(p.webhookLis, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("control: webhook server: %w", err)
			}
		}()
		p.log.Info("admission webhook serving", "addr", p.webhookLis.Addr().String())
	}
	p.log.Info("control plane serving", "grpc", p.lis.Addr().String(), "admin", p.adminLis.Addr().String())

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	cancel()
	hs.Shutdown()
	p.log.Info("control plane stopping", "grace", p.cfg.ShutdownGrace)
	// Run returning ends every Destination stream, which lets GracefulStop
	// finish promptly; the timer bounds it anyway.
	<-destDone
	stopped := make(chan struct{})
	go func() { g.GracefulStop(); close(stopped) }()
	timer := time.NewTimer(p.cfg.ShutdownGrace)
	defer timer.Stop()
	select {
	case <-stopped:
	case <-timer.C:
		p.log.Warn("graceful stop timed out; closing connections")
		g.Stop()
		<-stopped
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), p.cfg.ShutdownGrace)
	defer cancelShutdown()
	if err := admin.Shutdown(shutdownCtx); err != nil {
		admin.Close()
	}
	if webhook != nil {
		if err := webhook.Shutdown(shutdownCtx); err != nil {
			webhook.Close()
		}
	}
	return runErr
}

func (p *Plane) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "live")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if !p.dest.Ready() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "not ready: the store has not been read yet")
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		if err := p.dest.Metrics().WritePrometheus(w); err != nil {
			p.log.Debug("writing metrics", "err", err)
		}
		if p.identity != nil {
			if err := p.identity.WritePrometheus(w); err != nil {
				p.log.Debug("writing metrics", "err", err)
			}
			fmt.Fprintf(w, "# HELP identity_issuer_reload_errors_total Changes of the identity files that could not be used.\n# TYPE identity_issuer_reload_errors_total counter\nidentity_issuer_reload_errors_total %d\n", p.reloadErrors.Load())
		}
	})
	if p.cfg.Pprof {
		return proxyadmin.WithPprof(mux)
	}
	return mux
}
