// Package proxy assembles weft's sidecar proxy: the outbound listener the
// app's HTTP_PROXY points at, one inbound listener per container port, the
// Destination client, and the admin server. The features live in
// subpackages, one each (detect, discovery, balance, forward, outbound,
// inbound, admin); this package only wires them, in one place.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/admin"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/proxy/inbound"
	"github.com/weft-mesh/weft/internal/proxy/outbound"
	"github.com/weft-mesh/weft/internal/proxy/tap"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// InboundPort maps an inbound listener to the app port behind it.
type InboundPort struct {
	Listen string // address to listen on, host:port
	App    string // the app's address, host:port
}

// ParseInbound parses `LISTEN=APP`, e.g. `127.0.0.1:4143=127.0.0.1:8080`.
func ParseInbound(s string) (InboundPort, error) {
	l, a, ok := strings.Cut(s, "=")
	if !ok {
		return InboundPort{}, fmt.Errorf("proxy: --inbound %q: want LISTEN=APP, e.g. 127.0.0.1:4143=127.0.0.1:8080", s)
	}
	for _, addr := range []string{l, a} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return InboundPort{}, fmt.Errorf("proxy: --inbound %q: %q is not host:port: %w", s, addr, err)
		}
	}
	if _, p, _ := net.SplitHostPort(a); p == "0" {
		return InboundPort{}, fmt.Errorf("proxy: --inbound %q: the app port cannot be 0", s)
	}
	return InboundPort{Listen: l, App: a}, nil
}

