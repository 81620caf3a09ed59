package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control"
	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/proxy"
	proxyidentity "github.com/weft-mesh/weft/internal/proxy/identity"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// meshEnv is a real control plane (Destination and Identity, with a CA
// generated in a temporary directory) over an in-memory store, and the
// means to start proxies with identities in it.
type meshEnv struct {
	store    store.Store
	addr     string // control plane gRPC
	dir      string // identity directory
	tokenKey []byte
	// minRefresh lowers the proxies' renewal clamp (short lifetimes).
	minRefresh time.Duration
}

func newMeshEnv(t testing.TB, lifetime time.Duration) *meshEnv {
	t.Helper()
	e := &meshEnv{store: store.NewMemory(), dir: filepath.Join(t.TempDir(), "identity")}
	idCfg := control.IdentityConfig{Dir: e.dir, IssuanceLifetime: lifetime}
	if lifetime < time.Minute {
		// Short lifetimes: leaves valid from now, so that they really
		// expire after a few seconds.
		idCfg.ClockSkewAllowance = -1
		e.minRefresh = 50 * time.Millisecond
	}
	p, err := control.Listen(control.Config{
		Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: e.store,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Identity: idCfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	e.addr = p.Addr().String()
	if e.tokenKey, err = identity.LoadOrCreateTokenKey(e.dir); err != nil {
		t.Fatal(err)
	}
	return e
}

// name is the identity of service account sa in namespace ns.
func (e *meshEnv) name(ns, sa string) string { return tlsid.DefaultDomain.Name(ns, sa) }

// startProxy runs a proxy with the identity of ns/sa, as the supervisor
// would (a token bound to the workload, the anchors file), and waits
// until it is ready, which means it holds a certificate.
func (e *meshEnv) startProxy(t testing.TB, ns, pod, sa string, apps ...string) *running {
	t.Helper()
	tok, err := identity.MintToken(e.tokenKey, identity.Workload{Namespace: ns, ServiceAccount: sa, Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	return startProxyWith(t, e.addr, ns, pod, sa, &proxy.IdentityConfig{
		TokenFile:   tokFile,
		AnchorsFile: filepath.Join(e.dir, tlsid.AnchorsFile),
		MinRefresh:  e.minRefresh,
	}, apps...)
}

// register publishes a meshed pod (service account sa) behind Service
// svc, port 80 (or port), whose endpoint is addr, as the supervisor does.
func (e *meshEnv) register(t testing.TB, ns, svc, pod, sa string, port int32, addr string, meshed bool) {
	t.Helper()
	_, p, _ := net.SplitHostPort(addr)
	pn, _ := strconv.Atoi(p)
	s := api.New(api.KindService).(*corev1.Service)
	s.Namespace, s.Name = ns, svc
	s.Spec.Selector = map[string]string{"app": svc}
	s.Spec.Ports = []corev1.ServicePort{{Name: "p", Port: port, TargetPort: intstr.FromInt32(8000), Protocol: corev1.ProtocolTCP}}

	po := api.New(api.KindPod).(*corev1.Pod)
	po.Namespace, po.Name = ns, pod
	po.Labels = map[string]string{"app": svc}
	po.Annotations = map[string]string{}
	if meshed {
		po.Annotations["linkerd.io/proxy-version"] = "test"
	}
	po.Spec.ServiceAccountName = sa
	po.Status.PodIP = "127.0.0.1"
	po.Status.Phase = corev1.PodRunning
	po.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}

	ready := true
	proto := corev1.ProtocolTCP
	name := "p"
	p32 := int32(pn)
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = ns, svc+"-"+pod
	es.Labels = map[string]string{"kubernetes.io/service-name": svc, discoveryv1.LabelManagedBy: "weft-supervisor"}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = []discoveryv1.Endpoint{{
		Addresses:  []string{"127.0.0.1"},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
	}}
	es.Ports = []discoveryv1.EndpointPort{{Name: &name, Port: &p32, Protocol: &proto}}
	if err := e.store.Apply(context.Background(), s, po, es); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// startProxyWith is startProxy with an identity configuration. Discovery
// gets longer than usual: the first lookup waits for the certificate too.
func startProxyWith(t testing.TB, dstAddr, ns, pod, sa string, id *proxy.IdentityConfig, apps ...string) *running {
	t.Helper()
	cfg := testConfig(dstAddr, ns, pod, apps...)
	cfg.ServiceAccount = sa
	cfg.DiscoveryTimeout = 2 * time.Second
	cfg.Identity = id
	return runProxy(t, cfg)
}

// echoClientID is an app that answers with the client identity its proxy
// passed on, and the request's marker header.
func echoClientID(t testing.TB) string {
	return backend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" client-id="+r.Header.Get("l5d-client-id"))
	})
}

// TestMTLSBetweenProxies: two proxies with identities from the real
// control plane talk mTLS: the server's app learns the client's identity
// (l5d-client-id), both sides' metrics say tls="true" with the peer's
// identity, and each proxy serves its certificate at /identity.json.
func TestMTLSBetweenProxies(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	server := e.startProxy(t, "faces", "smiley-abc-1", "smiley", echoClientID(t))
	e.register(t, "faces", "smiley", "smiley-abc-1", "smiley", 80, server.InboundAddrs()[0], true)
	client := e.startProxy(t, "faces", "gui-def-1", "gui")

	clientID, serverID := e.name("faces", "gui"), e.name("faces", "smiley")
	if got := client.Identity(); got != clientID {
		t.Fatalf("client identity %q, want %q", got, clientID)
	}
	c := proxyClient(client)
	var body string
	waitFor(t, "smiley through the mesh", func() error {
		resp, b := get(t, c, "http://smiley/")
		if body = b; resp.StatusCode != 200 {
			return &statusErr{resp.StatusCode, b}
		}
		return nil
	})
	if want := "HTTP/1.1 client-id=" + clientID; body != want {
		t.Errorf("app saw %q, want %q", body, want)
	}
	// HTTP/2 from the app (gRPC's path) rides the same mTLS hop.
	resp, b := get(t, h2cClient(t, client), "http://smiley.faces:80/")
	if want := "HTTP/2.0 client-id=" + clientID; resp.StatusCode != 200 || b != want {
		t.Errorf("h2: %d %q, want 200 %q", resp.StatusCode, b, want)
	}

	out := metricsText(t, client)
	if want := `tls="true",server_id="` + serverID + `"`; !strings.Contains(grepLines(out, "request_total"), want) {
		t.Errorf("client outbound request_total lacks %s:\n%s", want, grepLines(out, "request_total"))
	}
	in := metricsText(t, server)
	want := `request_total{direction="inbound",namespace="faces",pod="smiley-abc-1",deployment="smiley",authority="smiley",tls="true",client_id="` + clientID + `"} 1`
	if !strings.Contains(in, want) {
		t.Errorf("server inbound metrics lack %s:\n%s", want, grepLines(in, "request_total"))
	}

	// Connections too: the server counts the client's mTLS connection
	// under its identity.
	if want := `tcp_open_total{direction="inbound",namespace="faces",pod="smiley-abc-1",deployment="smiley",peer="src",tls="true",client_id="` + clientID + `"} 1`; !strings.Contains(in, want) {
		t.Errorf("server inbound metrics lack %s:\n%s", want, grepLines(in, "tcp_open_total"))
	}

	for _, p := range []*running{client, server} {
		st := identityStatus(t, p)
		if st.Identity != p.Identity() || !strings.Contains(st.Certificate, "BEGIN CERTIFICATE") || st.Refreshes < 1 {
			t.Errorf("%s /identity.json = %+v", p.Identity(), st)
		}
		m := metricsText(t, p)
		for _, want := range []string{
			"\nidentity_cert_expiration_timestamp_seconds " + strconv.FormatInt(int64(st.Expiration), 10) + "\n",
			"\nidentity_cert_refresh_count " + strconv.FormatUint(st.Refreshes, 10) + "\n",
		} {
			if !strings.Contains(m, want) {
				t.Errorf("%s metrics lack %q:\n%s", p.Identity(), want, grepLines(m, "identity_"))
			}
		}
	}
}

func identityStatus(t testing.TB, p *running) proxyidentity.Status {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + proxyidentity.AdminPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st proxyidentity.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("%s: %v", proxyidentity.AdminPath, err)
	}
	return st
}

