package discovery

import (
	"testing"

	metapb "github.com/linkerd/linkerd2-proxy-api/go/meta"
	pb "github.com/linkerd/linkerd2-proxy-api/go/outbound"

	"github.com/weft-mesh/weft/internal/metrics"
)

// TestRetriesOfGRPCConditions: status ranges from GRPCStatusBase are gRPC
// retry conditions; a gRPC response is judged by its gRPC status only.
func TestRetriesOfGRPCConditions(t *testing.T) {
	rng := func(lo, hi uint32) *pb.HttpRoute_Retry_Conditions_StatusRange {
		return &pb.HttpRoute_Retry_Conditions_StatusRange{Start: lo, End: hi}
	}
	route := func(ranges ...*pb.HttpRoute_Retry_Conditions_StatusRange) *pb.OutboundPolicy {
		r := &pb.HttpRoute{
			Metadata: &metapb.Metadata{Kind: &metapb.Metadata_Resource{Resource: &metapb.Resource{Kind: "HTTPRoute", Name: "default"}}},
			Rules:    []*pb.HttpRoute_Rule{{Retry: &pb.HttpRoute_Retry{MaxRetries: 2, Conditions: &pb.HttpRoute_Retry_Conditions{StatusRanges: ranges}}}},
		}
		return &pb.OutboundPolicy{Protocol: &pb.ProxyProtocol{Kind: &pb.ProxyProtocol_Detect_{Detect: &pb.ProxyProtocol_Detect{
			Http1: &pb.ProxyProtocol_Http1{Routes: []*pb.HttpRoute{r}},
		}}}}
	}
	const none = metrics.NoGRPCStatus
	for _, tc := range []struct {
		name     string
		policy   *pb.OutboundPolicy
		trailers bool
		retry    [][2]int // status, grpc status
		noRetry  [][2]int
	}{
		{"http only", route(rng(500, 599)), false,
			[][2]int{{500, none}, {503, none}},
			[][2]int{{200, none}, {404, none}, {200, 14}}},
		{"grpc unavailable and deadline-exceeded", route(rng(500, 599), rng(1014, 1014), rng(1004, 1004)), true,
			[][2]int{{200, 14}, {200, 4}, {502, none}},
			[][2]int{{200, 0}, {200, 3}, {200, 13}, {503, 3}, {200, none}}},
		{"grpc only", route(rng(1013, 1013)), true,
			[][2]int{{200, 13}},
			[][2]int{{200, 14}, {200, none}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := retriesOf(tc.policy)["default"]
			if p == nil {
				t.Fatal("no retry policy for the default route")
			}
			if p.Limit != 2 || p.Trailers != tc.trailers {
				t.Fatalf("limit %d trailers %v, want 2 %v", p.Limit, p.Trailers, tc.trailers)
			}
			for _, s := range tc.retry {
				if !p.Retryable(s[0], s[1]) {
					t.Errorf("status %d grpc %d not retryable", s[0], s[1])
				}
			}
			for _, s := range tc.noRetry {
				if p.Retryable(s[0], s[1]) {
					t.Errorf("status %d grpc %d retryable", s[0], s[1])
				}
			}
		})
	}
}