// Config configures the proxy.
type Config struct {
	ControlAddr    string        // Destination service, host:port
	OutboundAddr   string        // outbound listener, host:port (port 0 picks one)
	Inbound        []InboundPort // inbound listeners
	AdminAddr      string        // admin server, host:port
	TapAddr        string        // tap server (io.linkerd.proxy.tap.Tap), host:port; "" serves none
	Namespace      string        // the workload's namespace
	Pod            string        // the workload's pod name
	Deployment     string        // the workload's deployment, for metric labels
	ServiceAccount string        // the workload's service account
	// Transparent is Kubernetes mode behind weft proxy-init's iptables
	// rules: the outbound listener also takes redirected connections (their
	// original destination from SO_ORIGINAL_DST), and InboundAddr takes
	// every redirected inbound connection, sent to 127.0.0.1 and the port
	// the client dialed. Linux only.
	Transparent bool
	// InboundAddr is the transparent inbound listener, host:port.
	InboundAddr string
	// OriginalDst, when set, is where the outbound listener learns a
	// connection's original destination, instead of SO_ORIGINAL_DST: tests
	// drive transparent outbound routing with it, without iptables. It
	// applies with or without Transparent; nil means SO_ORIGINAL_DST in
	// transparent mode, none otherwise.
	OriginalDst func(net.Conn) (netip.AddrPort, error)
	// ShutdownGrace bounds the drain of in-flight requests; zero means 30s.
	ShutdownGrace time.Duration
	// DetectTimeout bounds protocol detection; zero means 10s.
	DetectTimeout time.Duration
	// DiscoveryTimeout bounds the wait for the control plane's first answer
	// about a name; zero means 3s.
	DiscoveryTimeout time.Duration
	// Identity, when set, gives the proxy its mesh identity: it gets a
	// certificate from the control plane's Identity service (at
	// ControlAddr), reports ready only once it has one, serves
	// /identity.json, terminates mTLS on its inbound ports and reaches
	// meshed endpoints over mTLS. nil runs without identity (plaintext).
	Identity *IdentityConfig
	// AdminPprof serves Go's runtime profiles (CPU, heap, allocations,
	// goroutines, ...) at /debug/pprof/ on the admin server. Off by default.
	AdminPprof bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// IdentityConfig configures the proxy's identity.
type IdentityConfig struct {
	// TokenFile holds the workload's token; "" means
	// $WEFT_PROXY_IDENTITY_TOKEN.
	TokenFile string
	// AnchorsFile holds the PEM trust anchors; "" means
	// $WEFT_PROXY_IDENTITY_TRUST_ANCHORS.
	AnchorsFile string
	// Domain is the mesh's identity domain (zero: weft / cluster.local).
	Domain tlsid.Domain
	// MinRefresh lowers the shortest renewal delay (tests); 0 = default.
	MinRefresh time.Duration
}

// Validate reports the first missing or malformed setting.
func (c *Config) Validate() error {
	var errs []error
	for _, f := range []struct{ name, v string }{
		{"--control-addr", c.ControlAddr}, {"--outbound-addr", c.OutboundAddr}, {"--admin-addr", c.AdminAddr},
	} {
		if f.v == "" {
			errs = append(errs, fmt.Errorf("proxy: %s is required", f.name))
		} else if _, _, err := net.SplitHostPort(f.v); err != nil {
			errs = append(errs, fmt.Errorf("proxy: %s %q is not host:port: %w", f.name, f.v, err))
		}
	}
	if c.Namespace == "" {
		errs = append(errs, errors.New("proxy: --namespace is required (short service names resolve in it)"))
	}
	if c.Transparent {
		if _, _, err := net.SplitHostPort(c.InboundAddr); err != nil {
			errs = append(errs, fmt.Errorf("proxy: --transparent needs --inbound-addr host:port (the port weft proxy-init redirects inbound traffic to), got %q: %w", c.InboundAddr, err))
		}
	} else if c.InboundAddr != "" {
		errs = append(errs, errors.New("proxy: --inbound-addr is for --transparent mode; use --inbound LISTEN=APP otherwise"))
	}
	return errors.Join(errs...)
}

// Proxy is a proxy whose listeners are bound.
type Proxy struct {
	cfg      Config
	log      *slog.Logger
	outLn    net.Listener
	inLns    []net.Listener
	tpLn     net.Listener // the transparent inbound listener; nil without Transparent
	adminLn  net.Listener
	tapLn    net.Listener // nil without TapAddr
	tap      *tap.Tapper  // nil without TapAddr
	registry *metrics.Registry
	ready    atomic.Bool
	idConn   *grpc.ClientConn      // to the Identity service; nil without identity
	identity *proxyidentity.Client // nil without identity
	mesh     *tlsid.Mesh           // nil without identity
}

// Listen validates cfg and binds every listener, so that address conflicts
// fail before anything runs.
func Listen(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Proxy{cfg: cfg, log: cfg.Logger.With("component", "proxy"), registry: metrics.NewRegistry()}
	var lns []net.Listener
	listen := func(what, addr string) (net.Listener, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("proxy: %s listener on %s: %w", what, addr, err)
		}
		lns = append(lns, ln)
		return ln, nil
	}
	var err error
	if p.outLn, err = listen("outbound", cfg.OutboundAddr); err != nil {
		return nil, err
	}
	for _, in := range cfg.Inbound {
		ln, err := listen("inbound", in.Listen)
		if err != nil {
			return nil, err
		}
		p.inLns = append(p.inLns, ln)
	}
	if cfg.Transparent {
		if p.tpLn, err = listen("transparent inbound", cfg.InboundAddr); err != nil {
			return nil, err
		}
	}
	if p.adminLn, err = listen("admin", cfg.AdminAddr); err != nil {
		return nil, err
	}
	if cfg.TapAddr != "" {
		if p.tapLn, err = listen("tap", cfg.TapAddr); err != nil {
			return nil, err
		}
		p.tap = tap.New(tap.Config{Logger: cfg.Logger, Labels: map[string]string{
			"namespace": cfg.Namespace, "pod": cfg.Pod, "deployment": cfg.Deployment, "serviceaccount": cfg.ServiceAccount}})
	}
	if id := cfg.Identity; id != nil {
		// Its own connection: Certify must not queue behind discovery.
		if p.idConn, err = grpc.NewClient(cfg.ControlAddr, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			p.identity, p.mesh, err = proxyidentity.Setup(proxyidentity.Options{
				Conn: p.idConn, Namespace: cfg.Namespace, ServiceAccount: cfg.ServiceAccount,
				Domain: id.Domain, TokenFile: id.TokenFile, AnchorsFile: id.AnchorsFile,
				MinRefresh: id.MinRefresh, Logger: cfg.Logger,
			})
		}
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			if p.idConn != nil {
				p.idConn.Close()
			}
			return nil, fmt.Errorf("proxy: %w (the supervisor gives each proxy its token and anchors; without them run with --disable-identity)", err)
		}
	}
	return p, nil
}

