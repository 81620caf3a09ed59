package destination

import (
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	httptypes "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weft-mesh/weft/internal/api"
)

const smileyFQN = "smiley.faces.svc.cluster.local"

func wantDefaultProfile(fqn string) *pb.DestinationProfile {
	return &pb.DestinationProfile{
		FullyQualifiedName: fqn,
		RetryBudget:        &pb.RetryBudget{RetryRatio: 0.2, MinRetriesPerSecond: 10, Ttl: durationpb.New(10 * time.Second)},
	}
}

func method(m httptypes.HttpMethod_Registered) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_Method{Method: &httptypes.HttpMethod{Type: &httptypes.HttpMethod_Registered_{Registered: m}}}}
}

func pathRe(re string) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: re}}}
}

func allOf(ms ...*pb.RequestMatch) *pb.RequestMatch {
	return &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: ms}}}
}

// smileyProfile exercises every part of the translation.
func smileyProfile(ns string) *api.ServiceProfile {
	return serviceProfile(ns, smileyFQN, api.ServiceProfileSpec{
		Routes: []api.RouteSpec{
			{
				Name: "GET /api",
				Condition: &api.RequestMatch{All: []*api.RequestMatch{
					{Method: "GET"},
					{PathRegex: "/api/.*"},
				}},
				ResponseClasses: []*api.ResponseClass{
					{Condition: &api.ResponseMatch{Status: &api.Range{Min: 500, Max: 599}}, IsFailure: true},
					{Condition: &api.ResponseMatch{Not: &api.ResponseMatch{Any: []*api.ResponseMatch{{Status: &api.Range{Min: 200, Max: 299}}}}}},
				},
				IsRetryable: true,
				Timeout:     "300ms",
			},
			{Name: "not post", Condition: &api.RequestMatch{Not: &api.RequestMatch{Method: "post"}}},
			{Name: "any", Condition: &api.RequestMatch{Any: []*api.RequestMatch{{PathRegex: "/a"}, {Method: "PURGE"}}}},
			{Name: "two fields", Condition: &api.RequestMatch{Method: "PUT", PathRegex: "/x"}},
		},
		RetryBudget: &api.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, TTL: "1m"},
		DstOverrides: []*api.WeightedDst{
			{Authority: "smiley.faces.svc.cluster.local:80", Weight: "500m"},
			{Authority: "smiley2.faces.svc.cluster.local:80", Weight: "1"},
		},
	})
}

func wantSmileyProfile() *pb.DestinationProfile {
	return &pb.DestinationProfile{
		FullyQualifiedName: smileyFQN,
		RetryBudget:        &pb.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, Ttl: durationpb.New(time.Minute)},
		Routes: []*pb.Route{
			{
				Condition: allOf(method(httptypes.HttpMethod_GET), pathRe("/api/.*")),
				ResponseClasses: []*pb.ResponseClass{
					{Condition: &pb.ResponseMatch{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: 500, Max: 599}}}, IsFailure: true},
					{Condition: &pb.ResponseMatch{Match: &pb.ResponseMatch_Not{Not: &pb.ResponseMatch{Match: &pb.ResponseMatch_Any{Any: &pb.ResponseMatch_Seq{
						Matches: []*pb.ResponseMatch{{Match: &pb.ResponseMatch_Status{Status: &pb.HttpStatusRange{Min: 200, Max: 299}}}},
					}}}}}},
				},
				MetricsLabels: map[string]string{"route": "GET /api"},
				IsRetryable:   true,
				Timeout:       durationpb.New(300 * time.Millisecond),
			},
			{
				Condition:     &pb.RequestMatch{Match: &pb.RequestMatch_Not{Not: method(httptypes.HttpMethod_POST)}},
				MetricsLabels: map[string]string{"route": "not post"},
			},
			{
				Condition: &pb.RequestMatch{Match: &pb.RequestMatch_Any{Any: &pb.RequestMatch_Seq{Matches: []*pb.RequestMatch{
					pathRe("/a"),
					{Match: &pb.RequestMatch_Method{Method: &httptypes.HttpMethod{Type: &httptypes.HttpMethod_Unregistered{Unregistered: "PURGE"}}}},
				}}}},
				MetricsLabels: map[string]string{"route": "any"},
			},
			{
				Condition:     allOf(method(httptypes.HttpMethod_PUT), pathRe("/x")),
				MetricsLabels: map[string]string{"route": "two fields"},
			},
		},
		DstOverrides: []*pb.WeightedDst{
			{Authority: "smiley.faces.svc.cluster.local:80", Weight: 5000},
			{Authority: "smiley2.faces.svc.cluster.local:80", Weight: 10000},
		},
	}
}

