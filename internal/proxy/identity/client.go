// Package identity is the proxy's certificate client: it creates the
// proxy's private key in memory, asks the control plane's Identity service
// to certify it (io.linkerd.proxy.identity.Identity/Certify) with the
// workload's token, and keeps the certificate fresh, renewing at 70% of its
// lifetime. Its GetCertificate and GetClientCertificate plug into
// tls.Config (see tlsid.NewMesh), so a renewal applies to the next
// handshake and never touches open connections.
package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/identity"
	"google.golang.org/grpc"

	"github.com/weft-mesh/weft/internal/tlsid"
)

// Defaults of Config.
const (
	// DefaultMinRefresh and DefaultMaxRefresh clamp the renewal delay, as
	// Linkerd's proxy does.
	DefaultMinRefresh = 10 * time.Second
	DefaultMaxRefresh = 24 * time.Hour
	// DefaultRetryMin and DefaultRetryMax bound the backoff between failed
	// attempts.
	DefaultRetryMin = 250 * time.Millisecond
	DefaultRetryMax = 10 * time.Second
	// DefaultRequestTimeout bounds one Certify call.
	DefaultRequestTimeout = 10 * time.Second
	// refreshRatio is the part of the remaining lifetime after which the
	// proxy renews.
	refreshRatio = 0.7
)

// TokenEnv is the environment variable a proxy reads its token from when
// it has no token file (the supervisor sets it per replica).
const TokenEnv = "WEFT_PROXY_IDENTITY_TOKEN"

// TokenSource returns the workload's current token. It is called before
// every Certify, so a token file that is rotated is picked up.
type TokenSource func() ([]byte, error)

// TokenFile reads the token from a file on every call.
func TokenFile(path string) TokenSource {
	return func() ([]byte, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("identity: reading the token: %w", err)
		}
		b = []byte(strings.TrimSpace(string(b)))
		if len(b) == 0 {
			return nil, fmt.Errorf("identity: token file %s is empty", path)
		}
		return b, nil
	}
}

// TokenFromEnv reads the token from environment variable name (TokenEnv
// if ""), once.
func TokenFromEnv(name string) (TokenSource, error) {
	if name == "" {
		name = TokenEnv
	}
	tok := strings.TrimSpace(os.Getenv(name))
	if tok == "" {
		return nil, fmt.Errorf("identity: no token: $%s is empty (the supervisor sets it; or give a token file)", name)
	}
	return func() ([]byte, error) { return []byte(tok), nil }, nil
}

// Config configures a Client.
type Config struct {
	// Conn reaches the control plane (the proxy's Destination connection
	// can be shared). Required.
	Conn grpc.ClientConnInterface
	// Name is the identity to ask for (tlsid.Domain.Name of the pod's
	// namespace and service account). Required.
	Name string
	// Token proves which workload this is. Required.
	Token TokenSource
	// Anchors verify the issued certificate before it is used. Required.
	Anchors *x509.CertPool
	// MinRefresh and MaxRefresh clamp the renewal delay; 0 means the
	// defaults (10s, 24h). Tests shorten MinRefresh.
	MinRefresh, MaxRefresh time.Duration
	// RetryMin and RetryMax bound the backoff after a failure; 0 means the
	// defaults.
	RetryMin, RetryMax time.Duration
	// RequestTimeout bounds one Certify call; 0 means the default.
	RequestTimeout time.Duration
	// Logger receives logs; nil means slog.Default().
	Logger *slog.Logger
}

// Client holds the proxy's key and current certificate.
type Client struct {
	cfg       Config
	log       *slog.Logger
	key       *ecdsa.PrivateKey
	csr       []byte
	client    pb.IdentityClient
	cert      atomic.Pointer[tls.Certificate]
	ready     chan struct{}
	readyOnce sync.Once
	refreshes atomic.Uint64
	failures  atomic.Uint64
}

// New generates the proxy's key (ECDSA P-256, kept in memory only) and
// its CSR. Call Run to obtain and renew the certificate.
func New(cfg Config) (*Client, error) {
	switch {
	case cfg.Conn == nil:
		return nil, errors.New("identity: no control plane connection")
	case cfg.Name == "":
		return nil, errors.New("identity: no identity name")
	case cfg.Token == nil:
		return nil, errors.New("identity: no token source")
	case cfg.Anchors == nil:
		return nil, errors.New("identity: no trust anchors")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&cfg.MinRefresh, DefaultMinRefresh)
	def(&cfg.MaxRefresh, DefaultMaxRefresh)
	def(&cfg.RetryMin, DefaultRetryMin)
	def(&cfg.RetryMax, DefaultRetryMax)
	def(&cfg.RequestTimeout, DefaultRequestTimeout)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generating the proxy key: %w", err)
	}
	csr, err := tlsid.NewCSR(key, cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	return &Client{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "identity", "identity", cfg.Name),
		key:    key,
		csr:    csr,
		client: pb.NewIdentityClient(cfg.Conn),
		ready:  make(chan struct{}),
	}, nil
}

// Name returns the identity this client certifies.
func (c *Client) Name() string { return c.cfg.Name }

