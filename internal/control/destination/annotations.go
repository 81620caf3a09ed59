package destination

import (
	"fmt"
	"regexp"
	"strconv"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
)

// Linkerd 2.16+ configures retries and timeouts without a ServiceProfile,
// with retry.linkerd.io/* and timeout.linkerd.io/* annotations on the
// Service and on HTTPRoutes attached to it (parentRef kind Service), and
// with an HTTPRoute rule's timeouts.request. Weft's proxies learn routes
// from GetProfile, so the control plane translates those into profile
// routes:
//
//   - any ServiceProfile for the Service disables the annotations;
//   - each HTTPRoute rule attached to the Service (and the port, if the
//     parentRef names one) becomes a route matching the rule's matches; an
//     HTTPRoute's retry annotations replace the Service's as a whole, and
//     so do its timeout annotations; rules[].timeouts.request applies when
//     no annotation sets the request timeout;
//   - without HTTPRoutes, one catch-all route "default" carries the
//     Service's annotations.
//
// What DestinationProfile cannot say (the retry limit, the statuses to
// retry, the per-try timeout) the control plane's OutboundPolicies service
// sends for the same route names (internal/control/outbound/retries.go);
// the proxy lays it over these routes, gRPC conditions (retry.linkerd.io/grpc)
// included. GRPCRoutes attached to the Service count as HTTPRoutes over
// their methods' paths (grpcAsHTTP).
// timeout.linkerd.io/request and /response both bound the response
// headers (the route timeout); /idle is not applied.

// annotationRoute is the policy of one route from annotations.
type annotationRoute struct {
	retry   *api.RetryAnnotations
	timeout time.Duration
}

func (r annotationRoute) empty() bool { return r.retry == nil && r.timeout <= 0 }

// readAnnotations reads the retry and timeout annotations of one object;
// bad values are reported and ignored (apply-time validation should have
// refused them).
func readAnnotations(a map[string]string) (retry *api.RetryAnnotations, retrySet bool, timeout time.Duration, timeoutSet bool, err error) {
	retry, err = api.ParseRetryAnnotations(a)
	if err != nil {
		return nil, false, 0, false, err
	}
	t, err := api.ParseTimeoutAnnotations(a)
	if err != nil {
		return nil, false, 0, false, err
	}
	timeout = t.Request
	if t.Response > 0 && (timeout <= 0 || t.Response < timeout) {
		timeout = t.Response
	}
	_, rq := a[api.AnnotationTimeoutRequest]
	_, rs := a[api.AnnotationTimeoutResponse]
	return retry, retry != nil, timeout, rq || rs, nil
}

// annotationProfile returns the profile of a Service without a
// ServiceProfile, built from its annotations and attached HTTPRoutes, or
// nil if they configure nothing.
func annotationProfile(svc *corev1.Service, port uint32, routes []*gatewayv1.HTTPRoute, fqn string) (*pb.DestinationProfile, error) {
	sRetry, _, sTimeout, _, err := readAnnotations(svc.Annotations)
	if err != nil {
		return nil, fmt.Errorf("service %s/%s: %w", svc.Namespace, svc.Name, err)
	}
	p := defaultProfile(fqn)
	attached := false
	for _, hr := range routes {
		if !attachedTo(hr, svc, port) {
			continue
		}
		attached = true
		rRetry, rRetrySet, rTimeout, rTimeoutSet, err := readAnnotations(hr.Annotations)
		if err != nil {
			return nil, fmt.Errorf("httproute %s/%s: %w", hr.Namespace, hr.Name, err)
		}
		for i, rule := range hr.Spec.Rules {
			pol := annotationRoute{retry: sRetry, timeout: sTimeout}
			if rRetrySet {
				pol.retry = rRetry
			}
			if rTimeoutSet {
				pol.timeout = rTimeout
			} else if rule.Timeouts != nil && rule.Timeouts.Request != nil {
				if d, err := time.ParseDuration(string(*rule.Timeouts.Request)); err == nil {
					pol.timeout = d
				}
			}
			cond, err := ruleCondition(rule.Matches)
			if err != nil {
				return nil, fmt.Errorf("httproute %s/%s: rules[%d]: %w", hr.Namespace, hr.Name, i, err)
			}
			name := hr.Name
			if len(hr.Spec.Rules) > 1 {
				name += "/" + strconv.Itoa(i)
			}
			p.Routes = append(p.Routes, annotatedRoute(name, cond, pol))
		}
	}
	if !attached {
		pol := annotationRoute{retry: sRetry, timeout: sTimeout}
		if pol.empty() {
			return nil, nil
		}
		p.Routes = append(p.Routes, annotatedRoute("default", &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: ".*"}}}, pol))
	}
	return p, nil
}

