package tlsid

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"
)

// Defaults of an Authority.
const (
	// DefaultLifetime is how long a leaf certificate is valid (Linkerd's
	// identity.issuer.issuanceLifetime).
	DefaultLifetime = 24 * time.Hour
	// DefaultClockSkew backdates NotBefore so peers whose clocks run a
	// little behind still accept a fresh certificate.
	DefaultClockSkew = 20 * time.Second
	// DefaultCAValidity is how long generated anchors and issuers last.
	DefaultCAValidity = 365 * 24 * time.Hour
)

// Authority signs leaf certificates: an issuer (intermediate CA) and its
// key, and the trust anchors the issuer chains to.
type Authority struct {
	// Anchors are the trust anchors (roots) every proxy trusts.
	Anchors []*x509.Certificate
	// Issuer signs leaves; IssuerKey is its private key.
	Issuer    *x509.Certificate
	IssuerKey crypto.Signer
	// Intermediates are any certificates between the issuer and an anchor,
	// issuer's parent first (usually none).
	Intermediates []*x509.Certificate
	// Domain names identities.
	Domain Domain
	// Lifetime of leaves; 0 means DefaultLifetime.
	Lifetime time.Duration
	// ClockSkew backdates leaves' NotBefore; 0 means DefaultClockSkew,
	// negative means none.
	ClockSkew time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (a *Authority) now() time.Time {
	if a.Now != nil {
		return a.Now()
	}
	return time.Now()
}

// AnchorPool returns the trust anchors as a pool for verification.
func (a *Authority) AnchorPool() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range a.Anchors {
		p.AddCert(c)
	}
	return p
}

// Validate checks that the authority can sign certificates peers accept:
// the issuer is a CA, its key matches, it chains to an anchor and it is
// within its validity period (as are the anchors).
func (a *Authority) Validate() error {
	if len(a.Anchors) == 0 {
		return errors.New("tlsid: no trust anchors")
	}
	if a.Issuer == nil || a.IssuerKey == nil {
		return errors.New("tlsid: no issuer certificate and key")
	}
	if err := a.Domain.Validate(); err != nil {
		return err
	}
	if !a.Issuer.IsCA || a.Issuer.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("tlsid: issuer certificate %s is not a CA (it needs basicConstraints CA:TRUE and keyUsage certSign)", Describe(a.Issuer))
	}
	if !publicKeysEqual(a.Issuer.PublicKey, a.IssuerKey.Public()) {
		return fmt.Errorf("tlsid: the issuer key does not belong to the issuer certificate %s", Describe(a.Issuer))
	}
	now := a.now()
	if err := checkTime(a.Issuer, "issuer certificate", now); err != nil {
		return err
	}
	// Several anchors may be configured while one is being rotated out;
	// only the chain to one current anchor matters (checked below), but
	// say so plainly when none is current.
	var anchorErr error
	for _, c := range a.Anchors {
		if anchorErr = checkTime(c, "trust anchor", now); anchorErr == nil {
			break
		}
	}
	if anchorErr != nil {
		return anchorErr
	}
	if _, err := VerifyIssuer(a.Issuer, a.Intermediates, a.AnchorPool(), now); err != nil {
		return err
	}
	return nil
}