// recorder is a TCP relay that records every byte in both directions.
type recorder struct {
	ln    net.Listener
	mu    sync.Mutex
	bytes bytes.Buffer
	conns atomic.Int64
}

func newRecorder(t testing.TB, target string) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			up, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); up.Close() })
			go r.copy(up, c)
			go r.copy(c, up)
		}
	}()
	return r
}

func (r *recorder) copy(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.mu.Lock()
			r.bytes.Write(buf[:n])
			r.mu.Unlock()
			dst.Write(buf[:n])
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (r *recorder) recorded() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Clone(r.bytes.Bytes())
}

// TestNoPlaintextBetweenProxies records the bytes between the client's
// outbound and the server's inbound: they start with a TLS handshake and
// carry none of the application's bytes (path, headers, bodies) in clear
// (the SNI, the server's identity, is the one name in the clear).
// The same exchange through the same relay to an unmeshed endpoint shows
// them, so the check can see plaintext when there is some.
func TestNoPlaintextBetweenProxies(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	const (
		reqMarker  = "request-marker-8d1f0c"
		hdrMarker  = "header-marker-33a9e2"
		bodyMarker = "request-body-marker-71bb4d"
		respMarker = "response-marker-a5c7e0"
	)
	app := backend(t, "app", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s %s", respMarker, r.URL.Path, r.Header.Get("X-Marker"), b)
	})
	server := e.startProxy(t, "faces", "smiley-abc-1", "smiley", app)
	meshed := newRecorder(t, server.InboundAddrs()[0])
	e.register(t, "faces", "smiley", "smiley-abc-1", "smiley", 80, meshed.ln.Addr().String(), true)
	plain := newRecorder(t, server.InboundAddrs()[0])
	e.register(t, "faces", "plain", "plain-abc-1", "plain", 80, plain.ln.Addr().String(), false)
	client := e.startProxy(t, "faces", "gui-def-1", "gui")
	c := proxyClient(client)

	send := func(host string) {
		req, _ := http.NewRequest(http.MethodPost, "http://"+host+"/"+reqMarker, strings.NewReader(bodyMarker))
		req.Header.Set("X-Marker", hdrMarker)
		var body string
		waitFor(t, host+" through the mesh", func() error {
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if body = string(b); resp.StatusCode != 200 {
				return &statusErr{resp.StatusCode, body}
			}
			return nil
		})
		if want := respMarker + " /" + reqMarker + " " + hdrMarker + " " + bodyMarker; body != want {
			t.Fatalf("%s answered %q, want %q", host, body, want)
		}
	}
	send("smiley")
	send("plain")

	wire := meshed.recorded()
	if len(wire) == 0 || wire[0] != 0x16 {
		t.Fatalf("the hop between proxies does not start with a TLS handshake: % x", wire[:min(len(wire), 16)])
	}
	for _, m := range []string{reqMarker, hdrMarker, bodyMarker, respMarker, "PRI * HTTP/2.0", "l5d-orig-proto"} {
		if bytes.Contains(wire, []byte(m)) {
			t.Errorf("plaintext %q crossed the mTLS hop", m)
		}
	}
	// The control: the unmeshed endpoint's hop is plaintext, and the
	// recorder sees it.
	plainWire := plain.recorded()
	for _, m := range []string{reqMarker, hdrMarker, bodyMarker, respMarker} {
		if !bytes.Contains(plainWire, []byte(m)) {
			t.Errorf("the recorder did not see %q on the plaintext hop", m)
		}
	}
}

