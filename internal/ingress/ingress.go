package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/store"
)

// StorePollInterval is how often the ingress's local store checks the
// state file when fsnotify is unavailable. The store's default (250ms)
// would let a route change wait longer than the 100ms the ingress
// promises; a stat every 25ms costs nothing.
const StorePollInterval = 25 * time.Millisecond

// DefaultDrainTimeout bounds how long shutdown waits for requests in flight.
const DefaultDrainTimeout = 10 * time.Second

// Config configures an Ingress.
type Config struct {
	// Store is where Listeners, Hosts and Mappings are read. Required.
	Store store.Store
	// Transport carries requests upstream. Required.
	Transport http.RoundTripper
	// Address is the host every Listener binds on; default 127.0.0.1.
	Address string
	// PortMap moves a Listener's spec.port to another local port (0 picks
	// a free one), so tests and side-by-side meshes do not collide.
	PortMap map[int32]int
	// AdminAddr, when set, serves /ready, /live and /metrics.
	AdminAddr string
	// AmbassadorID selects objects by ambassador_id; default "default".
	AmbassadorID string
	// Namespace is where the ingress runs; default "weft".
	Namespace string
	// DrainTimeout bounds graceful shutdown; default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// RateLimiter is the client for the RateLimitService; nil disables rate
	// limiting (with a warning when a RateLimitService exists).
	RateLimiter RateLimiter
	// AccessLog, when set, receives one JSON line per request (see
	// AccessLogEntry); nil disables access logs.
	AccessLog io.Writer
	// OnlyOurGatewayClass turns off the local-mode rule that serves every
	// Gateway while the store holds no GatewayClass at all: only class
	// GatewayClassName and the classes naming ControllerName are served.
	// Set it on Kubernetes, where other Gateway controllers may run and
	// a Gateway may exist before its class does; claiming it then would
	// bind its ports and write status over another controller's.
	OnlyOurGatewayClass bool
	// Registry receives metrics; a new one is made when nil.
	Registry *metrics.Registry
	Logger   *slog.Logger

	// intn, when set, replaces the weighted backend pick's random source
	// (tests seed it). It must be safe for concurrent use.
	intn func(int) int
}

// Ingress runs the listeners of the current configuration.
type Ingress struct {
	cfg    Config
	log    *slog.Logger
	reg    *metrics.Registry
	router *Router

	mu        sync.Mutex
	bound     map[int32]*boundListener // by Listener spec.port
	adminAddr string
	lastProbs string

	certs secretCerts

	ready   atomic.Bool
	rebuilt atomic.Uint64
}

type boundListener struct {
	addr string
	ln   net.Listener
	srv  *http.Server
	done chan struct{}
}

// New checks cfg and returns an Ingress; Run starts it.
func New(cfg Config) (*Ingress, error) {
	if cfg.Store == nil {
		return nil, errors.New("ingress: no store")
	}
	if cfg.Transport == nil {
		return nil, errors.New("ingress: no upstream transport")
	}
	if cfg.Address == "" {
		cfg.Address = "127.0.0.1"
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "weft"
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Registry == nil {
		cfg.Registry = metrics.NewRegistry()
	}
	in := &Ingress{cfg: cfg, log: cfg.Logger, reg: cfg.Registry, bound: map[int32]*boundListener{}}
	in.router = NewRouter(cfg.Transport, cfg.Registry, cfg.Logger)
	in.router.SetRateLimiter(cfg.RateLimiter)
	in.router.SetAccessLog(cfg.AccessLog)
	if cfg.intn != nil {
		in.router.intn = cfg.intn
	}
	return in, nil
}

// Router returns the router, for embedding and tests.
func (in *Ingress) Router() *Router { return in.router }

// Ready reports whether a configuration has been loaded and its listeners
// bound.
func (in *Ingress) Ready() bool { return in.ready.Load() }

// Generation counts configuration rebuilds; tests poll it.
func (in *Ingress) Generation() uint64 { return in.rebuilt.Load() }

// Addrs returns the bound address of each served Listener, by spec.port.
func (in *Ingress) Addrs() map[int32]string {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := make(map[int32]string, len(in.bound))
	for p, b := range in.bound {
		out[p] = b.addr
	}
	return out
}

// AdminAddr returns the admin server's address once bound.
func (in *Ingress) AdminAddr() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.adminAddr
}

