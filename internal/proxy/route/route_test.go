package route

import (
	"net/http/httptest"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	httptypes "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weft-mesh/weft/internal/metrics"
)

func path(re string) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: re}}}
}

func method(m httptypes.HttpMethod_Registered) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: &httptypes.HttpMethod{Type: &httptypes.HttpMethod_Registered_{Registered: m}}}}
}

func all(ms ...*pb.RequestMatch) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: ms}}}
}

func not(m *pb.RequestMatch) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: m}}
}

func status(lo, hi uint32) *pb.ResponseMatch {
	return &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: lo, Max: hi}}}
}

func testProfile(t *testing.T) *Profile {
	t.Helper()
	p, err := Compile(&pb.DestinationProfile{
		FullyQualifiedName: "smiley.faces.svc.cluster.local",
		RetryBudget:        &pb.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 1, Ttl: durationpb.New(time.Second)},
		Routes: []*pb.Route{
			{MetricsLabels: map[string]string{"route": "GET /api"}, Condition: all(method(httptypes.HttpMethod_GET), path("/api/.*")),
				IsRetryable: true, Timeout: durationpb.New(300 * time.Millisecond),
				ResponseClasses: []*pb.ResponseClass{{Condition: status(404, 404), IsFailure: true}, {Condition: status(500, 0), IsFailure: false}}},
			{MetricsLabels: map[string]string{"route": "not GET"}, Condition: not(method(httptypes.HttpMethod_GET))},
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestMatch(t *testing.T) {
	p := testProfile(t)
	for _, tc := range []struct{ method, target, want string }{
		{"GET", "/api/x", "GET /api"},
		{"GET", "/api/", "GET /api"},
		{"GET", "/apix", ""},              // anchored: the whole path must match
		{"GET", "/v1/api/x", ""},          // anchored at the start too
		{"POST", "/api/x", "not GET"},     // first match wins, in order
		{"GET", "/api/x?q=1", "GET /api"}, // the query is not part of the path
	} {
		r := p.Match(httptest.NewRequest(tc.method, tc.target, nil))
		if r.Name != tc.want {
			t.Errorf("%s %s matched %q, want %q", tc.method, tc.target, r.Name, tc.want)
		}
	}
}

func TestRoutePolicies(t *testing.T) {
	p := testProfile(t)
	r := p.Routes[0]
	if r.Retry == nil || r.Retry.Limit >= 0 || r.Retry.Budget != p.Budget {
		t.Fatalf("retryable route policy %+v: want budget-bound retries", r.Retry)
	}
	if r.Timeout.Response != 300*time.Millisecond {
		t.Fatalf("route timeout %v, want 300ms", r.Timeout.Response)
	}
	if p.Routes[1].Retry != nil || !p.Routes[1].Timeout.IsZero() {
		t.Fatal("a plain route got retries or a timeout")
	}
	for _, tc := range []struct {
		status, grpc int
		want         bool
	}{
		{200, metrics.NoGRPCStatus, false},
		{404, metrics.NoGRPCStatus, true},  // a class marks 404 a failure
		{503, metrics.NoGRPCStatus, false}, // a class marks 500+ a success
		{200, 14, true},                    // no class matches 200: the gRPC status decides
		{200, 0, false},
	} {
		if got := r.IsFailure(tc.status, tc.grpc); got != tc.want {
			t.Errorf("IsFailure(%d, %d) = %v, want %v", tc.status, tc.grpc, got, tc.want)
		}
	}
	// The default route classifies like Linkerd: 5xx fails.
	d := p.Match(httptest.NewRequest("GET", "/other", nil))
	if d.Name != "" || !d.IsFailure(500, metrics.NoGRPCStatus) || d.IsFailure(404, metrics.NoGRPCStatus) || d.Retry != nil {
		t.Fatal("default route misclassifies or retries")
	}
}

func TestCompileRejects(t *testing.T) {
	for name, m := range map[string]*pb.RequestMatch{
		"bad regex": path("(["),
		"empty":     {},
		"nil all":   all(nil),
	} {
		_, err := Compile(&pb.DestinationProfile{Routes: []*pb.Route{{Condition: m}}}, nil)
		if err == nil {
			t.Errorf("%s: compiled", name)
		}
	}
}

// FuzzMatch compiles arbitrary path regexes and matches arbitrary paths:
// Compile refuses or the matcher answers, never panics.
func FuzzMatch(f *testing.F) {
	f.Add("/api/.*", "/api/x")
	f.Add("/(a|b)+", "/abab")
	f.Add("([", "/")
	f.Fuzz(func(t *testing.T, re, p string) {
		prof, err := Compile(&pb.DestinationProfile{Routes: []*pb.Route{{Condition: path(re)}}}, nil)
		if err != nil {
			return
		}
		req := httptest.NewRequest("GET", "/", nil)
		req.URL.Path = p
		prof.Match(req)
	})
}