// TestUnmeshedClientReachesMeshedInbound: plain HTTP from a client without
// a proxy still reaches a meshed workload (policy comes later), without a
// client identity, and a forged l5d-client-id is removed.
func TestUnmeshedClientReachesMeshedInbound(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	server := e.startProxy(t, "faces", "smiley-abc-1", "smiley", echoClientID(t))
	req, _ := http.NewRequest(http.MethodGet, "http://"+server.InboundAddrs()[0]+"/", nil)
	req.Header.Set("l5d-client-id", "admin.kube-system.serviceaccount.identity.weft.cluster.local")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "HTTP/1.1 client-id=" {
		t.Errorf("plain client: %d %q, want 200 with no client id", resp.StatusCode, b)
	}
	in := metricsText(t, server)
	if want := `tls="no_identity",no_tls_reason="no_tls_from_remote"} 1`; !strings.Contains(grepLines(in, "request_total"), want) {
		t.Errorf("inbound metrics lack %s:\n%s", want, grepLines(in, "request_total"))
	}
	if want := `peer="src",tls="no_identity",no_tls_reason="no_tls_from_remote"} 1`; !strings.Contains(grepLines(in, "tcp_open_total"), want) {
		t.Errorf("inbound metrics lack %s:\n%s", want, grepLines(in, "tcp_open_total"))
	}
	// TLS that is not for the mesh (another SNI) passes through to the
	// app untouched: here an HTTP app, so the handshake fails at the app,
	// not at the proxy, and the proxy never presents its certificate.
	conn, err := tls.Dial("tcp", server.InboundAddrs()[0], &tls.Config{ServerName: "app.example.com", InsecureSkipVerify: true})
	if err == nil {
		if pc := conn.ConnectionState().PeerCertificates; len(pc) > 0 && len(pc[0].DNSNames) > 0 && pc[0].DNSNames[0] == server.Identity() {
			t.Errorf("the proxy terminated TLS meant for the app (SNI app.example.com)")
		}
		conn.Close()
	}
}

