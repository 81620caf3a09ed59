package cli

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/store/kube"
	"github.com/weft-mesh/weft/internal/store/local"
)

// ingressOptions are the flags of 'weft ingress'.
type ingressOptions struct {
	address      string
	portMap      []string
	proxy        string
	adminAddr    string
	namespace    string
	ambassadorID string
	drainTimeout time.Duration
	logLevel     string
	accessLog    string
	rlsAddr      string
	upstream     string
	store        storeFlags
}

// How 'weft ingress' reaches upstream services without --proxy
// (--upstream).
const (
	// upstreamService dials a service by its cluster DNS name, for an
	// ingress whose transparent sidecar captures the connection (weft
	// install meshes it so).
	upstreamService = "service"
	// upstreamEndpoints dials a service's ready endpoints from its
	// EndpointSlices, for an ingress without a sidecar.
	upstreamEndpoints = "endpoints"
)

// upstreamMode checks --upstream against --proxy and the store and fills
// in its default: endpoints with --store=kube (an ingress run by hand,
// unmeshed, as before the flag existed), else service (names dialed as
// written). With --proxy the sidecar at that address reaches upstreams,
// so --upstream has nothing to choose.
func (o ingressOptions) upstreamMode() (string, error) {
	switch o.upstream {
	case "", upstreamService, upstreamEndpoints:
	default:
		return "", &ExitError{Code: 2, Err: fmt.Errorf("ingress: --upstream %q: want service (dial services by their cluster DNS names, for an ingress with a transparent sidecar) or endpoints (dial their ready endpoints, for an ingress without one)", o.upstream)}
	}
	if o.proxy != "" {
		if o.upstream != "" {
			return "", &ExitError{Code: 2, Err: fmt.Errorf("ingress: --upstream=%s and --proxy exclude each other: with --proxy every request goes through the sidecar at that address; drop one", o.upstream)}
		}
		return "", nil
	}
	if o.upstream != "" {
		return o.upstream, nil
	}
	if o.store.kind == "kube" {
		return upstreamEndpoints, nil
	}
	return upstreamService, nil
}

