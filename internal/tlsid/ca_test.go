package tlsid

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	now := time.Now()
	a, generated, err := LoadOrGenerate(dir, DefaultDomain, now)
	if err != nil || !generated {
		t.Fatalf("LoadOrGenerate = %v, generated=%v", err, generated)
	}
	if err := a.Validate(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(dir); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("identity dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	for _, name := range []string{AnchorKeyFile, IssuerKeyFile} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, %v; want 0600", name, st.Mode().Perm(), err)
		}
	}
	if got, want := a.Anchors[0].Subject.CommonName, "root.weft.cluster.local"; got != want {
		t.Errorf("anchor CN = %q, want %q", got, want)
	}
	if got, want := a.Issuer.Subject.CommonName, "identity.weft.cluster.local"; got != want {
		t.Errorf("issuer CN = %q, want %q", got, want)
	}
	if d := a.Issuer.NotAfter.Sub(now); d < 364*24*time.Hour || d > 366*24*time.Hour {
		t.Errorf("issuer valid for %v, want 365 days", d)
	}

	// A second call loads the same authority.
	b, generated, err := LoadOrGenerate(dir, DefaultDomain, now)
	if err != nil || generated {
		t.Fatalf("second LoadOrGenerate = %v, generated=%v", err, generated)
	}
	if !b.Issuer.Equal(a.Issuer) || !b.Anchors[0].Equal(a.Anchors[0]) {
		t.Error("second LoadOrGenerate returned different certificates")
	}

	// Load from the files, as --identity-*-file flags do.
	c, err := Load(DirFiles(dir), DefaultDomain)
	if err != nil || !c.Issuer.Equal(a.Issuer) {
		t.Fatalf("Load = %v", err)
	}
}

func TestLoadOrGenerateIncompleteDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, IssuerKeyFile), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadOrGenerate(dir, DefaultDomain, time.Now())
	if err == nil || !strings.Contains(err.Error(), "incomplete") {
		t.Fatalf("LoadOrGenerate on an incomplete dir = %v, want an 'incomplete' error", err)
	}
	if _, err := os.Stat(filepath.Join(dir, AnchorsFile)); err == nil {
		t.Error("anchors were written into an incomplete directory")
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	a := testAuthority(t)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := Files{
		TrustAnchors:      write("ca.crt", EncodeCertificates(a.Anchors...)),
		IssuerCertificate: write("issuer.crt", EncodeCertificates(a.Issuer)),
		IssuerKey:         write("issuer.key", mustKeyPEM(t, a.IssuerKey.(*ecdsa.PrivateKey))),
	}
	tests := []struct {
		name string
		f    Files
		want string
	}{
		{"missing anchors", Files{filepath.Join(dir, "nope"), good.IssuerCertificate, good.IssuerKey}, "no such file"},
		{"anchors not PEM", Files{write("junk", []byte("hello")), good.IssuerCertificate, good.IssuerKey}, "no PEM CERTIFICATE"},
		{"key in cert file", Files{good.TrustAnchors, good.IssuerKey, good.IssuerKey}, `unexpected PEM block "EC PRIVATE KEY"`},
		{"cert in key file", Files{good.TrustAnchors, good.IssuerCertificate, good.IssuerCertificate}, "is not a private key"},
	}
	for _, tt := range tests {
		_, err := Load(tt.f, DefaultDomain)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Load = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	if _, err := Load(good, DefaultDomain); err != nil {
		t.Errorf("Load(good) = %v", err)
	}
}

func mustKeyPEM(t *testing.T, k *ecdsa.PrivateKey) []byte {
	t.Helper()
	b, err := EncodeKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAuthorityValidate(t *testing.T) {
	now := time.Now()
	other := testAuthority(t)
	tests := []struct {
		name   string
		modify func(a *Authority)
		want   string
	}{
		{"ok", func(*Authority) {}, ""},
		{"no anchors", func(a *Authority) { a.Anchors = nil }, "no trust anchors"},
		{"key mismatch", func(a *Authority) { a.IssuerKey = other.IssuerKey }, "does not belong"},
		{"other anchor", func(a *Authority) { a.Anchors = other.Anchors }, "does not chain"},
		{"issuer expired", func(a *Authority) { a.Now = func() time.Time { return now.Add(2 * time.Hour) } }, "issuer certificate \"CN=identity.weft.cluster.local\""},
		{"not yet valid", func(a *Authority) { a.Now = func() time.Time { return now.Add(-time.Hour) } }, "not valid before"},
		{"an old expired anchor beside the current one", func(a *Authority) {
			old, _, err := NewRoot("old-root", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			a.Anchors = append([]*x509.Certificate{old}, a.Anchors...)
		}, ""},
		{"only an expired anchor", func(a *Authority) {
			old, _, err := NewRoot("old-root", now.Add(-48*time.Hour), now.Add(-24*time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			a.Anchors = []*x509.Certificate{old}
		}, "trust anchor \"CN=old-root\""},
		{"issuer is a leaf", func(a *Authority) {
			leaf := issue(t, a, "ns", "sa")
			a.Issuer, a.IssuerKey = leaf.Leaf, leaf.PrivateKey.(*ecdsa.PrivateKey)
		}, "not a CA"},
	}
	for _, tt := range tests {
		a := testAuthority(t)
		tt.modify(a)
		err := a.Validate()
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: Validate = %v", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: Validate = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func csrDER(t *testing.T, tmpl *x509.CertificateRequest, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestParseCSR(t *testing.T) {
	key := newKey(t)
	name := DefaultDomain.Name("faces", "smiley")
	good := csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}}, key)
	tampered := bytes.Clone(good)
	tampered[len(tampered)-3] ^= 0xff // inside the signature
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		der  []byte
		want string // "" = accepted
	}{
		{"one DNS name", good, ""},
		{"PEM", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}), ""},
		{"two DNS names", csrDER(t, &x509.CertificateRequest{DNSNames: []string{name, DefaultDomain.Name("faces", "color")}}, key), "2 DNS names"},
		{"no names", csrDER(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key), "0 DNS names"},
		{"IP SAN", csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}, key), "IP address"},
		{"email SAN", csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}, EmailAddresses: []string{"a@b.c"}}, key), "email"},
		{"URI SAN", csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}, URIs: []*url.URL{DefaultDomain.SPIFFE("faces", "smiley")}}, key), "URI"},
		{"not an identity", csrDER(t, &x509.CertificateRequest{DNSNames: []string{"example.com"}}, key), "not of the form"},
		{"bad signature", tampered, "signature"},
		{"garbage", []byte("not a csr"), "not a valid x509 CSR"},
		{"RSA key", csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}}, rsaKey), "unsupported"},
		{"P-224 key", csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}}, p224), "P-224"},
	}
	for _, tt := range tests {
		csr, err := ParseCSR(tt.der, DefaultDomain)
		if tt.want == "" {
			if err != nil || csr.Name != name {
				t.Errorf("%s: ParseCSR = %v, %v", tt.name, csr, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: ParseCSR = %v, want error containing %q", tt.name, err, tt.want)
		}
	}
}

func TestSign(t *testing.T) {
	a := testAuthority(t)
	now := time.Now().Truncate(time.Second)
	a.Now = func() time.Time { return now }
	a.Lifetime = 90 * time.Minute // longer than the issuer's hour: clamped
	cert := issue(t, a, "faces", "smiley")
	leaf := cert.Leaf
	name := "smiley.faces.serviceaccount.identity.weft.cluster.local"
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
		t.Errorf("DNSNames = %v, want [%s]", leaf.DNSNames, name)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "spiffe://cluster.local/ns/faces/sa/smiley" {
		t.Errorf("URIs = %v", leaf.URIs)
	}
	if !leaf.NotBefore.Equal(now.Add(-DefaultClockSkew)) {
		t.Errorf("NotBefore = %v, want now - 20s (%v)", leaf.NotBefore, now.Add(-DefaultClockSkew))
	}
	if !leaf.NotAfter.Equal(a.Issuer.NotAfter) {
		t.Errorf("NotAfter = %v, want clamped to the issuer's %v", leaf.NotAfter, a.Issuer.NotAfter)
	}
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	// The leaf verifies against the anchors for both uses.
	inter := x509.NewCertPool()
	inter.AddCert(a.Issuer)
	for _, use := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.AnchorPool(), Intermediates: inter, DNSName: name, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
			t.Errorf("verify for %v: %v", use, err)
		}
	}

	a.Lifetime = 10 * time.Second
	short := issue(t, a, "faces", "smiley").Leaf
	if !short.NotAfter.Equal(now.Add(10 * time.Second)) {
		t.Errorf("NotAfter = %v, want now + 10s", short.NotAfter)
	}

	// An expired issuer signs nothing.
	a.Now = func() time.Time { return a.Issuer.NotAfter.Add(time.Second) }
	csr, err := ParseCSR(csrDER(t, &x509.CertificateRequest{DNSNames: []string{name}}, newKey(t)), a.Domain)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Sign(csr); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Sign with an expired issuer = %v, want an 'expired' error", err)
	}
}

func FuzzParseCSR(f *testing.F) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, _ := NewCSR(key, DefaultDomain.Name("faces", "smiley"))
	f.Add(der)
	f.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	f.Add([]byte("-----BEGIN"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		csr, err := ParseCSR(raw, DefaultDomain)
		if err != nil {
			return
		}
		if len(csr.Request.DNSNames) != 1 || csr.Request.DNSNames[0] != csr.Name || len(csr.Request.URIs)+len(csr.Request.IPAddresses)+len(csr.Request.EmailAddresses) != 0 {
			t.Fatalf("accepted a CSR with names %v %v %v %v", csr.Request.DNSNames, csr.Request.URIs, csr.Request.IPAddresses, csr.Request.EmailAddresses)
		}
	})
}

func FuzzParseCertificates(f *testing.F) {
	g, _ := Generate(DefaultDomain, time.Now(), time.Hour)
	f.Add(EncodeCertificates(g.Anchor, g.Issuer))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		certs, err := ParseCertificates(raw)
		if err != nil {
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		// What parses re-encodes to certificates that parse the same.
		again, err := ParseCertificates(EncodeCertificates(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-parse: %d certificates, %v", len(again), err)
		}
		if _, err := ParseAnchors(raw); err != nil {
			t.Fatalf("ParseAnchors refuses what ParseCertificates accepts: %v", err)
		}
	})
}