// Run serves until ctx ends, then stops accepting and drains requests in
// flight for up to DrainTimeout. It returns an error only if it could not
// start (the admin address is taken, the store cannot be watched).
func (in *Ingress) Run(ctx context.Context) error {
	var admin *http.Server
	adminDone := make(chan struct{})
	if in.cfg.AdminAddr != "" {
		ln, err := net.Listen("tcp", in.cfg.AdminAddr)
		if err != nil {
			return fmt.Errorf("ingress: admin server: %w", err)
		}
		in.mu.Lock()
		in.adminAddr = ln.Addr().String()
		in.mu.Unlock()
		admin = &http.Server{Handler: in.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			defer close(adminDone)
			_ = admin.Serve(ln)
		}()
	} else {
		close(adminDone)
	}

	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	changes, err := in.cfg.Store.Watch(watchCtx, watchedKinds...)
	if err != nil {
		if admin != nil {
			_ = admin.Close()
		}
		return fmt.Errorf("ingress: watching the store: %w", err)
	}
	// A Listener whose port is busy (say, a previous ingress still
	// draining) is retried soon, with back-off, rather than at the next
	// change or resync.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	backoff := bindRetryMin
	var runErr error
loop:
	for {
		select {
		case _, ok := <-changes:
			if !ok {
				if ctx.Err() == nil {
					runErr = errors.New("ingress: the store stopped notifying changes")
				}
				break loop
			}
		case <-retry.C:
		}
		if ctx.Err() != nil {
			break
		}
		if in.reload(ctx) {
			backoff = bindRetryMin
			continue
		}
		retry.Reset(backoff)
		backoff = min(2*backoff, bindRetryMax)
	}

	// Drain: stop accepting everywhere at once, then wait for requests in
	// flight, bounded by DrainTimeout.
	in.ready.Store(false)
	drainCtx, cancel := context.WithTimeout(context.Background(), in.cfg.DrainTimeout)
	defer cancel()
	in.mu.Lock()
	bound := in.bound
	in.bound = map[int32]*boundListener{}
	in.mu.Unlock()
	var wg sync.WaitGroup
	for _, b := range bound {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in.shutdown(drainCtx, b)
		}()
	}
	wg.Wait()
	if admin != nil {
		_ = admin.Shutdown(drainCtx)
	}
	<-adminDone
	in.log.Info("ingress: stopped")
	return runErr
}

// watchedKinds are the kinds whose changes rebuild the table.
var watchedKinds = []api.Kind{api.KindListener, api.KindHost, api.KindMapping, api.KindRateLimitService, api.KindSecret,
	api.KindGatewayClass, api.KindGateway, api.KindHTTPRoute, api.KindGRPCRoute, api.KindService, api.KindNamespace}

// ReadKinds are the kinds the ingress reads (lists and watches): what
// rebuilds its table (GatewayClasses included) and the EndpointSlices
// Endpoints resolves services with. 'weft install' grants its
// ServiceAccount exactly these.
func ReadKinds() []api.Kind {
	return append(append([]api.Kind(nil), watchedKinds...), api.KindEndpointSlice)
}

// StatusKinds are the kinds whose status the ingress writes.
func StatusKinds() []api.Kind {
	return []api.Kind{api.KindGatewayClass, api.KindGateway, api.KindHTTPRoute, api.KindGRPCRoute}
}

// Bounds of the back-off between attempts to bind a busy port.
const (
	bindRetryMin = 100 * time.Millisecond
	bindRetryMax = 5 * time.Second
)

