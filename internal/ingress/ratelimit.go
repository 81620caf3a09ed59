package ingress

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/internal/api"
)

// RateLimiter asks an external rate limit service (Envoy's RLS v3:
// envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit) whether a
// request may pass. The ingress builds the descriptors from the Mapping's
// labels; the implementation only speaks the protocol, and may pool one
// connection per Service address.
type RateLimiter interface {
	ShouldRateLimit(ctx context.Context, req RateLimitRequest) (RateLimitResponse, error)
}

// RateLimitRequest is one question to the rate limit service.
type RateLimitRequest struct {
	// Service is the RateLimitService's spec.service (host:port).
	Service     string
	Domain      string
	Descriptors []Descriptor
}

// Descriptor is one rate-limit descriptor: an ordered list of entries.
type Descriptor []DescriptorEntry

// DescriptorEntry is one key/value of a descriptor.
type DescriptorEntry struct{ Key, Value string }

// RateLimitResponse is the service's answer.
type RateLimitResponse struct {
	OverLimit bool
	// ResponseHeaders are added to the 429 (response_headers_to_add).
	ResponseHeaders http.Header
	// Body is the 429's body (raw_body); empty is allowed.
	Body []byte
}

// rateLimit is the table's RateLimitService.
type rateLimit struct {
	ref         api.Ref
	service     string
	domain      string
	timeout     time.Duration
	failureDeny bool
}

func buildRateLimit(t *Table, svcs []*api.RateLimitService, mine func(api.AmbassadorID) bool) {
	for _, r := range sortedByName(svcs) {
		ref := api.Ref{Kind: api.KindRateLimitService, Namespace: r.Namespace, Name: r.Name}
		if !mine(r.Spec.AmbassadorID) {
			continue
		}
		if errs := api.Lookup(api.KindRateLimitService).Validate(r); len(errs) > 0 {
			t.Problems = append(t.Problems, Problem{Ref: ref, Err: fmt.Errorf("invalid: %v", errs[0])})
			continue
		}
		if t.rateLimit != nil {
			t.Problems = append(t.Problems, Problem{Ref: ref, Err: fmt.Errorf("only one RateLimitService is allowed; %s is in use", t.rateLimit.ref)})
			continue
		}
		rl := &rateLimit{ref: ref, service: r.Spec.Service, domain: r.DomainOrDefault(), timeout: api.DefaultRateLimitTimeoutMS * time.Millisecond, failureDeny: r.Spec.FailureModeDeny}
		if r.Spec.TimeoutMS != nil {
			rl.timeout = time.Duration(*r.Spec.TimeoutMS) * time.Millisecond
		}
		t.rateLimit = rl
	}
}

// labelGroup is one compiled rate-limit label group: one descriptor.
type labelGroup struct {
	entries []labelEntry
}

type labelEntry struct {
	kind  labelKind
	key   string
	value string // generic_key value, or header name for request_headers
}

type labelKind uint8

const (
	labelGeneric labelKind = iota
	labelRequestHeader
	labelRemoteAddress
	labelSourceCluster
	labelDestinationCluster
)

// compileLabels turns a Mapping's labels into descriptor templates, per
// domain. Group names are arbitrary and only ordered for stability.
func compileLabels(l api.MappingLabels) map[string][]labelGroup {
	if len(l) == 0 {
		return nil
	}
	out := map[string][]labelGroup{}
	for domain, groups := range l {
		for _, g := range groups {
			names := make([]string, 0, len(g))
			for n := range g {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				var lg labelGroup
				for _, s := range g[n] {
					switch {
					case s.GenericKey != nil:
						k := s.GenericKey.Key
						if k == "" {
							k = "generic_key"
						}
						lg.entries = append(lg.entries, labelEntry{kind: labelGeneric, key: k, value: s.GenericKey.Value})
					case s.RequestHeaders != nil:
						lg.entries = append(lg.entries, labelEntry{kind: labelRequestHeader, key: s.RequestHeaders.Key, value: http.CanonicalHeaderKey(s.RequestHeaders.HeaderName)})
					case s.RemoteAddress != nil:
						lg.entries = append(lg.entries, labelEntry{kind: labelRemoteAddress, key: keyOr(s.RemoteAddress.Key, "remote_address")})
					case s.SourceCluster != nil:
						lg.entries = append(lg.entries, labelEntry{kind: labelSourceCluster, key: keyOr(s.SourceCluster.Key, "source_cluster")})
					case s.DestinationCluster != nil:
						lg.entries = append(lg.entries, labelEntry{kind: labelDestinationCluster, key: keyOr(s.DestinationCluster.Key, "destination_cluster")})
					}
				}
				if len(lg.entries) > 0 {
					out[domain] = append(out[domain], lg)
				}
			}
		}
	}
	return out
}

