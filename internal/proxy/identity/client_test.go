package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/identity"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	ctlidentity "github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/tlsid"
)

const testTimeout = 20 * time.Second

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// controlPlane is a real Identity service on a 127.0.0.1 gRPC listener.
type controlPlane struct {
	ca   *tlsid.Authority
	key  []byte
	srv  *ctlidentity.Server
	addr string
	g    *grpc.Server
}

func newControlPlane(t *testing.T, lifetime time.Duration) *controlPlane {
	t.Helper()
	g, err := tlsid.Generate(tlsid.DefaultDomain, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := &tlsid.Authority{Anchors: []*x509.Certificate{g.Anchor}, Issuer: g.Issuer, IssuerKey: g.IssuerKey, Domain: tlsid.DefaultDomain, Lifetime: lifetime}
	cp := &controlPlane{ca: ca, key: make([]byte, 32)}
	copy(cp.key, "0123456789abcdef0123456789abcdef")
	cp.srv, err = ctlidentity.New(ctlidentity.Config{Authority: ca, Validator: ctlidentity.NewHMACValidator(cp.key), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cp.start(t, "127.0.0.1:0")
	t.Cleanup(func() { cp.g.Stop() })
	return cp
}

func (cp *controlPlane) start(t *testing.T, addr string) {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = lis.Addr().String()
	cp.g = grpc.NewServer()
	cp.srv.Register(cp.g)
	go cp.g.Serve(lis)
}

func (cp *controlPlane) token(t *testing.T, ns, sa string) TokenSource {
	t.Helper()
	tok, err := ctlidentity.MintToken(cp.key, ctlidentity.Workload{Namespace: ns, ServiceAccount: sa, Pod: sa + "-0"})
	if err != nil {
		t.Fatal(err)
	}
	return func() ([]byte, error) { return tok, nil }
}

// proxyClient starts a certificate client for ns/sa and waits until it is
// ready.
func (cp *controlPlane) proxyClient(t *testing.T, ctx context.Context, ns, sa string, tok TokenSource) *Client {
	t.Helper()
	conn, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c, err := New(Config{
		Conn: conn, Name: cp.ca.Domain.Name(ns, sa), Token: tok, Anchors: cp.ca.AnchorPool(),
		MinRefresh: 50 * time.Millisecond, RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
		Logger: quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { <-done })
	return c
}

func waitReady(t *testing.T, c *Client) {
	t.Helper()
	select {
	case <-c.Ready():
	case <-time.After(testTimeout):
		t.Fatalf("%s: no certificate within %v", c.Name(), testTimeout)
	}
}

// poll waits for cond with a deadline.
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

// echoServer accepts mesh TLS connections and echoes lines until closed.
func echoServer(t *testing.T, cfg *tls.Config) net.Listener {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return lis
}

func exchange(c net.Conn, msg string) error {
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, msg); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return errors.New("echo mismatch")
	}
	return nil
}

// Certificates live four seconds (x509 truncates to whole seconds, and
// renewal at 70% must leave room on a loaded CI machine); both proxies
// renew several times while
// new mTLS connections are made without pause, and none fails. A
// connection opened at the start outlives the certificates it was made
// with.
func TestRenewalUnderContinuousConnections(t *testing.T) {
	cp := newControlPlane(t, 4*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	server := cp.proxyClient(t, ctx, "faces", "smiley", cp.token(t, "faces", "smiley"))
	client := cp.proxyClient(t, ctx, "faces", "face", cp.token(t, "faces", "face"))
	waitReady(t, server)
	waitReady(t, client)

	lis := echoServer(t, tlsid.NewMesh(cp.ca.AnchorPool(), server).Server())
	cliMesh := tlsid.NewMesh(cp.ca.AnchorPool(), client)
	serverID := server.Name()
	dialer := &net.Dialer{Timeout: testTimeout}

	long, err := tls.DialWithDialer(dialer, "tcp", lis.Addr().String(), cliMesh.Client(serverID))
	if err != nil {
		t.Fatal(err)
	}
	defer long.Close()
	if err := exchange(long, "hello\n"); err != nil {
		t.Fatal(err)
	}
	firstExpiry := server.ExpirationTimestampSeconds()

	var ok, failed atomic.Int64
	var mu sync.Mutex
	serials := map[string]bool{}
	var firstErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 3; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := tls.DialWithDialer(dialer, "tcp", lis.Addr().String(), cliMesh.Client(serverID))
				if err == nil {
					err = exchange(c, "ping\n")
					if err == nil {
						mu.Lock()
						serials[c.ConnectionState().PeerCertificates[0].SerialNumber.String()] = true
						mu.Unlock()
					}
					c.Close()
				}
				if err != nil {
					failed.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					continue
				}
				ok.Add(1)
			}
		}()
	}
	// Two renewals of each certificate, and the first server certificate
	// has expired.
	poll(t, "two renewals", func() bool {
		return server.RefreshCount() >= 3 && client.RefreshCount() >= 3 &&
			float64(time.Now().Unix()) > firstExpiry+1
	})
	close(stop)
	wg.Wait()

	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d connections failed during renewal; first: %v", n, n+ok.Load(), firstErr)
	}
	if len(serials) < 3 {
		t.Errorf("connections saw %d server certificates, want the renewed ones too (>= 3)", len(serials))
	}
	if server.ExpirationTimestampSeconds() <= firstExpiry {
		t.Errorf("expiration metric did not move: %v <= %v", server.ExpirationTimestampSeconds(), firstExpiry)
	}
	// The connection made with the first certificates still works.
	if err := exchange(long, "still here\n"); err != nil {
		t.Errorf("long-lived connection broken by renewal: %v", err)
	}
	t.Logf("%d connections, %d server certificates, %d/%d refreshes", ok.Load(), len(serials), server.RefreshCount(), client.RefreshCount())
}

