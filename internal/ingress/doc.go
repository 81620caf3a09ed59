// Package ingress is Weft's north-south gateway: it serves Emissary's
// getambassador.io Listener, Host, Mapping and RateLimitService resources
// from the store.
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
//   - HTTPS Listeners are served as cleartext until TLS termination lands;
//     one whose Hosts carry a tlsSecret is refused rather than served
//     without the TLS it asks for.
//   - X-Forwarded-Host carries the client's Host, because through the
//     sidecar the Host header must name the upstream service.
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
// routes by req.URL.Host can take its place.
package ingress