func keyOr(k, def string) string {
	if k == "" {
		return def
	}
	return k
}

// SourceCluster is the descriptor value of source_cluster: Envoy's local
// cluster name, which for Emissary is its own service.
const SourceCluster = "weft-ingress"

// descriptors builds the descriptors of a request for domain. A group whose
// request header is missing is dropped whole, as Envoy drops the rate_limits
// entry.
func (r *Route) descriptors(domain string, req *http.Request, clientIP string) []Descriptor {
	groups := r.labels[domain]
	if len(groups) == 0 {
		return nil
	}
	out := make([]Descriptor, 0, len(groups))
next:
	for _, g := range groups {
		d := make(Descriptor, 0, len(g.entries))
		for _, e := range g.entries {
			v := e.value
			switch e.kind {
			case labelRequestHeader:
				vals := req.Header[e.value]
				if len(vals) == 0 {
					continue next
				}
				v = vals[0]
			case labelRemoteAddress:
				v = clientIP
			case labelSourceCluster:
				v = SourceCluster
			case labelDestinationCluster:
				v = r.up.authority
			}
			d = append(d, DescriptorEntry{Key: e.key, Value: v})
		}
		out = append(out, d)
	}
	return out
}

// clientIP is the trusted client address: the connection's peer, or with
// l7Depth N the Nth X-Forwarded-For entry from the right.
func clientIP(req *http.Request, l7Depth int) string {
	peer := req.RemoteAddr
	if h, _, err := net.SplitHostPort(peer); err == nil {
		peer = h
	}
	if l7Depth <= 0 {
		return peer
	}
	var hops []string
	for _, v := range req.Header.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	if len(hops) < l7Depth {
		return peer
	}
	return hops[len(hops)-l7Depth]
}

// checkRateLimit asks the rate limit service about a request and, when it
// must not pass, answers it: 429 over the limit, 500 when the service fails
// and failure_mode_deny is set. It reports whether the request was answered.
func (rt *Router) checkRateLimit(w http.ResponseWriter, req *http.Request, t *Table, d Decision) bool {
	rl := t.rateLimit
	if rl == nil || rt.limiter == nil {
		return false
	}
	descs := d.Route.descriptors(rl.domain, req, clientIP(req, d.L7Depth))
	if len(descs) == 0 {
		return false
	}
	ctx := req.Context()
	if rl.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rl.timeout)
		defer cancel()
	}
	resp, err := rt.limiter.ShouldRateLimit(ctx, RateLimitRequest{Service: rl.service, Domain: rl.domain, Descriptors: descs})
	if err != nil {
		rt.log.Debug("ingress: rate limit service failed", "service", rl.service, "err", err, "deny", rl.failureDeny)
		if rl.failureDeny {
			rt.local(w, req, d.Route, http.StatusInternalServerError, "")
			return true
		}
		return false // fail open, as Envoy does by default
	}
	if !resp.OverLimit {
		return false
	}
	h := w.Header()
	for k, vs := range resp.ResponseHeaders {
		for _, v := range vs {
			h.Add(k, v)
		}
	}
	h.Set("X-Envoy-Ratelimited", "true")
	if isGRPC(req) {
		rt.local(w, req, d.Route, http.StatusTooManyRequests, string(resp.Body))
		return true
	}
	if len(resp.Body) > 0 && h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain")
	}
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write(resp.Body)
	rt.count(d.Route, http.StatusTooManyRequests)
	return true
}