// While the control plane is down the proxy keeps its certificate and
// retries; when it is back, renewal resumes.
func TestKeepsCertificateWhileControlPlaneDown(t *testing.T) {
	cp := newControlPlane(t, 3*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := cp.proxyClient(t, ctx, "faces", "smiley", cp.token(t, "faces", "smiley"))
	waitReady(t, c)
	first := c.Certificate()

	addr := cp.addr
	cp.g.Stop()
	// Renewal (at 70% of 3s) fails several times with the control plane
	// down: the certificate stays and is served.
	poll(t, "failed renewals", func() bool { return c.FailureCount() >= 3 })
	if c.RefreshCount() != 1 {
		t.Fatalf("refresh count %d with the control plane down", c.RefreshCount())
	}
	got, err := c.GetCertificate(nil)
	if err != nil || got != first {
		t.Fatalf("GetCertificate while down = %v, %v; want the first certificate", got, err)
	}

	cp.start(t, addr)
	poll(t, "renewal after the control plane returns", func() bool { return c.RefreshCount() >= 2 })
	if c.Certificate() == first {
		t.Error("certificate not replaced after renewal")
	}
}

func TestBadTokenNeverReady(t *testing.T) {
	cp := newControlPlane(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	other := make([]byte, 32) // another mesh's key
	tok, err := ctlidentity.MintToken(other, ctlidentity.Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "p"})
	if err != nil {
		t.Fatal(err)
	}
	c := cp.proxyClient(t, ctx, "faces", "smiley", func() ([]byte, error) { return tok, nil })
	// It retries: the control plane refuses several attempts.
	poll(t, "retries", func() bool { return cp.srv.Refused() >= 3 })
	select {
	case <-c.Ready():
		t.Fatal("ready with a bad token")
	default:
	}
	if _, err := c.GetClientCertificate(nil); !errors.Is(err, ErrNoCertificate) {
		t.Errorf("GetClientCertificate = %v, want ErrNoCertificate", err)
	}
	if c.RefreshCount() != 0 || c.ExpirationTimestampSeconds() != 0 {
		t.Error("metrics moved without a certificate")
	}
}

// A control plane that answers with something peers would refuse is not
// believed.
func TestCheckRefusesBadResponses(t *testing.T) {
	cp := newControlPlane(t, time.Minute)
	other := newControlPlane(t, time.Minute) // another trust anchor
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c := cp.proxyClient(t, ctx, "faces", "smiley", cp.token(t, "faces", "smiley"))
	waitReady(t, c)
	certifyWith := func(p *controlPlane, name string, csr []byte) *pb.CertifyResponse {
		t.Helper()
		tok, _ := ctlidentity.MintToken(p.key, ctlidentity.Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "p"})
		conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		resp, err := pb.NewIdentityClient(conn).Certify(ctx, &pb.CertifyRequest{Identity: name, Token: tok, CertificateSigningRequest: csr})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Signed by another anchor, for our key.
	if _, err := c.check(certifyWith(other, c.Name(), c.csr), time.Now()); err == nil {
		t.Error("accepted a certificate from another trust anchor")
	}
	// Right anchor, someone else's key.
	conn, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c2, err := New(Config{Conn: conn, Name: c.Name(), Token: cp.token(t, "faces", "smiley"), Anchors: cp.ca.AnchorPool()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.check(certifyWith(cp, c.Name(), c2.csr), time.Now()); err == nil {
		t.Error("accepted a certificate for another key")
	}
	if _, err := c.check(&pb.CertifyResponse{LeafCertificate: []byte("junk")}, time.Now()); err == nil {
		t.Error("accepted junk")
	}
	if _, err := c.check(certifyWith(cp, c.Name(), c.csr), time.Now()); err != nil {
		t.Errorf("refused a good response: %v", err)
	}
}

func TestRefreshIn(t *testing.T) {
	c := &Client{cfg: Config{MinRefresh: 10 * time.Second, MaxRefresh: 24 * time.Hour}}
	now := time.Now()
	for _, tt := range []struct {
		remaining, want time.Duration
	}{
		{24 * time.Hour, time.Duration(0.7 * float64(24*time.Hour))},
		{100 * time.Second, 70 * time.Second},
		{5 * time.Second, 10 * time.Second},
		{-time.Second, 10 * time.Second},
		{72 * time.Hour, 24 * time.Hour},
	} {
		if got := c.refreshIn(now.Add(tt.remaining), now); got != tt.want {
			t.Errorf("refreshIn(%v) = %v, want %v", tt.remaining, got, tt.want)
		}
	}
}

func TestTokenSources(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte("weft1.abc.def\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := TokenFile(path)()
	if err != nil || string(got) != "weft1.abc.def" {
		t.Errorf("TokenFile = %q, %v", got, err)
	}
	if _, err := TokenFile(filepath.Join(t.TempDir(), "none"))(); err == nil {
		t.Error("TokenFile of a missing file succeeded")
	}
	t.Setenv(TokenEnv, "weft1.x.y")
	src, err := TokenFromEnv("")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := src(); string(got) != "weft1.x.y" {
		t.Errorf("TokenFromEnv = %q", got)
	}
	t.Setenv(TokenEnv, "")
	if _, err := TokenFromEnv(""); err == nil {
		t.Error("TokenFromEnv with an empty variable succeeded")
	}
}
