package tlsid

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"testing"
	"time"
)

// testAuthority makes a fresh anchor + issuer valid around now.
func testAuthority(t testing.TB) *Authority {
	t.Helper()
	g, err := Generate(DefaultDomain, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &Authority{Anchors: []*x509.Certificate{g.Anchor}, Issuer: g.Issuer, IssuerKey: g.IssuerKey, Domain: DefaultDomain}
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// issue signs a certificate for ns/sa through the real CSR path.
func issue(t testing.TB, a *Authority, ns, sa string) *tls.Certificate {
	t.Helper()
	key := newKey(t)
	der, err := NewCSR(key, a.Domain.Name(ns, sa))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := ParseCSR(der, a.Domain)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := a.Sign(csr)
	if err != nil {
		t.Fatal(err)
	}
	return TLSCertificate(leaf.Cert, leaf.Chain, key)
}
