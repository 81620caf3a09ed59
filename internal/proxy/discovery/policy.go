package discovery

import (
	"context"
	"math/rand/v2"
	"time"

	outboundpb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/proxy/breaker"
	"github.com/weft-mesh/weft/internal/proxy/retry"
)

// Policy is what OutboundPolicies says about a service that profiles
// cannot. A new pointer is published on every change; it is immutable.
type Policy struct {
	// Accrual is the failure accrual; nil means off.
	Accrual *breaker.Config
	// Retries are exact retry policies (limit, conditions, per-try
	// timeout) by route name, laid over the profile's routes of the same
	// name (routes configured by retry annotations).
	Retries map[string]*retry.Policy
}

var policyNone = &Policy{}

// Policy returns the service's outbound policy as the control plane last
// described it (empty until it answers, or when it does not serve
// OutboundPolicies).
func (w *Watch) Policy() *Policy {
	if p := w.policy.Load(); p != nil {
		return p
	}
	return policyNone
}

// runPolicy follows the OutboundPolicies Watch stream of w until ctx ends.
// A control plane without the service (Unimplemented) is not asked again.
func (r *Resolver) runPolicy(ctx context.Context, w *Watch) {
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		err := r.policyStream(ctx, w, func() { backoff = 100 * time.Millisecond })
		if ctx.Err() != nil {
			return
		}
		// No policy yet: requests waiting for one go on without.
		w.policySettled()
		if status.Code(err) == codes.Unimplemented {
			return
		}
		r.log.Debug("outbound policy stream ended; retrying", "path", w.Target.Path, "err", err, "retry_in", backoff)
		jitter := time.Duration(rand.Int64N(int64(backoff)/2 + 1))
		t := time.NewTimer(backoff/2 + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

func (r *Resolver) policyStream(ctx context.Context, w *Watch, onMsg func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s, err := r.cfg.Policies.Watch(ctx, &outboundpb.TrafficSpec{
		SourceWorkload: r.token,
		Target:         &outboundpb.TrafficSpec_Authority{Authority: w.Target.Path},
	})
	if err != nil {
		return err
	}
	for {
		p, err := s.Recv()
		if err != nil {
			return err
		}
		onMsg()
		w.policy.Store(&Policy{Accrual: accrualOf(p), Retries: retriesOf(p)})
		w.policySettled()
	}
}

// accrualOf reads the HTTP failure accrual of a policy (consecutive
// failures; other kinds are not supported and mean off).
func accrualOf(p *outboundpb.OutboundPolicy) *breaker.Config {
	var fa *outboundpb.FailureAccrual
	switch k := p.GetProtocol().GetKind().(type) {
	case *outboundpb.ProxyProtocol_Detect_:
		fa = k.Detect.GetHttp1().GetFailureAccrual()
	case *outboundpb.ProxyProtocol_Http1_:
		fa = k.Http1.GetFailureAccrual()
	case *outboundpb.ProxyProtocol_Http2_:
		fa = k.Http2.GetFailureAccrual()
	case *outboundpb.ProxyProtocol_Grpc_:
		fa = k.Grpc.GetFailureAccrual()
	}
	cf := fa.GetConsecutiveFailures()
	if cf == nil {
		return nil
	}
	return &breaker.Config{
		MaxFailures: cf.GetMaxFailures(),
		MinPenalty:  cf.GetBackoff().GetMinBackoff().AsDuration(),
		MaxPenalty:  cf.GetBackoff().GetMaxBackoff().AsDuration(),
		JitterRatio: float64(cf.GetBackoff().GetJitterRatio()),
	}
}

// GRPCStatusBase encodes gRPC retry conditions in an HttpRoute retry's
// status ranges: the OutboundPolicies API (v0.20) has gRPC conditions only
// on GrpcRoute, which a Detect protocol cannot carry, and annotation
// routes serve HTTP and gRPC alike. Weft's control plane sends gRPC status
// c as the range [GRPCStatusBase+c, GRPCStatusBase+c]; no HTTP status is
// that high, so another proxy would ignore them. Keep in step with
// internal/control/outbound/retries.go.
const GRPCStatusBase = 1000

// retriesOf reads the HTTP routes' retry policies by route name.
func retriesOf(p *outboundpb.OutboundPolicy) map[string]*retry.Policy {
	var routes []*outboundpb.HttpRoute
	switch k := p.GetProtocol().GetKind().(type) {
	case *outboundpb.ProxyProtocol_Detect_:
		routes = k.Detect.GetHttp1().GetRoutes()
	case *outboundpb.ProxyProtocol_Http1_:
		routes = k.Http1.GetRoutes()
	case *outboundpb.ProxyProtocol_Http2_:
		routes = k.Http2.GetRoutes()
	}
	var out map[string]*retry.Policy
	for _, r := range routes {
		name := r.GetMetadata().GetResource().GetName()
		if name == "" && r.GetMetadata().GetDefault() != "" {
			name = r.GetMetadata().GetDefault()
		}
		for _, rule := range r.GetRules() {
			rt := rule.GetRetry()
			if rt == nil || name == "" {
				continue
			}
			var ranges [][2]int
			var grpcCodes uint32 // bit c: retry gRPC status c
			for _, sr := range rt.GetConditions().GetStatusRanges() {
				lo, hi := int(sr.GetStart()), int(sr.GetEnd())
				if hi == 0 {
					hi = lo
				}
				if lo >= GRPCStatusBase {
					for c := lo; c <= hi && c-GRPCStatusBase < 32; c++ {
						grpcCodes |= 1 << (c - GRPCStatusBase)
					}
					continue
				}
				ranges = append(ranges, [2]int{lo, hi})
			}
			if out == nil {
				out = map[string]*retry.Policy{}
			}
			out[name] = &retry.Policy{
				Limit: int(rt.GetMaxRetries()),
				Retryable: func(status, grpcStatus int) bool {
					if grpcStatus >= 0 {
						// A gRPC response: only its gRPC status counts.
						return grpcStatus < 32 && grpcCodes&(1<<grpcStatus) != 0
					}
					for _, r := range ranges {
						if status >= r[0] && status <= r[1] {
							return true
						}
					}
					return false
				},
				Timeout:    rt.GetTimeout().AsDuration(),
				Backoff:    rt.GetBackoff().GetMinBackoff().AsDuration(),
				MaxBackoff: rt.GetBackoff().GetMaxBackoff().AsDuration(),
				Trailers:   grpcCodes != 0,
			}
			break // one retry policy per route (annotations give one)
		}
	}
	return out
}
