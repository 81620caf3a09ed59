package outbound

import (
	"context"
	"strconv"
	"time"

	metapb "github.com/linkerd/linkerd2-proxy-api/go/meta"
	pb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// Retry parameters the control plane adds, as Linkerd's does: bodies over
// 64 KiB are never retried; backoff 25ms..250ms.
const (
	maxRequestBytes = 64 << 10
	minBackoff      = 25 * time.Millisecond
	maxBackoff      = 250 * time.Millisecond
	// grpcStatusBase: gRPC status c is sent as HTTP status range
	// [grpcStatusBase+c, grpcStatusBase+c], which no HTTP response has.
	grpcStatusBase = 1000
)

// annotationRetries returns, for a Service without a ServiceProfile, the
// exact retry policy of each route that Destination's GetProfile describes
// from annotations (internal/control/destination/annotations.go: the same
// route names). GetProfile can only mark those routes retryable; this
// carries the limit, conditions and per-try timeout, which the proxy lays
// over the profile's routes by name. Route annotations replace the
// Service's as a whole; any ServiceProfile disables them (no routes here).
func (s *Server) annotationRetries(ctx context.Context, svc *corev1.Service, port uint32) []*pb.HttpRoute {
	fqn := svc.Name + "." + svc.Namespace + ".svc.cluster.local"
	if o, err := s.store.Get(ctx, api.Ref{Kind: api.KindServiceProfile, Namespace: svc.Namespace, Name: fqn}); err == nil && o != nil {
		return nil
	}
	sRetry, err := api.ParseRetryAnnotations(svc.Annotations)
	if err != nil {
		s.log.Warn("ignoring retry annotations", "service", svc.Namespace+"/"+svc.Name, "err", err)
		sRetry = nil
	}
	var out []*pb.HttpRoute
	attached := false
	for _, k := range []api.Kind{api.KindHTTPRoute, api.KindPolicyHTTPRoute, api.KindGRPCRoute} {
		objs, err := s.store.List(ctx, k, svc.Namespace)
		if err != nil {
			continue
		}
		for _, o := range objs {
			// GRPCRoutes count as HTTPRoutes (the same names as the
			// Destination's profile routes: destination.grpcAsHTTP).
			var hr *gatewayv1.HTTPRoute
			switch r := o.(type) {
			case *gatewayv1.HTTPRoute:
				hr = r
			case *gatewayv1.GRPCRoute:
				hr = &gatewayv1.HTTPRoute{ObjectMeta: r.ObjectMeta}
				hr.Spec.ParentRefs = r.Spec.ParentRefs
				hr.Spec.Rules = make([]gatewayv1.HTTPRouteRule, len(r.Spec.Rules))
			}
			if hr == nil || !attachedTo(hr, svc, port) {
				continue
			}
			attached = true
			r := sRetry
			if rr, err := api.ParseRetryAnnotations(hr.Annotations); err != nil {
				s.log.Warn("ignoring retry annotations", "route", k.Kind+" "+hr.Namespace+"/"+hr.Name, "err", err)
			} else if rr != nil {
				r = rr
			}
			for i := range hr.Spec.Rules {
				name := hr.Name
				if len(hr.Spec.Rules) > 1 {
					name += "/" + strconv.Itoa(i)
				}
				if r != nil {
					out = append(out, retryRoute(name, r))
				}
			}
		}
	}
	if !attached && sRetry != nil {
		out = append(out, retryRoute("default", sRetry))
	}
	return out
}

func retryRoute(name string, r *api.RetryAnnotations) *pb.HttpRoute {
	ranges := r.HTTP
	if ranges == nil {
		ranges = []api.StatusRange{{Min: 500, Max: 599}}
	}
	conds := &pb.HttpRoute_Retry_Conditions{}
	for _, sr := range ranges {
		conds.StatusRanges = append(conds.StatusRanges, &pb.HttpRoute_Retry_Conditions_StatusRange{Start: sr.Min, End: sr.Max})
	}
	for _, c := range r.GRPC {
		// gRPC conditions ride as status ranges from grpcStatusBase (see
		// discovery.GRPCStatusBase in the proxy): this API version has no
		// gRPC conditions on an HttpRoute.
		v := grpcStatusBase + uint32(c)
		conds.StatusRanges = append(conds.StatusRanges, &pb.HttpRoute_Retry_Conditions_StatusRange{Start: v, End: v})
	}
	retry := &pb.HttpRoute_Retry{
		MaxRetries:      r.Limit,
		MaxRequestBytes: maxRequestBytes,
		Conditions:      conds,
		Backoff:         &pb.ExponentialBackoff{MinBackoff: durationpb.New(minBackoff), MaxBackoff: durationpb.New(maxBackoff), JitterRatio: 1},
	}
	if r.Timeout > 0 {
		retry.Timeout = durationpb.New(r.Timeout)
	}
	return &pb.HttpRoute{
		Metadata: &metapb.Metadata{Kind: &metapb.Metadata_Resource{Resource: &metapb.Resource{Kind: "HTTPRoute", Name: name}}},
		Rules:    []*pb.HttpRoute_Rule{{Retry: retry}},
	}
}

// attachedTo reports whether hr has a parentRef to svc (and port, if the
// parentRef names one).
func attachedTo(hr *gatewayv1.HTTPRoute, svc *corev1.Service, port uint32) bool {
	for _, ref := range hr.Spec.ParentRefs {
		if ref.Kind == nil || string(*ref.Kind) != "Service" {
			continue
		}
		if ref.Group != nil && *ref.Group != "" && *ref.Group != "core" {
			continue
		}
		ns := hr.Namespace
		if ref.Namespace != nil {
			ns = string(*ref.Namespace)
		}
		if ns != svc.Namespace || string(ref.Name) != svc.Name {
			continue
		}
		if ref.Port != nil && uint32(*ref.Port) != port {
			continue
		}
		return true
	}
	return false
}
