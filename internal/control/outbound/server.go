// Package outbound serves io.linkerd.proxy.outbound.OutboundPolicies: what
// a client proxy should do with traffic to a Service. Weft's proxies learn
// routes, retries and timeouts from Destination.GetProfile (ServiceProfiles,
// and the retry/timeout annotations translated there); this service carries
// what a profile cannot: the Service's failure accrual
// (balancer.linkerd.io/failure-accrual* annotations), as Linkerd's policy
// controller sends it, and the exact retry policy (limit, conditions,
// per-try timeout) of routes configured by retry.linkerd.io annotations
// (retries.go).
package outbound

import (
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	metapb "github.com/linkerd/linkerd2-proxy-api/go/meta"
	pb "github.com/linkerd/linkerd2-proxy-api/go/outbound"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// detectTimeout is Linkerd's protocol detection timeout.
const detectTimeout = 10 * time.Second

// Server answers OutboundPolicies from a Store.
type Server struct {
	pb.UnimplementedOutboundPoliciesServer
	store store.Store
	log   *slog.Logger
}

// New returns a Server; log nil means slog.Default().
func New(st store.Store, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{store: st, log: log.With("component", "outbound-policy")}
}

// Register adds the service to g.
func (s *Server) Register(g *grpc.Server) { pb.RegisterOutboundPoliciesServer(g, s) }

// Get returns the current policy for a Service authority.
func (s *Server) Get(ctx context.Context, spec *pb.TrafficSpec) (*pb.OutboundPolicy, error) {
	ns, name, port, err := parseAuthority(spec)
	if err != nil {
		return nil, err
	}
	return s.policy(ctx, ns, name, port)
}

// Watch streams the policy for a Service authority, sending it again
// whenever it changes.
func (s *Server) Watch(spec *pb.TrafficSpec, stream grpc.ServerStreamingServer[pb.OutboundPolicy]) error {
	ns, name, port, err := parseAuthority(spec)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	ch, err := s.store.Watch(ctx, api.KindService, api.KindServiceProfile, api.KindHTTPRoute, api.KindPolicyHTTPRoute, api.KindGRPCRoute)
	if err != nil {
		return status.Errorf(codes.Unavailable, "outbound policy: watching services: %v", err)
	}
	var last *pb.OutboundPolicy
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-ch:
			if !ok {
				return status.Error(codes.Unavailable, "outbound policy: store watch ended")
			}
		}
		p, err := s.policy(ctx, ns, name, port)
		if err != nil {
			return err
		}
		if last != nil && proto.Equal(last, p) {
			continue
		}
		last = p
		if err := stream.Send(p); err != nil {
			return err
		}
	}
}

// parseAuthority accepts `name.ns.svc.<domain>:port` (as Destination paths).
func parseAuthority(spec *pb.TrafficSpec) (ns, name string, port uint32, err error) {
	a := spec.GetAuthority()
	if a == "" {
		return "", "", 0, status.Error(codes.InvalidArgument, "outbound policy: only authority targets (name.ns.svc.cluster.local:port) are supported")
	}
	host, p, err := net.SplitHostPort(a)
	if err != nil {
		host, p = a, "80"
	}
	n, err := strconv.ParseUint(p, 10, 16)
	if err != nil || n == 0 {
		return "", "", 0, status.Errorf(codes.InvalidArgument, "outbound policy: authority %q: bad port", a)
	}
	parts := strings.Split(host, ".")
	if len(parts) < 3 || parts[2] != "svc" {
		return "", "", 0, status.Errorf(codes.InvalidArgument, "outbound policy: authority %q: want name.namespace.svc.cluster.local:port", a)
	}
	return parts[1], parts[0], uint32(n), nil
}

func (s *Server) policy(ctx context.Context, ns, name string, port uint32) (*pb.OutboundPolicy, error) {
	o, err := s.store.Get(ctx, api.Ref{Kind: api.KindService, Namespace: ns, Name: name})
	if err != nil || o == nil {
		return nil, status.Errorf(codes.NotFound, "outbound policy: no service %s/%s", ns, name)
	}
	svc, ok := o.(*corev1.Service)
	if !ok {
		return nil, status.Errorf(codes.Internal, "outbound policy: %s/%s is a %T", ns, name, o)
	}
	fa, err := api.ParseFailureAccrual(svc.Annotations)
	if err != nil {
		// Refused at apply time normally; never break traffic over it.
		s.log.Warn("ignoring failure accrual annotations", "service", ns+"/"+name, "err", err)
		fa = nil
	}
	p := Policy(svc, port, fa)
	if routes := s.annotationRetries(ctx, svc, port); len(routes) > 0 {
		d := p.GetProtocol().GetDetect()
		d.Http1.Routes, d.Http2.Routes = routes, routes
	}
	return p, nil
}

// Policy builds the OutboundPolicy of a Service port: protocol detection
// with the Service's failure accrual for HTTP/1 and HTTP/2.
func Policy(svc *corev1.Service, port uint32, fa *api.FailureAccrual) *pb.OutboundPolicy {
	var accrual *pb.FailureAccrual
	if fa != nil {
		accrual = &pb.FailureAccrual{Kind: &pb.FailureAccrual_ConsecutiveFailures_{ConsecutiveFailures: &pb.FailureAccrual_ConsecutiveFailures{
			MaxFailures: fa.MaxFailures,
			Backoff: &pb.ExponentialBackoff{
				MinBackoff:  durationpb.New(fa.MinPenalty),
				MaxBackoff:  durationpb.New(fa.MaxPenalty),
				JitterRatio: float32(fa.JitterRatio),
			},
		}}}
	}
	return &pb.OutboundPolicy{
		Metadata: &metapb.Metadata{Kind: &metapb.Metadata_Resource{Resource: &metapb.Resource{
			Group: "core", Kind: "Service", Name: svc.Name, Namespace: svc.Namespace, Port: port,
		}}},
		Protocol: &pb.ProxyProtocol{Kind: &pb.ProxyProtocol_Detect_{Detect: &pb.ProxyProtocol_Detect{
			Timeout: durationpb.New(detectTimeout),
			Http1:   &pb.ProxyProtocol_Http1{FailureAccrual: accrual},
			Http2:   &pb.ProxyProtocol_Http2{FailureAccrual: accrual},
		}}},
	}
}