// TestMTLSRefusesBadPeers: a meshed inbound only accepts a client
// certificate that chains to the mesh's anchors, is current, and is
// presented at all; and a client proxy refuses a server that is not the
// identity Destination announced.
func TestMTLSRefusesBadPeers(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	server := e.startProxy(t, "faces", "smiley-abc-1", "smiley", echoClientID(t))
	serverID := server.Identity()
	anchors, err := tlsid.LoadAnchors(filepath.Join(e.dir, tlsid.AnchorsFile))
	if err != nil {
		t.Fatal(err)
	}
	meshCA, err := tlsid.Load(tlsid.DirFiles(e.dir), tlsid.DefaultDomain)
	if err != nil {
		t.Fatal(err)
	}
	gen, err := tlsid.Generate(tlsid.DefaultDomain, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	otherCA := &tlsid.Authority{Anchors: []*x509.Certificate{gen.Anchor}, Issuer: gen.Issuer, IssuerKey: gen.IssuerKey, Domain: tlsid.DefaultDomain}
	past := time.Now().Add(-2 * time.Hour)
	expiredCA := &tlsid.Authority{Anchors: meshCA.Anchors, Issuer: meshCA.Issuer, IssuerKey: meshCA.IssuerKey, Domain: tlsid.DefaultDomain,
		Lifetime: time.Hour, ClockSkew: -1, Now: func() time.Time { return past }}

	good := leaf(t, meshCA, "faces", "gui")
	tests := []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{
		{"mesh certificate", good, true},
		{"no client certificate", nil, false},
		{"another anchor", leaf(t, otherCA, "faces", "gui"), false},
		{"expired", leaf(t, expiredCA, "faces", "gui"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := tlsid.StaticCertSource{Cert: tc.cert}
			cfg := tlsid.ClientConfig(anchors, serverID, func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if src.Cert == nil {
					return &tls.Certificate{}, nil
				}
				return src.Cert, nil
			})
			err := exchange(server.InboundAddrs()[0], cfg)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && err == nil {
				t.Error("accepted")
			}
		})
	}

	// The client side: Destination says the pod runs as "other", but its
	// proxy proves "smiley": the client proxy refuses it (502) rather than
	// talk to an impostor.
	e.register(t, "faces", "smiley", "smiley-abc-1", "other", 80, server.InboundAddrs()[0], true)
	client := e.startProxy(t, "faces", "gui-def-1", "gui")
	var resp *http.Response
	var body string
	waitFor(t, "an answer", func() error {
		resp, body = get(t, proxyClient(client), "http://smiley/")
		if resp.StatusCode == http.StatusServiceUnavailable || strings.Contains(body, "lookup smiley") {
			return &statusErr{resp.StatusCode, body} // not resolved yet
		}
		return nil
	})
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(body, "mTLS") {
		t.Errorf("wrong server identity: %d %q, want 502 naming the mTLS failure", resp.StatusCode, body)
	}

	// Impostor servers that present the right name: from another anchor,
	// or expired. Each is the one endpoint of its own meshed service; the
	// client proxy must refuse both, and reach a genuine one (the control).
	for _, tc := range []struct {
		svc  string
		cert *tls.Certificate
		want int
	}{
		{"genuine", leaf(t, meshCA, "faces", "genuine"), http.StatusOK},
		{"foreign", leaf(t, otherCA, "faces", "foreign"), http.StatusBadGateway},
		{"expired", leaf(t, expiredCA, "faces", "expired"), http.StatusBadGateway},
	} {
		t.Run("server "+tc.svc, func(t *testing.T) {
			addr := meshServer(t, anchors, tc.cert)
			e.register(t, "faces", tc.svc, tc.svc+"-abc-1", tc.svc, 80, addr, true)
			var resp *http.Response
			var body string
			waitFor(t, "an answer", func() error {
				resp, body = get(t, proxyClient(client), "http://"+tc.svc+"/")
				// Until the control plane's watch sees the new Service,
				// Destination says it does not exist and the proxy
				// forwards to the name as given, which DNS cannot find.
				if resp.StatusCode == http.StatusServiceUnavailable || strings.Contains(body, "lookup "+tc.svc) {
					return &statusErr{resp.StatusCode, body}
				}
				return nil
			})
			if resp.StatusCode != tc.want {
				t.Errorf("%d %q, want %d", resp.StatusCode, body, tc.want)
			}
		})
	}
}