// OutboundAddr returns the bound outbound address.
func (p *Proxy) OutboundAddr() string { return p.outLn.Addr().String() }

// InboundAddrs returns the bound inbound addresses, in flag order, then
// the transparent inbound listener's.
func (p *Proxy) InboundAddrs() []string {
	out := make([]string, len(p.inLns), len(p.inLns)+1)
	for i, ln := range p.inLns {
		out[i] = ln.Addr().String()
	}
	if p.tpLn != nil {
		out = append(out, p.tpLn.Addr().String())
	}
	return out
}

// AdminAddr returns the bound admin address.
func (p *Proxy) AdminAddr() string { return p.adminLn.Addr().String() }

// TapAddr returns the bound tap address, "" without a tap server.
func (p *Proxy) TapAddr() string {
	if p.tapLn == nil {
		return ""
	}
	return p.tapLn.Addr().String()
}

// Tap returns the proxy's tap, nil without a tap server.
func (p *Proxy) Tap() *tap.Tapper { return p.tap }

// Registry returns the proxy's metrics.
func (p *Proxy) Registry() *metrics.Registry { return p.registry }

// Identity returns the proxy's identity ("" without identity).
func (p *Proxy) Identity() string {
	if p.identity == nil {
		return ""
	}
	return p.identity.Name()
}

// isReady: serving, and (with identity) holding a certificate, so that
// peers are never sent to a proxy that cannot yet accept mTLS.
func (p *Proxy) isReady() bool {
	if !p.ready.Load() {
		return false
	}
	if p.identity == nil {
		return true
	}
	select {
	case <-p.identity.Ready():
		return true
	default:
		return false
	}
}

