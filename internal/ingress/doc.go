// Package ingress is Weft's north-south gateway: it serves Emissary's
// getambassador.io Listener, Host, Mapping and RateLimitService resources,
// and Gateway API (gateway.networking.k8s.io/v1) Gateways with their
// HTTPRoutes and GRPCRoutes, from the store.
//
// # Configuration
//
// The resources are compiled into an immutable Table and swapped atomically
// whenever the store changes (the store's watch is level-triggered; every
// notification rebuilds from a fresh List). A request reads the table once,
// so a change never drops or misroutes a request in flight. An invalid or
// conflicting object is left out of the table and logged, and never holds
// back the others. Listeners are bound and closed live as Listener resources
// come and go; --port-map moves a Listener's port.
//
// # Emissary semantics we keep
//
//   - A Mapping's prefix is a plain string prefix: /man matches /mankind.
//     prefix_regex must match the whole path; prefix_exact the exact path.
//   - Order: precedence (higher first), then the longest prefix, then the
//     most constrained Mapping, then the most specific hostname. Mappings
//     with the same match form a weight group (canary).
//   - rewrite defaults to "/" and replaces the matched prefix ("" keeps the
//     path); regex_rewrite wins over it; x-envoy-original-path carries the
//     path as received when it was rewritten.
//   - timeout_ms defaults to 3000 and covers the whole exchange, retries
//     included; 0 disables it. After a 101 Switching Protocols it no longer
//     applies. retry_policy retries bodiless requests only.
//   - service is [http(s)://]name[.namespace][:port]; the namespace defaults
//     to the Mapping's and the port to 80 (443 for https). Cluster names go
//     to name.namespace.svc.cluster.local through the mesh, with
//     l5d-dst-override naming the same authority (Emissary's
//     add_linkerd_headers, on by default here).
//   - A Mapping binds to a Host by hostname glob, or by the Host's
//     mappingSelector; both when the Host has a selector and the Mapping a
//     hostname. A Listener binds Hosts by namespace (SELF/ALL) and selector.
//
// # Where we differ, and why
//
//   - With no Host at all, a fallback "*" Host routes cleartext requests
//     (Emissary's fallback Host redirects to HTTPS with a self-signed
//     certificate, which local mode has no use for).
//   - requestPolicy.insecure.additionalPort, when set, is the port of the
//     https:// redirect (local mode's HTTPS port is rarely 443), not an
//     extra cleartext listener: Listeners say what is bound.
//   - X-Forwarded-Host carries the client's Host, because through the
//     sidecar the Host header must name the upstream service.
//
// # Reloads
//
// A change reaches the router within milliseconds of the store noticing
// it (measured end to end through the local store's file watcher by
// TestReloadLatencyLocalStore: typically well under 1 ms on an idle
// machine; where fsnotify is unavailable, `weft ingress` polls the state
// file every StorePollInterval instead of the store's default 250ms). The
// new table is swapped in atomically, so requests in flight
// finish on the table they started with and none is dropped; listeners
// are never rebound for a route, Host or certificate change. An object
// that fails validation or compilation is left out alone: it is reported
// (log, admin /routes, and for Gateway API routes their status) and every
// other object keeps being served.
//
// # Access logs
//
// With Config.AccessLog (`weft ingress --access-log stderr|PATH`) every
// request is logged as one JSON line when its response ends: time, method,
// authority, path, status, duration_ms, bytes (response body), upstream,
// route (Mapping "ns/name", or "httproute:ns/name" / "grpcroute:ns/name"),
// request_id (the x-request-id sent upstream) and client (address:port).
// Off by default; when off, requests pay nothing for it.
//
// # Gateway API
//
// Which Gateways are served, by spec.gatewayClassName:
//
//   - class "weft" (GatewayClassName), always, with or without a
//     GatewayClass object of that name;
//   - a class whose GatewayClass has spec.controllerName ControllerName
//     ("weft.io/gateway-controller") and no parametersRef (Weft takes no
//     parameters);
//   - in local mode, while the store holds no GatewayClass at all, every
//     class, so that manifests written for another implementation run as
//     they are. Once any GatewayClass exists, or on Kubernetes
//     (Config.OnlyOurGatewayClass), a class without an object is not ours.
//
// Gateways of other classes, and routes attached only to them, are left
// alone: not bound, no status. The GatewayClasses naming ControllerName
// get status condition Accepted (True, or False with InvalidParameters for
// a parametersRef), with observedGeneration, written like route status.
//
// Each HTTP or HTTPS listener binds
// its port on Config.Address (moved by PortMap like a Listener's); a port
// already taken by an Emissary Listener, or a listener of another protocol
// on the same port, is reported and left out. Listeners sharing a port are
// chosen by hostname, most specific first. HTTPS listeners terminate TLS
// with their certificateRefs (core Secrets in the Gateway's namespace;
// tls.mode Terminate only), by SNI.
//
// Routes attach by parentRef (name, namespace, sectionName, port) to the
// listeners whose allowedRoutes (namespaces Same/All/Selector, kinds) admit
// them and whose hostname intersects theirs. Matching follows the spec:
// hostnames first (exact, then wildcards by length, then none; falling
// through to less specific ones when nothing matches), then Exact path,
// RegularExpression (whole path), the longest PathPrefix (whole segments:
// /abc matches /abc/d, not /abcd), a method, more headers, more query
// parameters; ties go to the oldest route, then namespace/name, then rule
// and match order. gRPC requests try GRPCRoutes first (exact methods before
// regular expressions, then longer service and method names, then more
// headers), then HTTPRoutes.
//
// Filters: RequestHeaderModifier and ResponseHeaderModifier (also on
// backendRefs), RequestRedirect (default 302; the port is the filter's,
// else the scheme's well-known one when it sets a scheme, else the
// listener's; :80 and :443 are left out), URLRewrite (hostname;
// ReplaceFullPath, ReplacePrefixMatch by whole segments). RequestMirror,
// CORS, ExternalAuth and ExtensionRef are refused (Accepted=False,
// UnsupportedValue). backendRefs are Services in the route's namespace
// (no ReferenceGrant yet), reached through the mesh at
// name.ns.svc.cluster.local:port; weights are proportional, weight 0 takes
// nothing, and an invalid reference answers 500 for its share.
// X-Forwarded-Proto on a Gateway port is the connection's scheme.
// timeouts.request bounds the whole exchange and timeouts.backendRequest
// each attempt; both give 504. Unset means no timeout. retry (GEP-1731,
// experimental) retries bodiless requests: attempts retries (default 1) on
// its codes, connection failures and per-try timeouts, waiting at least
// backoff between attempts, all within timeouts.request.
//
// Status: for each parentRef naming a Gateway, the ingress writes a
// status.parents entry under ControllerName with Accepted (Accepted,
// NoMatchingParent, NotAllowedByListeners, NoMatchingListenerHostname,
// UnsupportedValue) and ResolvedRefs (ResolvedRefs, BackendNotFound,
// InvalidKind, RefNotPermitted), observedGeneration set, only when they
// changed: through the store's ApplyStatus when it has one (store/kube: the
// status subresource, leaving the spec alone), else store.Apply. Other
// controllers' entries are kept.
//
// # TLS
//
// An HTTPS Listener terminates TLS with the certificates of its Hosts'
// tlsSecret (v1 Secrets of type kubernetes.io/tls; the namespace defaults to
// the Host's), chosen by SNI against the Host hostname globs (most specific
// first; no SNI or an unknown name gets the first). ALPN offers h2 and
// http/1.1. The same port serves cleartext too (the first byte of a
// connection tells a TLS ClientHello from HTTP), as Emissary's HTTPS
// protocol does. Certificates live in the table, so a changed Secret is
// used from the next handshake, without rebinding. A Host whose Secret is
// missing or broken is reported and routes cleartext only. Only the
// Secrets that Hosts and Gateways name are parsed; store/kube still caches
// the whole kind (one informer), as Emissary does.
//
// X-Forwarded-Proto: at l7Depth 0 it is the scheme of the connection (a
// client's value is replaced); with l7Depth > 0 a value from the trusted
// proxy is kept. securityModel XFP treats a request as secure when it is
// https, SECURE treats everything as secure, INSECURE nothing; insecure
// requests get the Host's requestPolicy.insecure.action.
//
// # What clients see
//
//	no Listener/Host/Mapping matches     404, text body saying which
//	service without endpoints            503 "no healthy upstream"
//	connection to the upstream failed    503 "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
//	timeout_ms (or per_try_timeout) hit  504 "upstream request timeout"
//	upgrade not in allow_upgrade         403
//	over a rate limit                    429, x-envoy-ratelimited: true
//	rate limit service down              passes; 500 with failure_mode_deny
//	insecure request, Host says Redirect 301 to https; Reject: 400
//
// A gRPC client gets these as gRPC statuses instead (HTTP 200, grpc-status
// UNAVAILABLE, DEADLINE_EXCEEDED, UNIMPLEMENTED, ...), as Envoy sends them.
// gRPC requests travel to the service as HTTP/2 cleartext inside a CONNECT
// tunnel through the sidecar; everything else as HTTP/1.1.
//
// The 503s are also what the sidecar's own failures become: a 503 with
// l5d-proxy-error (no endpoints) and a 502 with l5d-proxy-error (connect
// failure) are translated, so clients see Envoy's wording either way.
//
// Upstream requests go through an http.RoundTripper: NewTransport's, through
// the ingress's sidecar, in `weft ingress`; any mesh RoundTripper that
// routes by req.URL.Host can take its place. On Kubernetes without a
// sidecar, NewTransportWith(TransportOptions{Endpoints: NewEndpoints(st)})
// dials cluster service names at their ready EndpointSlice endpoints.
package ingress
