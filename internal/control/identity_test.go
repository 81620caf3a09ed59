package control

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	idpb "github.com/linkerd/linkerd2-proxy-api/go/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// The plane generates its CA into the identity directory, serves Certify
// and gRPC health on its one listener.
func TestPlaneServesIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	p, err := Listen(Config{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: store.NewMemory(), Logger: quietLogger(),
		Identity: IdentityConfig{Dir: dir, IssuanceLifetime: time.Hour},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{tlsid.AnchorsFile, tlsid.IssuerCertFile, tlsid.IssuerKeyFile, identity.TokenKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("identity dir lacks %s: %v", f, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	conn, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rpcCtx, rpcCancel := context.WithTimeout(ctx, testTimeout)
	defer rpcCancel()
	hr, err := healthpb.NewHealthClient(conn).Check(rpcCtx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	if err != nil || hr.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health = %v, %v", hr, err)
	}

	key, err := identity.LoadOrCreateTokenKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := identity.MintToken(key, identity.Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-1"})
	if err != nil {
		t.Fatal(err)
	}
	name := tlsid.DefaultDomain.Name("faces", "smiley")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, err := tlsid.NewCSR(k, name)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := idpb.NewIdentityClient(conn).Certify(rpcCtx, &idpb.CertifyRequest{Identity: name, Token: tok, CertificateSigningRequest: csr})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(resp.LeafCertificate)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(leaf.NotAfter); d > time.Hour || d < 59*time.Minute {
		t.Errorf("leaf lifetime %v, want the configured hour", d)
	}
	code, body := httpGet(t, "http://"+p.AdminAddr().String()+"/metrics")
	for _, want := range []string{
		"\nidentity_certify_issued_total 1\n",
		"\nidentity_certify_refused_total 0\n",
		fmt.Sprintf("\nidentity_issuer_expiration_timestamp_seconds %d\n", p.Identity().Authority().Issuer.NotAfter.Unix()),
		"destination_snapshots_total",
	} {
		if code != 200 || !strings.Contains(body, want) {
			t.Errorf("/metrics (%d) lacks %q:\n%s", code, want, body)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestIdentityConfigErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		cfg  IdentityConfig
		want string
	}{
		{"partial files", IdentityConfig{Dir: dir, Files: tlsid.Files{TrustAnchors: "ca.crt"}}, "give all three or none"},
		{"missing files", IdentityConfig{Dir: dir, Files: tlsid.Files{TrustAnchors: "/nonexistent/ca.crt", IssuerCertificate: "x", IssuerKey: "y"}}, "no such file"},
		{"bad trust domain", IdentityConfig{Dir: dir, TrustDomain: "Bad..Domain"}, "trust domain"},
	}
	for _, tt := range tests {
		_, err := Listen(Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: store.NewMemory(), Logger: quietLogger(), Identity: tt.cfg})
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Listen = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

// Replacing the issuer files rotates the issuer of a running plane; a
// broken replacement is ignored and the current issuer keeps signing.
func TestPlaneReloadsIssuer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	p, err := Listen(Config{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: store.NewMemory(), Logger: quietLogger(),
		Identity: IdentityConfig{Dir: dir, ReloadInterval: 10 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() { cancel(); <-done }()
	conn, err := grpc.NewClient(p.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, err := identity.LoadOrCreateTokenKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := identity.MintToken(key, identity.Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-1"})
	name := tlsid.DefaultDomain.Name("faces", "smiley")
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	csr, _ := tlsid.NewCSR(k, name)
	issuerOfLeaf := func() string {
		t.Helper()
		rpcCtx, rpcCancel := context.WithTimeout(ctx, testTimeout)
		defer rpcCancel()
		resp, err := idpb.NewIdentityClient(conn).Certify(rpcCtx, &idpb.CertifyRequest{Identity: name, Token: tok, CertificateSigningRequest: csr}, grpc.WaitForReady(true))
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(resp.LeafCertificate)
		if err != nil {
			t.Fatal(err)
		}
		return string(leaf.AuthorityKeyId)
	}
	first := issuerOfLeaf()

	replace := func(name string, data []byte) {
		t.Helper()
		tmp := filepath.Join(dir, ".new-"+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A broken issuer certificate: ignored.
	replace(tlsid.IssuerCertFile, []byte("not a certificate"))
	poll(t, "the broken file to be refused", func() bool { return p.reloadErrors.Load() >= 1 })
	if got := issuerOfLeaf(); got != first {
		t.Fatal("a broken issuer file replaced the issuer")
	}

	// A new issuer from the same anchor.
	anchors, err := tlsid.LoadCertificates(filepath.Join(dir, tlsid.AnchorsFile))
	if err != nil {
		t.Fatal(err)
	}
	anchorKey, err := tlsid.LoadKey(filepath.Join(dir, tlsid.AnchorKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	issuer, issuerKey, err := tlsid.NewIntermediate("identity.weft.cluster.local", anchors[0], anchorKey, time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := tlsid.EncodeKey(issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	replace(tlsid.IssuerKeyFile, keyPEM)
	replace(tlsid.IssuerCertFile, tlsid.EncodeCertificates(issuer))
	poll(t, "the new issuer to sign", func() bool { return issuerOfLeaf() == string(issuer.SubjectKeyId) })
	if p.Identity().Authority().Issuer.SerialNumber.Cmp(issuer.SerialNumber) != 0 {
		t.Error("Authority() does not report the new issuer")
	}
}

func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
