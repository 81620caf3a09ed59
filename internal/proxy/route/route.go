// Package route matches requests to the routes of a service's profile
// (Destination GetProfile: ServiceProfile routes, or the routes the control
// plane derives from HTTPRoute and Service annotations) and turns each
// route into the policies of the layers below it: response classification,
// timeouts and retries.
package route

import (
	"fmt"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	httptypes "github.com/linkerd/linkerd2-proxy-api/go/http_types"

	"github.com/weft-mesh/weft/internal/metrics"
	"github.com/weft-mesh/weft/internal/proxy/retry"
	"github.com/weft-mesh/weft/internal/proxy/timeout"
)

// Profile is a compiled DestinationProfile: the service's routes, in
// order (the first match wins), and its retry budget.
type Profile struct {
	// Name is the service's fully qualified name.
	Name   string
	Routes []*Route
	// Budget is shared by the service's retryable routes.
	Budget *retry.Budget

	def *Route
}

// Route is one route. Its fields are read-only after Compile.
type Route struct {
	// Name is the route's name (its `route` metric label).
	Name string
	// Timeout covers every attempt of a request on the route.
	Timeout timeout.Policy
	// Retry is nil when the route is not retryable.
	Retry *retry.Policy

	match   matcher
	classes []class

	series atomic.Pointer[metrics.Route]
}

// IsFailure classifies a response by the route's response classes (first
// match wins); without a matching class, 5xx and non-OK gRPC statuses are
// failures. grpcStatus is metrics.NoGRPCStatus when absent.
func (r *Route) IsFailure(status, grpcStatus int) bool {
	for _, c := range r.classes {
		if c.match(status) {
			return c.failure
		}
	}
	if grpcStatus != metrics.NoGRPCStatus {
		return grpcStatus != 0
	}
	return status >= 500
}

// Metrics returns the route's series in m for the service dst, interning
// them on the route so that the request path does no lookup.
func (r *Route) Metrics(m *metrics.Routes, dst string) *metrics.Route {
	if s := r.series.Load(); s != nil {
		return s
	}
	// Concurrent first calls intern the same series.
	s := m.Route(dst, r.Name)
	r.series.Store(s)
	return s
}

// Match returns the route of req: the first whose condition matches, else
// the profile's default route (named "": it classifies like Linkerd and
// neither retries nor times out).
func (p *Profile) Match(req *http.Request) *Route {
	for _, r := range p.Routes {
		if r.match(req) {
			return r
		}
	}
	return p.def
}

// Compile turns a DestinationProfile into a Profile. now is the budget's
// clock (nil: time.Now).
func Compile(dp *pb.DestinationProfile, now func() time.Time) (*Profile, error) {
	p := &Profile{Name: dp.GetFullyQualifiedName(), def: &Route{}}
	if b := dp.GetRetryBudget(); b != nil {
		p.Budget = retry.NewBudget(float64(b.GetRetryRatio()), float64(b.GetMinRetriesPerSecond()), b.GetTtl().AsDuration(), now)
	} else {
		p.Budget = retry.NewBudget(retry.DefaultRatio, retry.DefaultMinPerSec, retry.DefaultTTL, now)
	}
	for i, pr := range dp.GetRoutes() {
		m, err := compileRequest(pr.GetCondition())
		if err != nil {
			return nil, fmt.Errorf("route: profile %s: route %d: %w", p.Name, i, err)
		}
		r := &Route{Name: pr.GetMetricsLabels()["route"], match: m}
		for _, rc := range pr.GetResponseClasses() {
			cm, err := compileResponse(rc.GetCondition())
			if err != nil {
				return nil, fmt.Errorf("route: profile %s: route %q: response class: %w", p.Name, r.Name, err)
			}
			r.classes = append(r.classes, class{match: cm, failure: rc.GetIsFailure()})
		}
		if t := pr.GetTimeout(); t != nil && t.AsDuration() > 0 {
			r.Timeout.Response = t.AsDuration()
		}
		if pr.GetIsRetryable() {
			r.Retry = &retry.Policy{Limit: -1, Budget: p.Budget, Retryable: r.IsFailure}
		}
		p.Routes = append(p.Routes, r)
	}
	return p, nil
}