// Ready is closed once the first certificate is in hand.
func (c *Client) Ready() <-chan struct{} { return c.ready }

// Certificate returns the current certificate, or nil before the first.
func (c *Client) Certificate() *tls.Certificate { return c.cert.Load() }

// ErrNoCertificate is returned to handshakes before the first certificate.
var ErrNoCertificate = errors.New("identity: no certificate yet (waiting for the control plane)")

// GetCertificate is tls.Config.GetCertificate (the inbound side).
func (c *Client) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if cert := c.cert.Load(); cert != nil {
		return cert, nil
	}
	return nil, ErrNoCertificate
}

// GetClientCertificate is tls.Config.GetClientCertificate (the outbound
// side).
func (c *Client) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	if cert := c.cert.Load(); cert != nil {
		return cert, nil
	}
	return nil, ErrNoCertificate
}

// ExpirationTimestampSeconds is the metric
// identity_cert_expiration_timestamp_seconds: the current certificate's
// NotAfter as Unix seconds (0 before the first).
func (c *Client) ExpirationTimestampSeconds() float64 {
	if cert := c.cert.Load(); cert != nil {
		return float64(cert.Leaf.NotAfter.UnixMilli()) / 1000
	}
	return 0
}

// RefreshCount is the metric identity_cert_refresh_count: certificates
// obtained since start.
func (c *Client) RefreshCount() uint64 { return c.refreshes.Load() }

// FailureCount is the number of failed Certify attempts since start.
func (c *Client) FailureCount() uint64 { return c.failures.Load() }

// Run obtains a certificate and renews it at 70% of its remaining lifetime
// (clamped to [MinRefresh, MaxRefresh]) until ctx ends. When the control
// plane cannot be reached it retries with backoff and keeps serving the
// current certificate meanwhile. It returns nil when ctx ends.
func (c *Client) Run(ctx context.Context) error {
	backoff := c.cfg.RetryMin
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		}
		cert, err := c.certify(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			c.failures.Add(1)
			wait := jitter(backoff)
			lvl := slog.LevelWarn
			if cur := c.cert.Load(); cur != nil && time.Now().After(cur.Leaf.NotAfter) {
				lvl = slog.LevelError // peers refuse us now
			}
			c.log.Log(ctx, lvl, "certify failed; retrying", "err", err, "retryIn", wait)
			timer.Reset(wait)
			backoff = min(2*backoff, c.cfg.RetryMax)
			continue
		}
		backoff = c.cfg.RetryMin
		c.cert.Store(cert)
		c.refreshes.Add(1)
		c.readyOnce.Do(func() { close(c.ready) })
		next := c.refreshIn(cert.Leaf.NotAfter, time.Now())
		c.log.Info("certified", "serial", cert.Leaf.SerialNumber.Text(16), "notAfter", cert.Leaf.NotAfter, "refreshIn", next)
		timer.Reset(next)
	}
}

// refreshIn is how long to wait before renewing a certificate expiring at
// notAfter.
func (c *Client) refreshIn(notAfter, now time.Time) time.Duration {
	d := time.Duration(float64(notAfter.Sub(now)) * refreshRatio)
	return min(max(d, c.cfg.MinRefresh), c.cfg.MaxRefresh)
}

// jitter spreads retries of many proxies over [d/2, d].
func jitter(d time.Duration) time.Duration {
	return d/2 + mrand.N(d/2+1)
}

// certify makes one Certify call and checks the answer.
func (c *Client) certify(ctx context.Context) (*tls.Certificate, error) {
	tok, err := c.cfg.Token()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	resp, err := c.client.Certify(ctx, &pb.CertifyRequest{Identity: c.cfg.Name, Token: tok, CertificateSigningRequest: c.csr})
	if err != nil {
		return nil, fmt.Errorf("identity: Certify: %w", err)
	}
	return c.check(resp, time.Now())
}

// check refuses a response that peers would refuse: a leaf for another
// name or key, or one that does not chain to the anchors.
func (c *Client) check(resp *pb.CertifyResponse, now time.Time) (*tls.Certificate, error) {
	leaf, err := x509.ParseCertificate(resp.GetLeafCertificate())
	if err != nil {
		return nil, fmt.Errorf("identity: the control plane sent an unreadable certificate: %w", err)
	}
	inter := x509.NewCertPool()
	for i, der := range resp.GetIntermediateCertificates() {
		ic, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("identity: the control plane sent an unreadable intermediate %d: %w", i, err)
		}
		inter.AddCert(ic)
	}
	if pub, ok := leaf.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(c.key.Public()) {
		return nil, errors.New("identity: the control plane certified another key")
	}
	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != c.cfg.Name {
		return nil, fmt.Errorf("identity: the control plane certified %v, not %q", leaf.DNSNames, c.cfg.Name)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: c.cfg.Anchors, Intermediates: inter, DNSName: c.cfg.Name, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("identity: the issued certificate does not verify against the trust anchors (do the proxy and control plane share them?): %w", err)
	}
	return tlsid.TLSCertificate(leaf, resp.GetIntermediateCertificates(), c.key), nil
}