func TestGetProfile(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	h.apply(t, smileyFixture()...)
	h.apply(t, service("client", "other", svcPort{name: "http", port: 80}))
	// A profile in the caller's namespace overrides the service's own.
	override := serviceProfile("client", smileyFQN, api.ServiceProfileSpec{
		Routes: []api.RouteSpec{{Name: "all", Condition: &api.RequestMatch{PathRegex: ".*"}}},
	})
	h.apply(t, smileyProfile("faces"), override)
	wantOverride := wantDefaultProfile(smileyFQN)
	wantOverride.Routes = []*pb.Route{{Condition: pathRe(".*"), MetricsLabels: map[string]string{"route": "all"}}}

	tests := []struct {
		name, path, ns string
		want           *pb.DestinationProfile
	}{
		{"service without profile", "other.client.svc.cluster.local:80", "", wantDefaultProfile("other.client.svc.cluster.local")},
		{"short name", "other", "client", wantDefaultProfile("other.client.svc.cluster.local")},
		{"translated profile", "smiley.faces.svc.cluster.local:80", "faces", wantSmileyProfile()},
		{"translated profile, no context", "smiley.faces", "", wantSmileyProfile()},
		{"client namespace override", "smiley.faces:80", "client", wantOverride},
		{"unknown service", "frowny.faces:80", "faces", &pb.DestinationProfile{}},
		{"external name", "example.com", "faces", &pb.DestinationProfile{}},
		{"pod endpoint", "127.0.0.1:41001", "", &pb.DestinationProfile{
			RetryBudget: wantDefaultProfile("").RetryBudget,
			Endpoint:    wantAddr("127.0.0.1:41001", smileyLabels, true),
		}},
		{"unknown IP", "10.1.2.3:80", "", &pb.DestinationProfile{
			RetryBudget: wantDefaultProfile("").RetryBudget,
			Endpoint:    wantAddr("10.1.2.3:80", map[string]string{}, false),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expect(t, h.getProfile(t, tc.path, tc.ns), tc.want)
		})
	}
}

func TestGetProfileInvalidPath(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	_, err := h.getProfile(t, "smiley:port", "faces").Recv()
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("GetProfile error = %v, want InvalidArgument", err)
	}
}

func TestGetProfileUpdates(t *testing.T) {
	h := newHarness(t, harnessOpts{})
	s := h.getProfile(t, "smiley.faces.svc.cluster.local:80", "faces")
	expect(t, s, &pb.DestinationProfile{})

	// The Service appears: the default profile.
	h.apply(t, smileyFixture()...)
	expect(t, s, wantDefaultProfile(smileyFQN))

	// A ServiceProfile is applied, then changed.
	sp := smileyProfile("faces")
	h.apply(t, sp)
	expect(t, s, wantSmileyProfile())
	sp.Spec.Routes = sp.Spec.Routes[1:2]
	h.apply(t, sp)
	want := wantSmileyProfile()
	want.Routes = want.Routes[1:2]
	expect(t, s, want)

	// Endpoint changes alone send nothing: the next message is the one
	// caused by deleting the profile.
	h.apply(t, endpointSlice("faces", "smiley", smileyPodName, "127.0.0.1", false, named("http", 41001)))
	h.delete(t, sp)
	expect(t, s, wantDefaultProfile(smileyFQN))

	// The Service goes: an empty profile.
	h.delete(t, smileyFixture()[0])
	expect(t, s, &pb.DestinationProfile{})
}

func TestTranslateProfileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec api.ServiceProfileSpec
	}{
		{"empty condition", api.ServiceProfileSpec{Routes: []api.RouteSpec{{Name: "x", Condition: &api.RequestMatch{}}}}},
		{"no condition", api.ServiceProfileSpec{Routes: []api.RouteSpec{{Name: "x"}}}},
		{"timeout without unit", api.ServiceProfileSpec{Routes: []api.RouteSpec{{Name: "x", Condition: &api.RequestMatch{Method: "GET"}, Timeout: "10"}}}},
		{"empty response match", api.ServiceProfileSpec{Routes: []api.RouteSpec{{Name: "x", Condition: &api.RequestMatch{Method: "GET"},
			ResponseClasses: []*api.ResponseClass{{Condition: &api.ResponseMatch{}}}}}}},
		{"bad budget ttl", api.ServiceProfileSpec{RetryBudget: &api.RetryBudget{RetryRatio: 0.2, TTL: "soon"}}},
		{"bad weight", api.ServiceProfileSpec{DstOverrides: []*api.WeightedDst{{Authority: "a", Weight: "lots"}}}},
		{"negative weight", api.ServiceProfileSpec{DstOverrides: []*api.WeightedDst{{Authority: "a", Weight: "-1"}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := translateProfile(serviceProfile("ns", "x.ns.svc.cluster.local", tc.spec), "x.ns.svc.cluster.local"); err == nil {
				t.Fatal("translateProfile() error = nil, want an error")
			}
		})
	}
}