func newCmdIngress(g *Globals) *cobra.Command {
	o := ingressOptions{
		address:      "127.0.0.1",
		adminAddr:    "127.0.0.1:8877",
		namespace:    "weft",
		ambassadorID: "default",
		drainTimeout: ingress.DefaultDrainTimeout,
		logLevel:     "info",
	}
	cmd := &cobra.Command{
		Use:   "ingress",
		Short: "Run the ingress gateway (normally started by 'weft up')",
		Long: `Run weft's ingress gateway: it serves the Emissary resources in the store
(getambassador.io/v3alpha1 Listener, Host and Mapping) and Gateway API
Gateways (gateway.networking.k8s.io/v1, class "weft" or a GatewayClass whose
controllerName is weft.io/gateway-controller; in local mode, any class while
the store holds no GatewayClass) with their HTTPRoutes and GRPCRoutes, and follows
changes live, without dropping requests in flight. Route status (Accepted,
ResolvedRefs) is written back to the store: see 'weft get httproute -o yaml'.

HTTPS Listeners terminate TLS with their Hosts' tlsSecret (Gateways: their
listeners' certificateRefs), chosen by SNI, with HTTP/2 by ALPN; cleartext
is served on the same port.

Each Listener's (and Gateway listener's) port is bound on --address;
--port-map moves one elsewhere. --access-log writes one JSON line per
request.

Requests go to services (name.namespace.svc.cluster.local:port) through the
mesh in one of three ways:

  --proxy URL         through the ingress's sidecar as an explicit HTTP
                      proxy (local mode: 'weft up' runs it so).
  --upstream=service  dial the service's cluster DNS name; the ingress's
                      transparent sidecar (weft-init's iptables) captures
                      the connection and sends it on with mTLS, the
                      ServiceProfile's retries and timeouts, and load
                      balancing. Requests to a service carry its name in
                      Host (:authority), the client's in X-Forwarded-Host.
                      'weft install' meshes its ingress and runs it so.
  --upstream=endpoints
                      dial one of the service's ready endpoints, from its
                      EndpointSlices (round robin), needing neither cluster
                      DNS nor a sidecar: for an ingress outside the mesh,
                      which reaches meshed pods without mTLS.

Without --proxy or --upstream: endpoints with --store=kube, else service
(which dials IP addresses and resolvable names as written).

With --store=kube the resources are read from a Kubernetes API server instead
of the state directory (--kubeconfig, else $KUBECONFIG, else the in-cluster
configuration), through informers that re-list when the API server comes
back; route and Gateway status is written to their status subresources.
There, Gateways of class "weft" or of a class naming weft.io/gateway-controller
are served, even before any GatewayClass exists.

The responses the ingress makes itself are Envoy's: 404 when no Mapping
matches, 503 "no healthy upstream" when a service has no endpoints, 503
"upstream connect error ..." when a connection fails and 504 "upstream
request timeout" when timeout_ms (default 3000, 0 for none) runs out.

The admin server at --admin-addr serves /ready, /live, /metrics and /routes.`,
		Example: `  weft ingress --proxy http://127.0.0.1:4140 --admin-addr 127.0.0.1:8877
  weft ingress --port-map 8080=18080 --port-map 8443=18443
  weft ingress --store=kube --address 0.0.0.0 --namespace weft --upstream=service
  weft ingress --store=kube --kubeconfig ~/.kube/config --upstream=endpoints`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("ingress: --log-level: %w", err)}
			}
			if err := o.store.validate("ingress"); err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(g.Err, &slog.HandlerOptions{Level: level}))
			portMap := map[int32]int{}
			for _, s := range o.portMap {
				l, p, err := ingress.ParsePortMap(s)
				if err != nil {
					return &ExitError{Code: 2, Err: err}
				}
				portMap[l] = p
			}
			if net.ParseIP(o.address) == nil && o.address != "localhost" {
				return &ExitError{Code: 2, Err: fmt.Errorf("ingress: --address %q: want an IP address such as 127.0.0.1", o.address)}
			}
			upstream, err := o.upstreamMode()
			if err != nil {
				return err
			}
			var proxyURL *url.URL
			if o.proxy != "" {
				u, err := url.Parse(o.proxy)
				if err != nil || u.Scheme != "http" || u.Host == "" {
					return &ExitError{Code: 2, Err: fmt.Errorf("ingress: --proxy %q: want http://HOST:PORT", o.proxy)}
				}
				proxyURL = u
			}
			var accessLog io.Writer
			switch o.accessLog {
			case "":
			case "-", "stderr":
				accessLog = g.Err
			default:
				f, err := os.OpenFile(o.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("ingress: --access-log: %w", err)}
				}
				defer f.Close()
				accessLog = f
			}
			dir := g.StateDirOrDefault()
			st, err := o.store.open("ingress", dir, log,
				local.Options{PollInterval: ingress.StorePollInterval},
				kube.Options{FieldManager: install.IngressName})
			if err != nil {
				return err
			}
			defer st.Close()
			transport := ingress.TransportOptions{Proxy: proxyURL, Transparent: upstream == upstreamService}
			if upstream == upstreamEndpoints {
				// No cluster DNS or kube-proxy needed: services are
				// dialed at their ready endpoints.
				ep := ingress.NewEndpoints(st.Store)
				transport.Endpoints = ep
				go func() {
					if err := ep.Prime(cmd.Context()); err != nil {
						log.Warn("endpoints not read yet; the first requests will wait for them", "err", err)
					}
				}()
			}
			// The RateLimitService client: Mappings' labels become
			// descriptors only when a RateLimitService exists.
			limiter, closeLimiter := newIngressRateLimiter(o.rlsAddr)
			defer closeLimiter()
			in, err := ingress.New(ingress.Config{
				RateLimiter:  limiter,
				Store:        st.Store,
				Transport:    ingress.NewTransportWith(transport),
				Address:      o.address,
				PortMap:      portMap,
				AdminAddr:    o.adminAddr,
				AmbassadorID: o.ambassadorID,
				Namespace:    o.namespace,
				DrainTimeout: o.drainTimeout,
				AccessLog:    accessLog,
				Logger:       log,
				// A cluster may have other Gateway controllers: serve
				// only class weft and classes naming our controller,
				// even before any GatewayClass exists.
				OnlyOurGatewayClass: st.Kube != nil,
			})
			if err != nil {
				return err
			}
			where := []any{"store", o.store.kind, "proxy", o.proxy, "upstream", upstream, "admin", o.adminAddr}
			if st.Kube != nil {
				where = append(where, "api-server", st.Kube.Host)
			} else {
				where = append(where, "state-dir", dir)
			}
			log.Info("ingress: starting", where...)
			return in.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.address, "address", o.address, "IP address every Listener binds on")
	f.StringArrayVar(&o.portMap, "port-map", nil, "serve the Listener with spec.port LISTENER on local port LOCAL, as LISTENER=LOCAL (repeatable; LOCAL 0 picks a free port)")
	f.StringVar(&o.proxy, "proxy", "", "the ingress's sidecar outbound proxy, http://HOST:PORT; upstream requests go through it (default: dial directly)")
	f.StringVar(&o.adminAddr, "admin-addr", o.adminAddr, "address of the admin server (/ready, /live, /metrics, /routes); empty disables it")
	f.StringVar(&o.namespace, "namespace", o.namespace, "namespace the ingress runs in; objects without a namespace are read as in it")
	f.StringVar(&o.ambassadorID, "ambassador-id", o.ambassadorID, "serve only objects whose ambassador_id lists this id (or that have none)")
	f.DurationVar(&o.drainTimeout, "drain-timeout", o.drainTimeout, "how long shutdown waits for requests in flight")
	f.StringVar(&o.logLevel, "log-level", o.logLevel, "debug, info, warn or error")
	f.StringVar(&o.rlsAddr, "ratelimit-addr", "", "where the rate limit service listens (HOST:PORT), used whatever a RateLimitService's spec.service says (local mode); default: dial spec.service")
	f.StringVar(&o.upstream, "upstream", "", "how services are reached without --proxy: service (their cluster DNS name, captured by the ingress's transparent sidecar; what 'weft install' runs) or endpoints (their ready EndpointSlice endpoints, for an unmeshed ingress); default: endpoints with --store=kube, else service")
	addStoreFlags(f, &o.store)
	f.StringVar(&o.accessLog, "access-log", "", `write one JSON line per request ("stderr" or "-", or a file path appended to); off when empty`)
	return cmd
}
