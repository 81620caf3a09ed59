package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/weft-mesh/weft/internal/tlsid"
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs an Identity server on a real 127.0.0.1 gRPC listener.
func serve(t *testing.T, ca *tlsid.Authority, key []byte) pb.IdentityClient {
	t.Helper()
	s, err := New(Config{Authority: ca, Validator: NewHMACValidator(key), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go g.Serve(lis)
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return pb.NewIdentityClient(conn)
}

func testCA(t *testing.T, now time.Time) *tlsid.Authority {
	t.Helper()
	g, err := tlsid.Generate(tlsid.DefaultDomain, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &tlsid.Authority{Anchors: []*x509.Certificate{g.Anchor}, Issuer: g.Issuer, IssuerKey: g.IssuerKey, Domain: tlsid.DefaultDomain, Lifetime: time.Hour}
}

func csr(t *testing.T, names ...string) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{DNSNames: names}, k)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestCertify(t *testing.T) {
	ca := testCA(t, time.Now())
	key := testKey(t, 3)
	client := serve(t, ca, key)
	smiley := ca.Domain.Name("faces", "smiley")
	color := ca.Domain.Name("faces", "color")
	tok, err := MintToken(key, Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-1"})
	if err != nil {
		t.Fatal(err)
	}
	otherMesh, err := MintToken(testKey(t, 4), Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("good", func(t *testing.T) {
		before := time.Now()
		resp, err := client.Certify(ctx, &pb.CertifyRequest{Identity: smiley, Token: tok, CertificateSigningRequest: csr(t, smiley)})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(resp.LeafCertificate)
		if err != nil {
			t.Fatal(err)
		}
		if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != smiley || len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/faces/sa/smiley" {
			t.Errorf("leaf names %v %v", leaf.DNSNames, leaf.URIs)
		}
		if !resp.ValidUntil.AsTime().Equal(leaf.NotAfter) {
			t.Errorf("valid_until %v != NotAfter %v", resp.ValidUntil.AsTime(), leaf.NotAfter)
		}
		if d := leaf.NotAfter.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
			t.Errorf("lifetime %v, want the configured hour", d)
		}
		inter := x509.NewCertPool()
		for _, der := range resp.IntermediateCertificates {
			c, err := x509.ParseCertificate(der)
			if err != nil {
				t.Fatal(err)
			}
			inter.AddCert(c)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.AnchorPool(), Intermediates: inter, DNSName: smiley}); err != nil {
			t.Errorf("leaf does not verify with the returned chain: %v", err)
		}
	})

	tests := []struct {
		name string
		req  *pb.CertifyRequest
		code codes.Code
		want string
	}{
		{"no token", &pb.CertifyRequest{Identity: smiley, CertificateSigningRequest: csr(t, smiley)}, codes.Unauthenticated, "no token"},
		{"bad token", &pb.CertifyRequest{Identity: smiley, Token: []byte("weft1.xx.yy"), CertificateSigningRequest: csr(t, smiley)}, codes.Unauthenticated, "invalid identity token"},
		{"token of another mesh", &pb.CertifyRequest{Identity: smiley, Token: otherMesh, CertificateSigningRequest: csr(t, smiley)}, codes.Unauthenticated, "bad signature"},
		{"no identity", &pb.CertifyRequest{Token: tok, CertificateSigningRequest: csr(t, smiley)}, codes.InvalidArgument, "names no identity"},
		{"asks for another identity", &pb.CertifyRequest{Identity: color, Token: tok, CertificateSigningRequest: csr(t, color)}, codes.PermissionDenied, "entitles it to"},
		{"CSR for another identity", &pb.CertifyRequest{Identity: smiley, Token: tok, CertificateSigningRequest: csr(t, color)}, codes.PermissionDenied, "the CSR asks for"},
		{"CSR with two names", &pb.CertifyRequest{Identity: smiley, Token: tok, CertificateSigningRequest: csr(t, smiley, color)}, codes.InvalidArgument, "2 DNS names"},
		{"garbage CSR", &pb.CertifyRequest{Identity: smiley, Token: tok, CertificateSigningRequest: []byte("nope")}, codes.InvalidArgument, "not a valid x509 CSR"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := client.Certify(ctx, tt.req)
			if status.Code(err) != tt.code || !strings.Contains(status.Convert(err).Message(), tt.want) {
				t.Fatalf("Certify = %v, %v; want %v containing %q", resp, err, tt.code, tt.want)
			}
		})
	}
}

func TestCertifyWithExpiredIssuer(t *testing.T) {
	ca := testCA(t, time.Now())
	key := testKey(t, 3)
	client := serve(t, ca, key)
	// The issuer expires while the server runs.
	ca.Now = func() time.Time { return ca.Issuer.NotAfter.Add(time.Minute) }
	smiley := ca.Domain.Name("faces", "smiley")
	tok, _ := MintToken(key, Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-1"})
	_, err := client.Certify(context.Background(), &pb.CertifyRequest{Identity: smiley, Token: tok, CertificateSigningRequest: csr(t, smiley)})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("Certify = %v, want FailedPrecondition: expired", err)
	}
}

func TestNewRefusesInvalidAuthority(t *testing.T) {
	ca := testCA(t, time.Now().Add(-48*time.Hour)) // expired yesterday
	if _, err := New(Config{Authority: ca, Validator: NewHMACValidator(testKey(t, 1))}); err == nil {
		t.Fatal("New accepted an expired issuer")
	}
}