func annotatedRoute(name string, cond *pb.RequestMatch, pol annotationRoute) *pb.Route {
	r := &pb.Route{Condition: cond, MetricsLabels: map[string]string{"route": name}, ResponseClasses: []*pb.ResponseClass{}}
	if pol.timeout > 0 {
		r.Timeout = durationpb.New(pol.timeout)
	}
	// gRPC conditions cannot be said here (response classes match HTTP
	// statuses); OutboundPolicies carries them, laid over this route.
	if pol.retry != nil && pol.retry.Limit > 0 {
		r.IsRetryable = true
		for _, sr := range pol.retry.HTTP {
			r.ResponseClasses = append(r.ResponseClasses, &pb.ResponseClass{
				Condition: &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: sr.Min, Max: sr.Max}}},
				IsFailure: true,
			})
		}
	}
	return r
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

// ruleCondition turns an HTTPRoute rule's matches (ORed; each ANDs its
// path and method; none means every request) into a RequestMatch. Header
// and query matches cannot be expressed and make the match never apply
// rather than apply too widely.
func ruleCondition(ms []gatewayv1.HTTPRouteMatch) (*pb.RequestMatch, error) {
	if len(ms) == 0 {
		return &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: ".*"}}}, nil
	}
	var any []*pb.RequestMatch
	for _, m := range ms {
		var parts []*pb.RequestMatch
		re := "/.*"
		if m.Path != nil && m.Path.Value != nil {
			v := *m.Path.Value
			t := gatewayv1.PathMatchPathPrefix
			if m.Path.Type != nil {
				t = *m.Path.Type
			}
			switch t {
			case gatewayv1.PathMatchExact:
				re = regexp.QuoteMeta(v)
			case gatewayv1.PathMatchRegularExpression:
				re = v
			default: // prefix, by path segments
				if v == "/" {
					re = "/.*"
				} else {
					q := regexp.QuoteMeta(trimSlash(v))
					re = q + "(/.*)?"
				}
			}
		}
		parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: re}}})
		if m.Method != nil {
			parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: toHTTPMethod(string(*m.Method))}})
		}
		if len(m.Headers) > 0 || len(m.QueryParams) > 0 {
			// Not expressible: never match ("not any path").
			parts = append(parts, &pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: ".*"}}}}})
		}
		any = append(any, &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: parts}}})
	}
	if len(any) == 1 {
		return any[0], nil
	}
	return &pb.RequestMatch{Match: &pb.RequestMatch_Any{Any: &pb.RequestMatch_Seq{Matches: any}}}, nil
}

func trimSlash(s string) string {
	for len(s) > 1 && s[len(s)-1] == '/' {
		s = s[:len(s)-1]
	}
	return s
}

// grpcAsHTTP returns a GRPCRoute as the HTTPRoute it amounts to for
// annotation routes: the same name, annotations and parentRefs, each rule
// matching its methods' paths (/service/method, POST). Header matches
// cannot be expressed and make the match never apply, as for HTTPRoutes.
// GRPCRoute rules have no timeouts field; annotations set them.
func grpcAsHTTP(gr *gatewayv1.GRPCRoute) *gatewayv1.HTTPRoute {
	hr := &gatewayv1.HTTPRoute{ObjectMeta: gr.ObjectMeta}
	hr.Spec.ParentRefs = gr.Spec.ParentRefs
	regex := gatewayv1.PathMatchRegularExpression
	post := gatewayv1.HTTPMethodPost
	for _, rule := range gr.Spec.Rules {
		var hrule gatewayv1.HTTPRouteRule
		for _, m := range rule.Matches {
			re := "/[^/]+/[^/]+"
			if mm := m.Method; mm != nil {
				quote := regexp.QuoteMeta
				if mm.Type != nil && *mm.Type == gatewayv1.GRPCMethodMatchRegularExpression {
					quote = func(s string) string { return "(?:" + s + ")" }
				}
				svc, method := "[^/]+", "[^/]+"
				if mm.Service != nil && *mm.Service != "" {
					svc = quote(*mm.Service)
				}
				if mm.Method != nil && *mm.Method != "" {
					method = quote(*mm.Method)
				}
				re = "/" + svc + "/" + method
			}
			hm := gatewayv1.HTTPRouteMatch{Path: &gatewayv1.HTTPPathMatch{Type: &regex, Value: &re}, Method: &post}
			if len(m.Headers) > 0 {
				hm.Headers = []gatewayv1.HTTPHeaderMatch{{Name: "grpc-header-match"}}
			}
			hrule.Matches = append(hrule.Matches, hm)
		}
		hr.Spec.Rules = append(hr.Spec.Rules, hrule)
	}
	return hr
}
