package outbound

import (
	"context"
	"net/http"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/breaker"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
	"github.com/weft-mesh/weft/internal/proxy/proxyerr"
	"github.com/weft-mesh/weft/internal/proxy/retry"
	"github.com/weft-mesh/weft/internal/proxy/route"
	"github.com/weft-mesh/weft/internal/proxy/telemetry"
	"github.com/weft-mesh/weft/internal/proxy/timeout"
)

// The outbound HTTP layers of a request to a service with routes, declared
// here and only here, outermost first:
//
//	route    match the profile's route; count route_request_total and
//	         route_response_total (effective: what the client sees)
//	timeout  the route's timeout, covering every attempt (504)
//	retry    the route's retries, under the limit and the service's budget;
//	         bodies replayed from a buffer of at most 64 KiB
//	attempt  count route_actual_* (each attempt)
//	endpoint balance (P2C peak-EWMA, failure accrual) and send
//
// Requests to services without routes skip straight to endpoint.
func (t *Transport) buildStack() http.RoundTripper {
	var rt http.RoundTripper = endpointRT{t}
	rt = attemptLayer(rt)
	rt = retry.Layer(func(r *http.Request) (*retry.Policy, *metrics.Route) {
		c := callOf(r)
		return c.retry, c.series
	})(rt)
	rt = timeout.Layer(func(r *http.Request) timeout.Policy { return callOf(r).route.Timeout })(rt)
	return rt
}

// call is what the route layer learned about a request, for the layers
// below it.
type call struct {
	w      *discovery.Watch
	st     *discovery.State
	route  *route.Route
	retry  *retry.Policy  // the route's, or OutboundPolicies' exact one
	series *metrics.Route // nil without route metrics
}

type callKey struct{}

func callOf(r *http.Request) *call { return r.Context().Value(callKey{}).(*call) }

// routed is the route layer: it matches req to a route of p and runs the
// stack below.
func (t *Transport) routed(req *http.Request, w *discovery.Watch, st *discovery.State, p *route.Profile) (*http.Response, error) {
	c := &call{w: w, st: st, route: p.Match(req)}
	c.retry = c.route.Retry
	if rs := w.Policy().Retries; rs != nil {
		if rp := rs[c.route.Name]; rp != nil && c.route.Retry != nil {
			// Annotation routes: GetProfile only says "retryable";
			// OutboundPolicies has the limit, conditions, per-try timeout.
			c.retry = rp
		}
	}
	if t.cfg.Routes != nil {
		c.series = c.route.Metrics(t.cfg.Routes, w.Target.Path)
		c.series.Requests.Inc()
	}
	resp, err := t.stack.RoundTrip(req.WithContext(context.WithValue(req.Context(), callKey{}, c)))
	if c.series != nil {
		countResponse(c, resp, err, false)
	}
	return resp, err
}

// countResponse counts a response (or failure) on the route's series, at
// the response headers.
func countResponse(c *call, resp *http.Response, err error, actual bool) {
	if err != nil {
		status, _ := proxyerr.Classify(err)
		c.series.Response(status, metrics.NoGRPCStatus, true, actual)
		return
	}
	g := telemetry.GRPCStatus(resp.Header)
	c.series.Response(resp.StatusCode, g, c.route.IsFailure(resp.StatusCode, g), actual)
}

// attemptLayer counts every attempt on the route's series.
func attemptLayer(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(req *http.Request) (*http.Response, error) {
		c := callOf(req)
		if c.series == nil {
			return next.RoundTrip(req)
		}
		c.series.ActualRequests.Inc()
		resp, err := next.RoundTrip(req)
		countResponse(c, resp, err, true)
		return resp, err
	})
}

// endpointRT is the innermost layer: balance over the service's endpoints
// and send.
type endpointRT struct{ t *Transport }

func (e endpointRT) RoundTrip(req *http.Request) (*http.Response, error) {
	c := callOf(req)
	return e.t.endpoint(req, c.w, c.st, false)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// accrualSetter is a balancer whose failure accrual can be configured.
type accrualSetter interface{ SetAccrual(*breaker.Config) }

// syncAccrual applies the service's failure accrual (OutboundPolicies) to
// its balancer when the policy changed.
func (s *service) syncAccrual(p *discovery.Policy) {
	if s.policy.Load() == p {
		return
	}
	s.mu.Lock()
	if s.policy.Load() != p {
		if as, ok := s.b.(accrualSetter); ok {
			as.SetAccrual(p.Accrual)
		}
		s.policy.Store(p)
	}
	s.mu.Unlock()
}