// meshServer is a bare mesh TLS server presenting cert (HTTP/2 inside,
// answering 200), to stand in for a peer proxy.
func meshServer(t *testing.T, anchors *x509.CertPool, cert *tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", tlsid.ServerConfig(anchors, tlsid.StaticCertSource{Cert: cert}.GetCertificate))
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	h2 := &http2.Server{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					tc.Close()
					return
				}
				h2.ServeConn(tc, &http2.ServeConnOpts{Handler: h})
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String()
}

// exchange runs an mTLS handshake and one HTTP/2-less request (HTTP/1.1
// inside the TLS, which the inbound detects) against addr.
func exchange(addr string, cfg *tls.Config) error {
	cfg = cfg.Clone()
	cfg.NextProtos = []string{"http/1.1"}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// In TLS 1.3 the server checks the client certificate after the
	// client's handshake returns: the refusal shows on the first read.
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: smiley\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) {
		return fmt.Errorf("answer %q", b)
	}
	return nil
}

// leaf issues a certificate for ns/sa from a.
func leaf(t testing.TB, a *tlsid.Authority, ns, sa string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := tlsid.NewCSR(key, a.Domain.Name(ns, sa))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := tlsid.ParseCSR(der, a.Domain)
	if err != nil {
		t.Fatal(err)
	}
	l, err := a.Sign(csr)
	if err != nil {
		t.Fatal(err)
	}
	return tlsid.TLSCertificate(l.Cert, l.Chain, key)
}

// TestMTLSRenewalUnderLoad: with certificates living three seconds, both
// proxies renew several times while requests (over the pooled mTLS
// connection) and opaque TCP tunnels (each a new mTLS handshake) run
// continuously: not one fails, and connections made after the first
// certificates expired still handshake (with the renewed ones).
func TestMTLSRenewalUnderLoad(t *testing.T) {
	const lifetime = 3 * time.Second
	e := newMeshEnv(t, lifetime)
	app := backend(t, "app", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	echo := echoServer(t)
	server := e.startProxy(t, "faces", "smiley-abc-1", "smiley", app, echo)
	e.register(t, "faces", "smiley", "smiley-abc-1", "smiley", 80, server.InboundAddrs()[0], true)
	e.register(t, "faces", "echo", "smiley-abc-1", "smiley", 7, server.InboundAddrs()[1], true)
	client := e.startProxy(t, "faces", "gui-def-1", "gui")
	c := proxyClient(client)
	waitFor(t, "smiley through the mesh", func() error {
		resp, b := get(t, c, "http://smiley/")
		if resp.StatusCode != 200 {
			return &statusErr{resp.StatusCode, b}
		}
		return nil
	})
	firstExpiry := time.Unix(int64(identityStatus(t, server).Expiration), 0)

	var (
		requests, tunnels atomic.Int64
		failMu            sync.Mutex
		failures          []string
	)
	fail := func(s string) {
		failMu.Lock()
		if len(failures) < 10 {
			failures = append(failures, s)
		}
		failMu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://smiley/")
				if err != nil {
					fail(err.Error())
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "ok" {
					fail(fmt.Sprintf("request: %d %q", resp.StatusCode, b))
				}
				requests.Add(1)
			}
		}()
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := echoOnce(client.OutboundAddr(), "echo.faces:7"); err != nil {
					fail("tunnel: " + err.Error())
				}
				tunnels.Add(1)
			}
		}()
	}
	// Run until both proxies have renewed at least twice and the first
	// certificates are well past their expiry.
	waitFor(t, "renewals under load", func() error {
		for _, p := range []*running{client, server} {
			if st := identityStatus(t, p); st.Refreshes < 3 {
				return fmt.Errorf("%s: %d certificates so far", p.Identity(), st.Refreshes)
			}
		}
		if time.Now().Before(firstExpiry.Add(time.Second)) {
			return fmt.Errorf("first certificate still valid")
		}
		return nil
	})
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Errorf("%d requests and %d tunnels; failures during renewal: %q", requests.Load(), tunnels.Load(), failures)
	}
	if requests.Load() == 0 || tunnels.Load() == 0 {
		t.Errorf("no load: %d requests, %d tunnels", requests.Load(), tunnels.Load())
	}
	t.Logf("%d requests and %d mTLS tunnels across renewals", requests.Load(), tunnels.Load())
}

