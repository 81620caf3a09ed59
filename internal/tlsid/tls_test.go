package tlsid

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

const testTimeout = 10 * time.Second

// handshakeResult is what each end of one connection saw.
type handshakeResult struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
	echoed               string
}

// dial runs one mTLS connection over 127.0.0.1: the server handshakes and
// echoes one line; the client handshakes, writes "ping\n" and reads the
// echo.
func dial(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type srv struct {
		err error
		cs  tls.ConnectionState
	}
	done := make(chan srv, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- srv{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		tc := tls.Server(c, serverCfg)
		if err := tc.Handshake(); err != nil {
			done <- srv{err: err}
			return
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(tc, buf); err != nil {
			done <- srv{err: err}
			return
		}
		if _, err := tc.Write(buf); err != nil {
			done <- srv{err: err}
			return
		}
		done <- srv{cs: tc.ConnectionState()}
	}()

	var res handshakeResult
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	d := tls.Dialer{Config: clientCfg}
	c, err := d.DialContext(ctx, "tcp", lis.Addr().String())
	if err == nil {
		tc := c.(*tls.Conn)
		c.SetDeadline(time.Now().Add(testTimeout))
		res.client = tc.ConnectionState()
		// In TLS 1.3 the server checks the client's certificate after the
		// client's handshake is done: a refusal shows up on this exchange.
		if _, err = io.WriteString(tc, "ping\n"); err == nil {
			buf := make([]byte, 5)
			_, err = io.ReadFull(tc, buf)
			res.echoed = string(buf)
		}
		c.Close()
	}
	res.clientErr = err
	s := <-done
	res.serverErr, res.server = s.err, s.cs
	return res
}

func TestMutualTLS(t *testing.T) {
	a := testAuthority(t)
	server := issue(t, a, "faces", "smiley")
	client := issue(t, a, "faces", "face")
	serverID, clientID := a.Domain.Name("faces", "smiley"), a.Domain.Name("faces", "face")

	srv := NewMesh(a.AnchorPool(), StaticCertSource{server})
	cli := NewMesh(a.AnchorPool(), StaticCertSource{client})
	if cli.Client(serverID) != cli.Client(serverID) {
		t.Error("Mesh.Client does not cache per identity")
	}
	res := dial(t, srv.Server(), cli.Client(serverID))
	if res.serverErr != nil || res.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
	}
	if res.echoed != "ping\n" {
		t.Errorf("echoed %q", res.echoed)
	}
	if got, err := PeerIdentity(res.server); err != nil || got != clientID {
		t.Errorf("server sees client identity %q, %v; want %q", got, err, clientID)
	}
	if got, err := PeerIdentity(res.client); err != nil || got != serverID {
		t.Errorf("client sees server identity %q, %v; want %q", got, err, serverID)
	}
	for _, cs := range []tls.ConnectionState{res.server, res.client} {
		if cs.Version != tls.VersionTLS13 {
			t.Errorf("version %x, want TLS 1.3", cs.Version)
		}
		if cs.NegotiatedProtocol != ALPNMeshH2 {
			t.Errorf("ALPN %q, want %q", cs.NegotiatedProtocol, ALPNMeshH2)
		}
	}
	if res.server.ServerName != serverID {
		t.Errorf("SNI %q, want the server's identity %q", res.server.ServerName, serverID)
	}
}

func TestMutualTLSRefusals(t *testing.T) {
	a := testAuthority(t)
	other := testAuthority(t) // another trust anchor

	serverID := a.Domain.Name("faces", "smiley")
	good := issue(t, a, "faces", "smiley")
	goodClient := issue(t, a, "faces", "face")

	expiredFrom := func(ns, sa string) *tls.Certificate {
		// Same anchor as a, issued 30 minutes ago for one minute.
		b := *a
		b.Now = func() time.Time { return time.Now().Add(-30 * time.Minute) }
		b.Lifetime = time.Minute
		return issue(t, &b, ns, sa)
	}

	tests := []struct {
		name       string
		server     *tls.Certificate
		client     *tls.Certificate // nil: no client certificate
		expectID   string
		clientCfg  func(*tls.Config) // optional tweak
		wantServer string            // substring of the server's error, "" = any
		wantClient string            // substring of the client's error, "" = any
		serverFail bool
		clientFail bool
	}{
		{name: "client from another anchor", server: good, client: issue(t, other, "faces", "face"), expectID: serverID, serverFail: true, wantServer: "unknown authority"},
		{name: "server from another anchor", server: issue(t, other, "faces", "smiley"), client: goodClient, expectID: serverID, clientFail: true, wantClient: "unknown authority"},
		{name: "expired client certificate", server: good, client: expiredFrom("faces", "face"), expectID: serverID, serverFail: true, wantServer: "expired"},
		{name: "expired server certificate", server: expiredFrom("faces", "smiley"), client: goodClient, expectID: serverID, clientFail: true, wantClient: "expired"},
		{name: "wrong server identity", server: issue(t, a, "faces", "color"), client: goodClient, expectID: serverID, clientFail: true, wantClient: "not smiley"},
		{name: "no client certificate", server: good, client: nil, expectID: serverID, serverFail: true, wantServer: "certificate"},
		{name: "TLS 1.2 client", server: good, client: goodClient, expectID: serverID, clientCfg: func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }, serverFail: true, wantServer: "version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srvCfg := ServerConfig(a.AnchorPool(), StaticCertSource{tt.server}.GetCertificate)
			getClient := func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if tt.client == nil {
					return &tls.Certificate{}, nil // what crypto/tls sends when a client has none
				}
				return tt.client, nil
			}
			cliCfg := ClientConfig(a.AnchorPool(), tt.expectID, getClient)
			if tt.clientCfg != nil {
				tt.clientCfg(cliCfg)
			}
			res := dial(t, srvCfg, cliCfg)
			if res.echoed == "ping\n" {
				t.Fatal("application data crossed a connection that should have been refused")
			}
			if tt.serverFail && (res.serverErr == nil || !strings.Contains(res.serverErr.Error(), tt.wantServer)) {
				t.Errorf("server error = %v, want one containing %q", res.serverErr, tt.wantServer)
			}
			if tt.clientFail && (res.clientErr == nil || !strings.Contains(res.clientErr.Error(), tt.wantClient)) {
				t.Errorf("client error = %v, want one containing %q", res.clientErr, tt.wantClient)
			}
			if res.clientErr == nil {
				t.Error("client saw no error")
			}
		})
	}
}

