// Package identity is the control plane's Identity service
// (io.linkerd.proxy.identity.Identity/Certify): a proxy proves which
// workload it is with a token and gets a short-lived certificate for that
// workload's identity, signed by the mesh's issuer.
package identity

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"

	pb "github.com/linkerd/linkerd2-proxy-api/go/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/weft-mesh/weft/internal/tlsid"
)

// Config configures a Server.
type Config struct {
	// Authority signs certificates. Required.
	Authority *tlsid.Authority
	// Validator checks tokens. Required.
	Validator TokenValidator
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
}

// Server implements the Identity service.
type Server struct {
	pb.UnimplementedIdentityServer
	ca        atomic.Pointer[tlsid.Authority]
	validator TokenValidator
	log       *slog.Logger
	issued    atomic.Uint64
	refused   atomic.Uint64
}

// New checks the authority (a control plane must not start with an issuer
// peers would refuse) and returns a Server.
func New(cfg Config) (*Server, error) {
	if cfg.Authority == nil {
		return nil, errors.New("identity: no certificate authority configured")
	}
	if cfg.Validator == nil {
		return nil, errors.New("identity: no token validator configured")
	}
	if err := cfg.Authority.Validate(); err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{validator: cfg.Validator, log: cfg.Logger.With("component", "identity")}
	s.ca.Store(cfg.Authority)
	return s, nil
}

// SetAuthority replaces the authority (a rotated issuer) for the next
// Certify, after checking it as New does; on error the current one stays.
// Proxies only accept the new issuer's certificates if it chains to the
// trust anchors they already have.
func (s *Server) SetAuthority(a *tlsid.Authority) error {
	if err := a.Validate(); err != nil {
		return fmt.Errorf("identity: %w", err)
	}
	old := s.ca.Swap(a)
	s.log.Info("issuer replaced", "old", tlsid.Describe(old.Issuer), "new", tlsid.Describe(a.Issuer), "notAfter", a.Issuer.NotAfter)
	return nil
}

// Register adds the service to a gRPC server.
func (s *Server) Register(g *grpc.Server) { pb.RegisterIdentityServer(g, s) }

// Authority returns the authority the server signs with.
func (s *Server) Authority() *tlsid.Authority { return s.ca.Load() }

// Issued and Refused count Certify outcomes since start.
func (s *Server) Issued() uint64  { return s.issued.Load() }
func (s *Server) Refused() uint64 { return s.refused.Load() }

// Certify signs the request's CSR if its token entitles the caller to the
// identity it asks for.
func (s *Server) Certify(ctx context.Context, req *pb.CertifyRequest) (*pb.CertifyResponse, error) {
	resp, err := s.certify(ctx, req)
	if err != nil {
		s.refused.Add(1)
		s.log.Warn("refused a certificate", "identity", req.GetIdentity(), "err", err)
		return nil, err
	}
	s.issued.Add(1)
	return resp, nil
}

func (s *Server) certify(ctx context.Context, req *pb.CertifyRequest) (*pb.CertifyResponse, error) {
	if req.GetIdentity() == "" {
		return nil, status.Error(codes.InvalidArgument, "identity: the request names no identity")
	}
	if len(req.GetToken()) == 0 {
		return nil, status.Error(codes.Unauthenticated, "identity: the request has no token")
	}
	w, err := s.validator.Validate(ctx, req.GetToken())
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "identity: %v", err)
	}
	ca := s.ca.Load()
	entitled := ca.Domain.Name(w.Namespace, w.ServiceAccount)
	if req.GetIdentity() != entitled {
		return nil, status.Errorf(codes.PermissionDenied, "identity: the token of pod %s/%s entitles it to %q, not %q", w.Namespace, w.Pod, entitled, req.GetIdentity())
	}
	csr, err := tlsid.ParseCSR(req.GetCertificateSigningRequest(), ca.Domain)
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "identity: %v", err)
	}
	if csr.Name != entitled {
		return nil, status.Errorf(codes.PermissionDenied, "identity: the CSR asks for %q but the token entitles pod %s/%s to %q", csr.Name, w.Namespace, w.Pod, entitled)
	}
	leaf, err := ca.Sign(csr)
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "identity: %v", err)
	}
	s.log.Info("issued a certificate", "identity", csr.Name, "pod", w.Namespace+"/"+w.Pod,
		"serial", leaf.Cert.SerialNumber.Text(16), "notAfter", leaf.Cert.NotAfter)
	// DER, as Linkerd's identity service sends (the proto's comments say
	// PEM, the implementations do not).
	return &pb.CertifyResponse{
		LeafCertificate:          leaf.Cert.Raw,
		IntermediateCertificates: leaf.Chain,
		ValidUntil:               timestamppb.New(leaf.Cert.NotAfter),
	}, nil
}

// WritePrometheus writes the service's metrics in the Prometheus text
// format: certificates issued and refused, and when the issuer expires
// (alert on it well before).
func (s *Server) WritePrometheus(w io.Writer) error {
	_, err := fmt.Fprintf(w, "# HELP identity_certify_issued_total Certificates issued to proxies.\n# TYPE identity_certify_issued_total counter\nidentity_certify_issued_total %d\n"+
		"# HELP identity_certify_refused_total Certify requests refused (bad token, CSR or identity).\n# TYPE identity_certify_refused_total counter\nidentity_certify_refused_total %d\n"+
		"# HELP identity_issuer_expiration_timestamp_seconds When the issuer certificate expires.\n# TYPE identity_issuer_expiration_timestamp_seconds gauge\nidentity_issuer_expiration_timestamp_seconds %d\n",
		s.issued.Load(), s.refused.Load(), s.ca.Load().Issuer.NotAfter.Unix())
	return err
}