type matcher func(*http.Request) bool

type class struct {
	match   func(status int) bool
	failure bool
}

func compileRequest(m *pb.RequestMatch) (matcher, error) {
	if m == nil {
		return nil, fmt.Errorf("empty request match")
	}
	switch v := m.GetMatch().(type) {
	case *pb.RequestMatch_All:
		ms, err := compileRequests(v.All.GetMatches())
		if err != nil {
			return nil, err
		}
		return func(r *http.Request) bool {
			for _, m := range ms {
				if !m(r) {
					return false
				}
			}
			return true
		}, nil
	case *pb.RequestMatch_Any:
		ms, err := compileRequests(v.Any.GetMatches())
		if err != nil {
			return nil, err
		}
		return func(r *http.Request) bool {
			for _, m := range ms {
				if m(r) {
					return true
				}
			}
			return false
		}, nil
	case *pb.RequestMatch_Not:
		inner, err := compileRequest(v.Not)
		if err != nil {
			return nil, err
		}
		return func(r *http.Request) bool { return !inner(r) }, nil
	case *pb.RequestMatch_Path:
		// Linkerd anchors path regexes: the whole path must match.
		re, err := regexp.Compile(`^(?:` + v.Path.GetRegex() + `)$`)
		if err != nil {
			return nil, fmt.Errorf("path regex %q: %w", v.Path.GetRegex(), err)
		}
		return func(r *http.Request) bool { return re.MatchString(r.URL.Path) }, nil
	case *pb.RequestMatch_Method:
		want := methodName(v.Method)
		return func(r *http.Request) bool { return r.Method == want }, nil
	}
	return nil, fmt.Errorf("unknown request match %T", m.GetMatch())
}

func compileRequests(ms []*pb.RequestMatch) ([]matcher, error) {
	out := make([]matcher, 0, len(ms))
	for _, m := range ms {
		c, err := compileRequest(m)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

func methodName(m *httptypes.HttpMethod) string {
	if u := m.GetUnregistered(); u != "" {
		return u
	}
	return m.GetRegistered().String()
}

func compileResponse(m *pb.ResponseMatch) (func(int) bool, error) {
	if m == nil {
		return nil, fmt.Errorf("empty response match")
	}
	switch v := m.GetMatch().(type) {
	case *pb.ResponseMatch_All:
		ms, err := compileResponses(v.All.GetMatches())
		if err != nil {
			return nil, err
		}
		return func(s int) bool {
			for _, m := range ms {
				if !m(s) {
					return false
				}
			}
			return true
		}, nil
	case *pb.ResponseMatch_Any:
		ms, err := compileResponses(v.Any.GetMatches())
		if err != nil {
			return nil, err
		}
		return func(s int) bool {
			for _, m := range ms {
				if m(s) {
					return true
				}
			}
			return false
		}, nil
	case *pb.ResponseMatch_Not:
		inner, err := compileResponse(v.Not)
		if err != nil {
			return nil, err
		}
		return func(s int) bool { return !inner(s) }, nil
	case *pb.ResponseMatch_Status:
		// Zero bounds are open, as ServiceProfile documents them.
		lo, hi := int(v.Status.GetMin()), int(v.Status.GetMax())
		if hi == 0 {
			hi = 999
		}
		return func(s int) bool { return s >= lo && s <= hi }, nil
	}
	return nil, fmt.Errorf("unknown response match %T", m.GetMatch())
}

func compileResponses(ms []*pb.ResponseMatch) ([]func(int) bool, error) {
	out := make([]func(int) bool, 0, len(ms))
	for _, m := range ms {
		c, err := compileResponse(m)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