func checkTime(c *x509.Certificate, what string, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("tlsid: the %s %s expired on %s; replace it (in local mode: stop the mesh and move the identity directory aside to generate new ones)", what, Describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("tlsid: the %s %s is not valid before %s (is the clock right?)", what, Describe(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// VerifyIssuer checks that a CA certificate chains to the anchors at time
// now and returns the chain (issuer first, anchor last).
func VerifyIssuer(issuer *x509.Certificate, intermediates []*x509.Certificate, anchors *x509.CertPool, now time.Time) ([]*x509.Certificate, error) {
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		pool.AddCert(c)
	}
	chains, err := issuer.Verify(x509.VerifyOptions{
		Roots:         anchors,
		Intermediates: pool,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err != nil {
		return nil, fmt.Errorf("tlsid: issuer certificate %s does not chain to the trust anchors: %w", Describe(issuer), err)
	}
	return chains[0], nil
}

// CSR is a certificate signing request that passed CheckCSR.
type CSR struct {
	Request *x509.CertificateRequest
	// Name is the request's single DNS name: the identity asked for.
	Name string
}

// ParseCSR decodes a CSR (DER, as Linkerd's proxy sends, or PEM) and checks
// it asks for exactly one identity: one DNS name of the domain, no IP,
// email or URI names, a valid self-signature and a supported key.
func ParseCSR(raw []byte, d Domain) (*CSR, error) {
	der := raw
	if bytes.HasPrefix(bytes.TrimSpace(raw), []byte("-----BEGIN")) {
		blocks, err := decodePEM(raw, "CERTIFICATE REQUEST")
		if err != nil {
			return nil, fmt.Errorf("tlsid: certificate signing request: %w", err)
		}
		if len(blocks) != 1 {
			return nil, fmt.Errorf("tlsid: certificate signing request: want one PEM block, got %d", len(blocks))
		}
		der = blocks[0]
	}
	req, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("tlsid: certificate signing request is not a valid x509 CSR: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("tlsid: certificate signing request has a bad signature: %w", err)
	}
	switch {
	case len(req.IPAddresses) > 0:
		return nil, errors.New("tlsid: certificate signing request has IP address names; only one DNS name (the identity) is allowed")
	case len(req.EmailAddresses) > 0:
		return nil, errors.New("tlsid: certificate signing request has email names; only one DNS name (the identity) is allowed")
	case len(req.URIs) > 0:
		return nil, errors.New("tlsid: certificate signing request has URI names; only one DNS name (the identity) is allowed (the SPIFFE ID is added by the issuer)")
	case len(req.DNSNames) != 1:
		return nil, fmt.Errorf("tlsid: certificate signing request has %d DNS names; exactly one (the identity) is required", len(req.DNSNames))
	}
	if err := checkLeafKey(req.PublicKey); err != nil {
		return nil, err
	}
	name := req.DNSNames[0]
	if _, _, err := d.Parse(name); err != nil {
		return nil, fmt.Errorf("tlsid: certificate signing request: %w", err)
	}
	return &CSR{Request: req, Name: name}, nil
}

func checkLeafKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("tlsid: certificate signing request uses ECDSA curve %s; use P-256 or P-384", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	default:
		return fmt.Errorf("tlsid: certificate signing request has an unsupported %T key; use ECDSA P-256", pub)
	}
}

// Leaf is a signed workload certificate.
type Leaf struct {
	Cert *x509.Certificate
	// Chain is what the workload presents after its leaf: the issuer and
	// any intermediates, DER-encoded.
	Chain [][]byte
}

// Sign issues a leaf for the CSR's identity, valid from now minus the clock
// skew until now plus the lifetime (never past the issuer's own expiry),
// carrying the DNS identity and its SPIFFE ID.
func (a *Authority) Sign(csr *CSR) (*Leaf, error) {
	ns, sa, err := a.Domain.Parse(csr.Name)
	if err != nil {
		return nil, err
	}
	now := a.now()
	if now.After(a.Issuer.NotAfter) {
		return nil, fmt.Errorf("tlsid: the issuer certificate %s expired at %s; rotate it", Describe(a.Issuer), a.Issuer.NotAfter.UTC().Format(time.RFC3339))
	}
	lifetime := a.Lifetime
	if lifetime <= 0 {
		lifetime = DefaultLifetime
	}
	skew := a.ClockSkew
	if skew == 0 {
		skew = DefaultClockSkew
	} else if skew < 0 {
		skew = 0
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(a.Issuer.NotAfter) {
		notAfter = a.Issuer.NotAfter
	}
	notBefore := now.Add(-skew)
	if notBefore.Before(a.Issuer.NotBefore) {
		notBefore = a.Issuer.NotBefore
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: csr.Name},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Every proxy is both a server (inbound) and a client (outbound).
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		DNSNames:              []string{csr.Name},
		URIs:                  []*url.URL{a.Domain.SPIFFE(ns, sa)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.Issuer, csr.Request.PublicKey, a.IssuerKey)
	if err != nil {
		return nil, fmt.Errorf("tlsid: signing a certificate for %s: %w", csr.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsid: signing a certificate for %s: %w", csr.Name, err)
	}
	chain := make([][]byte, 0, 1+len(a.Intermediates))
	chain = append(chain, a.Issuer.Raw)
	for _, c := range a.Intermediates {
		chain = append(chain, c.Raw)
	}
	return &Leaf{Cert: cert, Chain: chain}, nil
}

// NewRoot creates a self-signed trust anchor with an ECDSA P-256 key.
func NewRoot(commonName string, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return newCA(commonName, nil, nil, notBefore, notAfter)
}

// NewIntermediate creates an issuer (intermediate CA) signed by parent,
// with an ECDSA P-256 key.
func NewIntermediate(commonName string, parent *x509.Certificate, parentKey crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	return newCA(commonName, parent, parentKey, notBefore, notAfter)
}

func newCA(commonName string, parent *x509.Certificate, parentKey crypto.Signer, notBefore, notAfter time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: generating a key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	if parent == nil {
		// Only the root may sign an issuer; the issuer signs leaves only.
		tmpl.MaxPathLen = 1
		parent, parentKey = tmpl, key
	} else {
		tmpl.MaxPathLen = 0
		tmpl.MaxPathLenZero = true
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: creating certificate %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsid: creating certificate %q: %w", commonName, err)
	}
	return cert, key, nil
}

func randomSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsid: generating a serial number: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	ea, ok := a.(equaler)
	return ok && ea.Equal(b)
}

// Fingerprint is the SHA-256 of a certificate's DER, as colon-separated hex.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// Describe names a certificate in messages: its subject and serial.
func Describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s)", c.Subject.String(), c.SerialNumber.Text(16))
}