// A certificate chaining to the anchor but naming two identities (our
// issuer never makes one; another tool might) is not an identity.
func TestMultiNameCertificateRefused(t *testing.T) {
	a := testAuthority(t)
	serverID := a.Domain.Name("faces", "smiley")
	key := newKey(t)
	csr := &CSR{Name: serverID}
	req, err := x509.ParseCertificateRequest(csrDER(t, &x509.CertificateRequest{DNSNames: []string{serverID, a.Domain.Name("faces", "color")}}, key))
	if err != nil {
		t.Fatal(err)
	}
	csr.Request = req
	// Sign takes DNS names from CSR.Name only; build a two-name leaf by
	// hand through the issuer to model a foreign tool.
	leaf, err := a.Sign(csr)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *leaf.Cert
	tmpl.DNSNames = append(tmpl.DNSNames, a.Domain.Name("faces", "color"))
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, a.Issuer, key.Public(), a.IssuerKey)
	if err != nil {
		t.Fatal(err)
	}
	two, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	cert := TLSCertificate(two, leaf.Chain, key)
	client := issue(t, a, "faces", "face")

	res := dial(t, ServerConfig(a.AnchorPool(), StaticCertSource{cert}.GetCertificate), ClientConfig(a.AnchorPool(), serverID, StaticCertSource{client}.GetClientCertificate))
	if res.clientErr == nil || !strings.Contains(res.clientErr.Error(), "2 DNS names") {
		t.Errorf("client error = %v, want a refusal of the two-name certificate", res.clientErr)
	}
	res = dial(t, ServerConfig(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "smiley")}.GetCertificate), ClientConfig(a.AnchorPool(), serverID, StaticCertSource{cert}.GetClientCertificate))
	if res.serverErr == nil || !strings.Contains(res.serverErr.Error(), "2 DNS names") {
		t.Errorf("server error = %v, want a refusal of the two-name client certificate", res.serverErr)
	}
}

func TestPeerIdentityUnverified(t *testing.T) {
	if _, err := PeerIdentity(tls.ConnectionState{}); err == nil {
		t.Error("PeerIdentity of an unverified connection succeeded")
	}
}