// reload reads the store, swaps in a new table and reconciles listeners.
// When the store cannot be read, the last good table stays. It reports
// whether everything the table asks for is in place (false: retry soon).
func (in *Ingress) reload(ctx context.Context) bool {
	ls, err1 := listAs[*api.Listener](ctx, in.cfg.Store, api.KindListener)
	hs, err2 := listAs[*api.Host](ctx, in.cfg.Store, api.KindHost)
	ms, err3 := listAs[*api.Mapping](ctx, in.cfg.Store, api.KindMapping)
	rls, err4 := listAs[*api.RateLimitService](ctx, in.cfg.Store, api.KindRateLimitService)
	gws, err6 := listAs[*gatewayv1.Gateway](ctx, in.cfg.Store, api.KindGateway)
	hrs, err7 := listAs[*gatewayv1.HTTPRoute](ctx, in.cfg.Store, api.KindHTTPRoute)
	grs, err8 := listAs[*gatewayv1.GRPCRoute](ctx, in.cfg.Store, api.KindGRPCRoute)
	// Only names and labels are read from these: shared, not copied (a
	// cluster has many Services).
	svcs, err9 := listSharedAs[*corev1.Service](ctx, in.cfg.Store, api.KindService)
	nss, err10 := listSharedAs[*corev1.Namespace](ctx, in.cfg.Store, api.KindNamespace)
	gcs, err11 := listAs[*gatewayv1.GatewayClass](ctx, in.cfg.Store, api.KindGatewayClass)
	classes := gatewayClasses(gcs, in.cfg.OnlyOurGatewayClass)
	if err := errors.Join(err1, err2, err3, err4, err6, err7, err8, err9, err10, err11); err != nil {
		in.log.Error("ingress: reading configuration; keeping the last good one", "err", err)
		return false
	}
	opts := BuildOptions{
		AmbassadorID: in.cfg.AmbassadorID, Namespace: in.cfg.Namespace, RateLimitServices: rls, Certs: in.certs.loader(storeSecrets(ctx, in.cfg.Store)),
		Gateways: gws, HTTPRoutes: hrs, GRPCRoutes: grs, Services: map[string]bool{}, Namespaces: map[string]map[string]string{}, GatewayClasses: classes,
	}
	for _, s := range svcs {
		opts.Services[s.Namespace+"/"+s.Name] = true
	}
	for _, n := range nss {
		opts.Namespaces[n.Name] = n.Labels
	}
	t := Build(ls, hs, ms, opts)
	in.certs.prune()
	in.report(t, len(ls)+len(gws), len(ms))
	// Publish the table before binding new listeners, so a new port never
	// serves an older table that lacks it; removed listeners stop accepting
	// right after and drain what they already routed.
	in.router.Swap(t)
	complete := in.bind(t)
	in.unbind(t)
	routes := make([]routeObject, 0, len(hrs)+len(grs))
	for _, r := range hrs {
		routes = append(routes, httpRouteObj{r})
	}
	for _, r := range grs {
		routes = append(routes, grpcRouteObj{r})
	}
	if n, err := writeRouteStatuses(ctx, in.cfg.Store, routes, t.RouteStatuses); err != nil {
		in.log.Error("ingress: writing route status", "err", err)
	} else if n > 0 {
		in.log.Debug("ingress: route status written", "routes", n)
	}
	if n, err := writeGatewayStatuses(ctx, in.cfg.Store, gws, t.GatewayStatuses); err != nil {
		in.log.Error("ingress: writing Gateway status", "err", err)
	} else if n > 0 {
		in.log.Debug("ingress: Gateway status written", "gateways", n)
	}
	if n, err := writeGatewayClassStatuses(ctx, in.cfg.Store, gcs); err != nil {
		in.log.Error("ingress: writing GatewayClass status", "err", err)
	} else if n > 0 {
		in.log.Debug("ingress: GatewayClass status written", "gatewayclasses", n)
	}
	in.rebuilt.Add(1)
	in.ready.Store(true)
	return complete
}