// echoOnce opens a CONNECT tunnel to target through the outbound (a new
// mTLS connection to the peer, as the bytes are not HTTP) and checks that
// a line comes back.
func echoOnce(outbound, target string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := dialConnect(ctx, outbound, target)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	const line = "ping 42\n"
	if _, err := io.WriteString(c, line); err != nil {
		return err
	}
	buf := make([]byte, len(line))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != line {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// TestMTLSUpgrade: an Upgrade (websocket) request, which cannot ride
// HTTP/2, goes to the meshed peer as HTTP/1.1 over mTLS: the peer's app
// learns the client's identity and the upgraded stream echoes.
func TestMTLSUpgrade(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want an upgrade", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Client-Id: " + r.Header.Get("l5d-client-id") + "\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo
	})
	server := e.startProxy(t, "faces", "smiley-abc-1", "smiley", app)
	rec := newRecorder(t, server.InboundAddrs()[0])
	e.register(t, "faces", "smiley", "smiley-abc-1", "smiley", 80, rec.ln.Addr().String(), true)
	client := e.startProxy(t, "faces", "gui-def-1", "gui")
	waitFor(t, "smiley resolved", func() error {
		resp, b := get(t, proxyClient(client), "http://smiley.faces/")
		if resp.StatusCode != 400 { // the app's answer to a plain GET
			return &statusErr{resp.StatusCode, b}
		}
		return nil
	})

	c, err := net.Dial("tcp", client.OutboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET http://smiley.faces/ws HTTP/1.1\r\nHost: smiley.faces\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status = %s, want 101", resp.Status)
	}
	if got, want := resp.Header.Get("X-Client-Id"), e.name("faces", "gui"); got != want {
		t.Errorf("the app saw client id %q, want %q", got, want)
	}
	const msg = "websocket-payload-5e1d"
	io.WriteString(c, msg)
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
		t.Fatalf("echo = %q, %v; want %q", got, err, msg)
	}
	if bytes.Contains(rec.recorded(), []byte(msg)) || bytes.Contains(rec.recorded(), []byte("websocket")) {
		t.Error("the upgraded stream crossed the hop between proxies in plaintext")
	}
}

// TestReadyOnlyWithCertificate: a proxy whose control plane is not up yet
// serves but does not report ready (peers would fail to handshake with
// it) until it has a certificate; then it does, without a restart.
func TestReadyOnlyWithCertificate(t *testing.T) {
	// Reserve the control plane's address, then free it for later.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	dir := filepath.Join(t.TempDir(), "identity")
	if _, _, err := tlsid.LoadOrGenerate(dir, tlsid.DefaultDomain, time.Now()); err != nil {
		t.Fatal(err)
	}
	key, err := identity.LoadOrCreateTokenKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := identity.MintToken(key, identity.Workload{Namespace: "faces", ServiceAccount: "smiley", Pod: "smiley-abc-1"})
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := proxy.Listen(proxy.Config{
		ControlAddr: addr, OutboundAddr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0",
		Namespace: "faces", Pod: "smiley-abc-1", ServiceAccount: "smiley",
		Identity: &proxy.IdentityConfig{TokenFile: tokFile, AnchorsFile: filepath.Join(dir, tlsid.AnchorsFile)},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	ready := func() int {
		resp, err := http.Get("http://" + p.AdminAddr() + "/ready")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitFor(t, "the admin server", func() error {
		if code := ready(); code == 0 {
			return errors.New("no answer")
		}
		return nil
	})
	// A few probes while no control plane runs: never ready.
	for i := 0; i < 5; i++ {
		if code := ready(); code != http.StatusServiceUnavailable {
			t.Fatalf("/ready without a certificate = %d, want 503", code)
		}
	}

	cp, err := control.Listen(control.Config{
		Addr: addr, AdminAddr: "127.0.0.1:0", Store: store.NewMemory(),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		Identity: control.IdentityConfig{Dir: dir},
	})
	if err != nil {
		t.Fatal(err)
	}
	cctx, ccancel := context.WithCancel(context.Background())
	cdone := make(chan struct{})
	go func() { cp.Run(cctx); close(cdone) }()
	t.Cleanup(func() { ccancel(); <-cdone })
	waitFor(t, "ready once certified", func() error {
		if code := ready(); code != http.StatusOK {
			return fmt.Errorf("/ready = %d", code)
		}
		return nil
	})
}
