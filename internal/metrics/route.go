package metrics

import (
	"net"
	"strconv"
	"strings"
	"sync"
)

// Routes records per-route metrics of the outbound side, with Linkerd's
// names: route_request_total and route_response_total count what the
// client sees (effective: once per request, after retries),
// route_actual_request_total and route_actual_response_total count every
// attempt, so that effective versus actual success rate (and the retry
// ratio) can be computed; outbound_http_route_retry_* count the retry
// layer's decisions. route_* carry `dst` and `rt_route` (as Linkerd's
// ServiceProfile route metrics); outbound_http_route_retry_* carry
// `parent_*` and `route_*` (as Linkerd's policy route metrics).
type Routes struct {
	base                                           Labels
	req, resp, actualReq, actualResp               *CounterVec
	retryReq, retrySucc, retryLimit, retryOverflow *CounterVec
	series                                         sync.Map // routeKey -> *Route
}

type routeKey struct{ dst, route string }

// NewRoutes registers the route families in r; base labels every series
// (direction, namespace, pod, deployment).
func NewRoutes(r *Registry, base Labels) *Routes {
	return &Routes{
		base:          base,
		req:           r.NewCounter("route_request_total", "Total count of requests per route (after retries)."),
		resp:          r.NewCounter("route_response_total", "Total count of responses per route (after retries)."),
		actualReq:     r.NewCounter("route_actual_request_total", "Total count of request attempts per route."),
		actualResp:    r.NewCounter("route_actual_response_total", "Total count of responses to request attempts per route."),
		retryReq:      r.NewCounter("outbound_http_route_retry_requests_total", "Total count of retried requests."),
		retrySucc:     r.NewCounter("outbound_http_route_retry_successes_total", "Total count of retried requests that succeeded."),
		retryLimit:    r.NewCounter("outbound_http_route_retry_limit_exceeded_total", "Total count of requests whose retries hit the limit."),
		retryOverflow: r.NewCounter("outbound_http_route_retry_overflow_total", "Total count of retries refused by the retry budget."),
	}
}

// Route returns the series of one route of the service dst
// (name.ns.svc.cluster.local:port). route "" is the default route
// (requests no route matched).
func (rs *Routes) Route(dst, route string) *Route {
	k := routeKey{dst, route}
	if v, ok := rs.series.Load(k); ok {
		return v.(*Route)
	}
	l := rs.base.With("dst", dst, "rt_route", route)
	host, port, err := net.SplitHostPort(dst)
	if err != nil {
		host, port = dst, "80"
	}
	name, ns := host, ""
	if parts := strings.SplitN(host, ".", 3); len(parts) >= 2 {
		name, ns = parts[0], parts[1]
	}
	kind, rname := "ServiceProfile", route
	if route == "" {
		kind, rname = "default", "default"
	}
	pl := rs.base.With("parent_group", "core", "parent_kind", "Service", "parent_namespace", ns, "parent_name", name,
		"parent_port", port, "route_group", "linkerd.io", "route_kind", kind, "route_name", rname)
	r := &Route{
		rs: rs, labels: l,
		Requests:       rs.req.With(l),
		ActualRequests: rs.actualReq.With(l),
		Retries:        rs.retryReq.With(pl),
		RetrySuccesses: rs.retrySucc.With(pl),
		LimitExceeded:  rs.retryLimit.With(pl),
		Overflows:      rs.retryOverflow.With(pl),
	}
	v, _ := rs.series.LoadOrStore(k, r)
	return v.(*Route)
}

// Route is the series of one route. Its counters are safe to use directly.
type Route struct {
	rs     *Routes
	labels Labels

	Requests, ActualRequests                          *Counter
	Retries, RetrySuccesses, LimitExceeded, Overflows *Counter

	responses smallMap[routeRespKey, *Counter]
}

type routeRespKey struct {
	status, grpc int
	failure      bool
	actual       bool
}

// Response counts a response: actual for an attempt, else the effective
// response the client got. failure is the route's classification.
func (r *Route) Response(status, grpcStatus int, failure, actual bool) {
	c := r.responses.get(routeRespKey{status, grpcStatus, failure, actual}, func() *Counter {
		l := r.labels.With("status_code", strconv.Itoa(status))
		if grpcStatus != NoGRPCStatus {
			l = l.With("grpc_status", strconv.Itoa(grpcStatus))
		}
		class := "success"
		if failure {
			class = "failure"
		}
		l = l.With("classification", class)
		if actual {
			return r.rs.actualResp.With(l)
		}
		return r.rs.resp.With(l)
	})
	c.Inc()
}