// gatewayClasses returns the GatewayClass names this ingress serves, from
// the store's GatewayClasses: GatewayClassName always, and every class
// whose controllerName is ControllerName and that it accepts. While the
// store holds no GatewayClass at all, as in local mode where one ingress
// serves everything, it returns nil (every class) unless strict
// (Config.OnlyOurGatewayClass).
func gatewayClasses(gcs []*gatewayv1.GatewayClass, strict bool) map[string]bool {
	if len(gcs) == 0 && !strict {
		return nil
	}
	out := map[string]bool{GatewayClassName: true}
	for _, c := range gcs {
		if string(c.Spec.ControllerName) != ControllerName {
			continue
		}
		if ok, _, _ := classAccepted(c); ok {
			out[c.Name] = true
		}
	}
	return out
}

func listAs[T api.Object](ctx context.Context, s store.Store, kind api.Kind) ([]T, error) {
	objs, err := s.List(ctx, kind, "")
	return filterAs[T](objs, err)
}

// listSharedAs is listAs through store.ListShared: the objects must not be
// modified.
func listSharedAs[T api.Object](ctx context.Context, s store.Store, kind api.Kind) ([]T, error) {
	objs, err := store.ListShared(ctx, s, kind, "")
	return filterAs[T](objs, err)
}

func filterAs[T api.Object](objs []api.Object, err error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out, nil
}

// report logs problems and warnings when they change, not on every resync.
func (in *Ingress) report(t *Table, nListeners, nMappings int) {
	var b strings.Builder
	for _, p := range t.Problems {
		b.WriteString(p.Error())
		b.WriteByte('\n')
	}
	for _, w := range t.Warnings {
		b.WriteString(w)
		b.WriteByte('\n')
	}
	if nListeners == 0 {
		b.WriteString("no Listener")
	}
	noLimiter := t.rateLimit != nil && in.cfg.RateLimiter == nil
	if noLimiter {
		b.WriteString("no rate limiter")
	}
	key := b.String()
	in.mu.Lock()
	changed := key != in.lastProbs
	in.lastProbs = key
	in.mu.Unlock()
	if !changed {
		return
	}
	for _, p := range t.Problems {
		in.log.Error("ingress: object skipped", "object", p.Ref.String(), "err", p.Err)
	}
	for _, w := range t.Warnings {
		in.log.Warn("ingress: " + w)
	}
	if nListeners == 0 {
		in.log.Warn("ingress: no Listener or Gateway resources: serving nothing; apply a getambassador.io/v3alpha1 Listener (for example port 8080, protocol HTTP, securityModel XFP, hostBinding.namespace.from ALL)")
	}
	if noLimiter {
		in.log.Warn("ingress: a RateLimitService is configured but this ingress has no rate limit client; requests are not rate limited", "ratelimitservice", t.rateLimit.ref.String())
	}
	in.log.Info("ingress: configuration loaded", "listeners", len(t.ports), "mappings", nMappings, "problems", len(t.Problems))
}

// bind opens listeners the table has and we do not. It reports whether
// all of them are bound.
func (in *Ingress) bind(t *Table) bool {
	complete := true
	for _, li := range t.Listeners() {
		in.mu.Lock()
		_, have := in.bound[li.Port]
		in.mu.Unlock()
		if have {
			continue
		}
		port := int(li.Port)
		if p, ok := in.cfg.PortMap[li.Port]; ok {
			port = p
		}
		addr := net.JoinHostPort(in.cfg.Address, strconv.Itoa(port))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			in.log.Error("ingress: cannot bind Listener; retrying", "listener", li.Ref.String(), "addr", addr, "err", err)
			complete = false
			continue
		}
		// Every port sniffs for TLS, so that a Listener turning from HTTP
		// to HTTPS (or a Secret appearing) needs no rebind; a port
		// without certificates fails the handshake.
		ln = newSniffListener(ln, in.router.tlsConfig(li.Port))
		srv := &http.Server{
			Handler:           in.router.Handler(li.Port),
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       5 * time.Minute,
			Protocols:         new(http.Protocols),
			ErrorLog:          slog.NewLogLogger(in.log.Handler(), slog.LevelDebug),
		}
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true) // over TLS, by ALPN
		srv.Protocols.SetUnencryptedHTTP2(true)
		b := &boundListener{addr: ln.Addr().String(), ln: ln, srv: srv, done: make(chan struct{})}
		go func() {
			defer close(b.done)
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				in.log.Error("ingress: listener failed", "addr", b.addr, "err", err)
			}
		}()
		in.mu.Lock()
		in.bound[li.Port] = b
		in.mu.Unlock()
		in.log.Info("ingress: listening", "listener", li.Ref.String(), "port", li.Port, "addr", b.addr)
	}
	return complete
}