// Run serves until ctx ends, then drains and returns. A failing listener
// stops the whole proxy with its error.
func (p *Proxy) Run(ctx context.Context) error {
	cfg := p.cfg
	res, err := discovery.Dial(cfg.ControlAddr, discovery.Config{
		Namespace: cfg.Namespace,
		Pod:       cfg.Pod,
		Logger:    cfg.Logger,
	})
	if err != nil {
		return fmt.Errorf("proxy: %w", err)
	}
	defer res.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	pm := metrics.NewProxy(p.registry)
	common := metrics.L("namespace", cfg.Namespace, "pod", cfg.Pod, "deployment", cfg.Deployment)
	outLabels := metrics.L("direction", "outbound").Merge(common)
	inLabels := metrics.L("direction", "inbound").Merge(common)

	tapper := p.tap // nil without a tap server: the data path taps nothing
	tr := outbound.NewTransport(outbound.TransportConfig{
		Resolver:         res,
		Metrics:          pm.HTTP(outLabels),
		Routes:           metrics.NewRoutes(p.registry, outLabels),
		DiscoveryTimeout: cfg.DiscoveryTimeout,
		TLS:              p.mesh,
		Logger:           cfg.Logger,
		Tap:              tapper,
	})
	defer tr.CloseIdleConnections()
	out := outbound.NewServer(outbound.Config{
		Transport:     tr,
		TCP:           pm.TCP(outLabels.With("peer", "src")),
		DetectTimeout: cfg.DetectTimeout,
		ShutdownGrace: cfg.ShutdownGrace,
		Logger:        cfg.Logger,
		OriginalDst:   originalDst(cfg),
	})
	inHTTP := pm.HTTP(inLabels)
	inTCPLabels := inLabels.With("peer", "src")
	inTCP := pm.TCP(inTCPLabels)
	inTCPFor := func(tls metrics.Labels) *metrics.TCP { return pm.TCP(inTCPLabels.Merge(tls)) }

	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	run := func(f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errOnce.Do(func() { firstErr = err; cancel() })
			}
		}()
	}
	run(func() error { res.Run(ctx); return nil })
	if p.identity != nil {
		defer p.idConn.Close()
		run(func() error { p.identity.Run(ctx); return nil })
	}
	run(func() error { return out.Serve(ctx, p.outLn) })
	for i, ln := range append(p.inLns[:len(p.inLns):len(p.inLns)], p.tpLn) {
		if ln == nil {
			break // no transparent listener
		}
		var app string
		var appFor func(net.Conn) (string, error)
		if i < len(cfg.Inbound) {
			app = cfg.Inbound[i].App
		} else {
			appFor = transparentApp
		}
		in := inbound.NewServer(inbound.Config{
			App:           app,
			AppFor:        appFor,
			HTTP:          inHTTP,
			TCP:           inTCP,
			TCPFor:        inTCPFor,
			DetectTimeout: cfg.DetectTimeout,
			ShutdownGrace: cfg.ShutdownGrace,
			TLS:           p.mesh,
			Identity:      p.Identity(),
			Tap:           tapper,
			Logger:        cfg.Logger,
		})
		run(func() error { return in.Serve(ctx, ln) })
	}
	adminHandler := admin.Handler(p.registry, p.isReady)
	if p.identity != nil {
		im := newIdentityMetrics(p.registry, p.identity)
		mux := http.NewServeMux()
		mux.Handle("/", adminHandler)
		mux.Handle("GET "+proxyidentity.AdminPath, p.identity)
		next := adminHandler
		mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
			im.update()
			next.ServeHTTP(w, r)
		})
		adminHandler = mux
	}
	if cfg.AdminPprof {
		adminHandler = admin.WithPprof(adminHandler)
	}
	run(func() error { return admin.Serve(ctx, p.adminLn, adminHandler) })
	if tapper != nil {
		run(func() error { return tapper.Serve(ctx, p.tapLn) })
	}
	p.ready.Store(true)
	p.log.Info("proxy started", "outbound", p.OutboundAddr(), "inbound", p.InboundAddrs(), "admin", p.AdminAddr(), "tap", p.TapAddr(),
		"control", cfg.ControlAddr, "namespace", cfg.Namespace, "pod", cfg.Pod, "identity", p.Identity())
	<-ctx.Done()
	p.ready.Store(false)
	wg.Wait()
	p.log.Info("proxy stopped")
	return firstErr
}

// identityMetrics exports the certificate client's state as Linkerd's
// proxy does, read at scrape time.
type identityMetrics struct {
	c       *proxyidentity.Client
	mu      sync.Mutex
	expiry  *metrics.Gauge
	refresh *metrics.Counter
}

func newIdentityMetrics(r *metrics.Registry, c *proxyidentity.Client) *identityMetrics {
	return &identityMetrics{
		c:       c,
		expiry:  r.NewGauge("identity_cert_expiration_timestamp_seconds", "Time when this proxy's current mTLS identity certificate will expire (in seconds since the UNIX epoch).").With(metrics.Labels{}),
		refresh: r.NewCounter("identity_cert_refresh_count", "The total number of times this proxy's mTLS identity certificate has been refreshed by the Identity service.").With(metrics.Labels{}),
	}
}

func (m *identityMetrics) update() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expiry.Set(int64(m.c.ExpirationTimestampSeconds()))
	if n, seen := m.c.RefreshCount(), m.refresh.Value(); n > seen {
		m.refresh.Add(n - seen)
	}
}