// unbind drains and closes listeners the table no longer has.
func (in *Ingress) unbind(t *Table) {
	in.mu.Lock()
	var gone []*boundListener
	for port, b := range in.bound {
		if !t.serves(port) {
			gone = append(gone, b)
			delete(in.bound, port)
			in.log.Info("ingress: closing listener", "port", port, "addr", b.addr)
		}
	}
	in.mu.Unlock()
	for _, b := range gone {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), in.cfg.DrainTimeout)
			defer cancel()
			in.shutdown(ctx, b)
		}()
	}
}

func (in *Ingress) shutdown(ctx context.Context, b *boundListener) {
	if err := b.srv.Shutdown(ctx); err != nil {
		in.log.Warn("ingress: drain timed out; closing connections", "addr", b.addr, "err", err)
		_ = b.srv.Close()
	}
	<-b.done
}

// AdminHandler serves /ready, /live and /metrics.
func (in *Ingress) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /live", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("live\n"))
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if !in.Ready() {
			http.Error(w, "not ready: no configuration loaded yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		_ = in.reg.WriteText(w)
	})
	mux.HandleFunc("GET /routes", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		writeRoutes(w, in.router.Table())
	})
	return mux
}

// writeRoutes prints the table for humans (admin /routes).
func writeRoutes(w interface{ Write([]byte) (int, error) }, t *Table) {
	for _, port := range t.ports {
		lc := t.listeners[port]
		if lc == nil {
			writeGatewayRoutes(w, t.gateways[port])
			continue
		}
		fmt.Fprintf(w, "listener %s port %d %s securityModel=%s\n", lc.ref, lc.port, lc.protocol, lc.securityModel)
		for _, vh := range lc.vhosts {
			fmt.Fprintf(w, "  host %s %q insecure=%s\n", vh.ref, vh.glob, vh.insecureAction)
			for _, g := range vh.groups {
				for _, r := range g.routes {
					kind := "prefix"
					switch {
					case r.re != nil:
						kind = "regex"
					case r.exact:
						kind = "exact"
					}
					fmt.Fprintf(w, "    %s %q -> %s\n", kind, r.prefix, r)
				}
			}
		}
	}
	var probs []string
	for _, p := range t.Problems {
		probs = append(probs, p.Error())
	}
	sort.Strings(probs)
	for _, p := range probs {
		fmt.Fprintf(w, "skipped %s\n", p)
	}
}

// ParsePortMap parses one --port-map value, "LISTENER=LOCAL": requests for
// the Listener with spec.port LISTENER are served on local port LOCAL (0
// picks a free port).
func ParsePortMap(s string) (listener int32, local int, err error) {
	l, r, ok := strings.Cut(s, "=")
	if !ok {
		return 0, 0, fmt.Errorf("ingress: port map %q: want LISTENER_PORT=LOCAL_PORT, e.g. 8080=18080", s)
	}
	lp, err := strconv.Atoi(strings.TrimSpace(l))
	if err != nil || lp < 1 || lp > 65535 {
		return 0, 0, fmt.Errorf("ingress: port map %q: listener port %q is not between 1 and 65535", s, l)
	}
	rp, err := strconv.Atoi(strings.TrimSpace(r))
	if err != nil || rp < 0 || rp > 65535 {
		return 0, 0, fmt.Errorf("ingress: port map %q: local port %q is not between 0 and 65535", s, r)
	}
	return int32(lp), rp, nil
}
