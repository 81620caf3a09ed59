package ingress

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// testCert makes a self-signed certificate for names; serial tells
// certificates for the same names apart.
func testCert(t testing.TB, serial int64, names ...string) (crtPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func newTLSSecret(ns, name string, crt, key []byte) *corev1.Secret {
	s := &corev1.Secret{Type: corev1.SecretTypeTLS, Data: map[string][]byte{"tls.crt": crt, "tls.key": key}}
	s.APIVersion, s.Kind = "v1", "Secret"
	s.Namespace, s.Name = ns, name
	return s
}

func newHTTPSListener(ns, name string, port int32, model string) *api.Listener {
	l := newListener(ns, name, port, "ALL")
	l.Spec.Protocol, l.Spec.SecurityModel = "HTTPS", model
	return l
}

func tlsHost(ns, name, hostname, secret, action string) *api.Host {
	h := newHost(ns, name, hostname)
	h.Spec.TLSSecret = &corev1.SecretReference{Name: secret}
	if action != "" {
		h.Spec.RequestPolicy = &api.RequestPolicy{Insecure: &api.InsecureRequestPolicy{Action: action}}
	}
	return h
}

// handshake connects to addr with SNI serverName and returns the serial of
// the certificate the ingress presented and the negotiated protocol.
func handshake(t *testing.T, addr, serverName string, alpn ...string) (serial int64, proto string) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, NextProtos: alpn})
	if err != nil {
		t.Fatalf("TLS handshake with %s (SNI %q): %v", addr, serverName, err)
	}
	defer c.Close()
	st := c.ConnectionState()
	return st.PeerCertificates[0].SerialNumber.Int64(), st.NegotiatedProtocol
}

// httpsClient trusts anything (the test certificates are self-signed) and
// speaks h2 when the server offers it.
func httpsClient(t *testing.T) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestTLSSNIAndReload(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	aCrt, aKey := testCert(t, 1, "a.example.com")
	bCrt, bKey := testCert(t, 2, "*.b.example.com")
	h := newHarness(t, false,
		newHTTPSListener("weft", "https", 8443, "XFP"),
		newTLSSecret("weft", "a-cert", aCrt, aKey),
		newTLSSecret("certs", "b-cert", bCrt, bKey),
		tlsHost("weft", "a", "a.example.com", "a-cert", ""),
		func() *api.Host {
			h := tlsHost("weft", "b", "*.b.example.com", "b-cert", "")
			h.Spec.TLSSecret.Namespace = "certs"
			return h
		}(),
		newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: svc}),
	)
	waitFor(t, "8443 to be bound", func() bool { return h.in.Addrs()[8443] != "" })
	addr := h.in.Addrs()[8443]
	if probs := h.in.Router().Table().Problems; len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}

	for sni, want := range map[string]int64{"a.example.com": 1, "x.b.example.com": 2, "A.EXAMPLE.COM": 1, "": 1} {
		if got, _ := handshake(t, addr, sni); got != want {
			t.Errorf("SNI %q: certificate %d, want %d", sni, got, want)
		}
	}
	if _, proto := handshake(t, addr, "a.example.com", "h2", "http/1.1"); proto != "h2" {
		t.Errorf("ALPN: negotiated %q, want h2", proto)
	}
	if _, proto := handshake(t, addr, "a.example.com", "http/1.1"); proto != "http/1.1" {
		t.Errorf("ALPN http/1.1 only: negotiated %q", proto)
	}

	// A request over TLS is routed, over HTTP/2, with X-Forwarded-Proto https.
	c := httpsClient(t)
	req, _ := http.NewRequest("GET", "https://"+addr+"/p", nil)
	req.Host = "a.example.com"
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = "a.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e echo
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("TLS request: %d %s XFP %q", resp.StatusCode, resp.Proto, e.Header.Get("X-Forwarded-Proto"))
	}

	// Cleartext on the same HTTPS port still works: a TLS Host's default
	// action redirects it.
	req, _ = http.NewRequest("GET", "http://"+addr+"/p?q=1", nil)
	req.Host = "a.example.com"
	resp, err = h.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://a.example.com/p?q=1" {
		t.Errorf("cleartext on the HTTPS port: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}

	// The Secret changes: the next handshake presents the new certificate,
	// on the same listener.
	nCrt, nKey := testCert(t, 3, "a.example.com")
	h.apply(newTLSSecret("weft", "a-cert", nCrt, nKey))
	waitFor(t, "the new certificate", func() bool { s, _ := handshake(t, addr, "a.example.com"); return s == 3 })
	if h.in.Addrs()[8443] != addr {
		t.Error("the listener was rebound for a certificate change")
	}

	// A broken Secret: the Host is reported, and the other Host keeps TLS.
	h.apply(newTLSSecret("weft", "a-cert", []byte("junk"), nKey))
	waitFor(t, "the broken Secret to be reported", func() bool {
		for _, p := range h.in.Router().Table().Problems {
			if p.Ref.Name == "a" && strings.Contains(p.Err.Error(), "tlsSecret") {
				return true
			}
		}
		return false
	})
	if got, _ := handshake(t, addr, "x.b.example.com"); got != 2 {
		t.Errorf("other Host after a broken Secret: certificate %d", got)
	}
}

func TestInsecureActionsAndXFP(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	crt, key := testCert(t, 1, "*.example.com")
	redirect := tlsHost("weft", "redirect", "redirect.example.com", "cert", "Redirect")
	redirect.Spec.RequestPolicy.Insecure.AdditionalPort = ptr[int32](8443)
	h := newHarness(t, false,
		newHTTPSListener("weft", "https", 8443, "XFP"),
		newTLSSecret("weft", "cert", crt, key),
		redirect,
		tlsHost("weft", "route", "route.example.com", "cert", "Route"),
		tlsHost("weft", "reject", "reject.example.com", "cert", "Reject"),
		newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: svc}),
	)
	waitFor(t, "8443 to be bound", func() bool { return h.in.Addrs()[8443] != "" })
	addr := h.in.Addrs()[8443]
	tlsc := httpsClient(t)

	type result struct {
		status int
		loc    string
		xfp    string
	}
	do := func(c *http.Client, scheme, host string, hdr http.Header) result {
		t.Helper()
		req, _ := http.NewRequest("GET", scheme+"://"+addr+"/p", nil)
		req.Host = host
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var e echo
		if bytes.HasPrefix(b, []byte("{")) {
			_ = json.Unmarshal(b, &e)
		}
		return result{resp.StatusCode, resp.Header.Get("Location"), e.Header.Get("X-Forwarded-Proto")}
	}
	xfpHTTPS := http.Header{"X-Forwarded-Proto": {"https"}}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		scheme string
		host   string
		hdr    http.Header
		want   result
	}{
		{"redirect, cleartext", h.httpc, "http", "redirect.example.com", nil, result{301, "https://redirect.example.com:8443/p", ""}},
		{"redirect, TLS", tlsc, "https", "redirect.example.com", nil, result{200, "", "https"}},
		{"route, cleartext", h.httpc, "http", "route.example.com", nil, result{200, "", "http"}},
		{"reject, cleartext", h.httpc, "http", "reject.example.com", nil, result{400, "", ""}},
		{"reject, TLS", tlsc, "https", "reject.example.com", nil, result{200, "", "https"}},
		// l7Depth 0: a client's X-Forwarded-Proto is not trusted.
		{"spoofed XFP at depth 0", h.httpc, "http", "reject.example.com", xfpHTTPS, result{400, "", ""}},
		{"spoofed XFP routed at depth 0", h.httpc, "http", "route.example.com", xfpHTTPS, result{200, "", "http"}},
	} {
		if got := do(tc.c, tc.scheme, tc.host, tc.hdr); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}

	// Behind one trusted proxy (l7Depth 1) its X-Forwarded-Proto decides.
	l := newHTTPSListener("weft", "https", 8443, "XFP")
	l.Spec.L7Depth = 1
	h.apply(l)
	waitFor(t, "l7Depth 1", func() bool {
		d, _ := h.in.Router().Table().Match(8443, mustRequest("http://route.example.com/"))
		return d.L7Depth == 1
	})
	if got := do(h.httpc, "http", "reject.example.com", xfpHTTPS); got != (result{200, "", "https"}) {
		t.Errorf("trusted XFP https: %+v", got)
	}
	// SECURE: everything is secure, even cleartext.
	h.apply(newHTTPSListener("weft", "https", 8443, "SECURE"))
	waitFor(t, "SECURE", func() bool {
		d, _ := h.in.Router().Table().Match(8443, mustRequest("http://route.example.com/"))
		return d.SecurityModel == "SECURE"
	})
	if got := do(h.httpc, "http", "reject.example.com", nil); got.status != 200 {
		t.Errorf("SECURE, cleartext to a Reject Host: %+v", got)
	}
	// INSECURE: everything is insecure, even TLS.
	h.apply(newHTTPSListener("weft", "https", 8443, "INSECURE"))
	waitFor(t, "INSECURE", func() bool {
		d, _ := h.in.Router().Table().Match(8443, mustRequest("http://route.example.com/"))
		return d.SecurityModel == "INSECURE"
	})
	if got := do(tlsc, "https", "reject.example.com", nil); got.status != 400 {
		t.Errorf("INSECURE, TLS to a Reject Host: %+v", got)
	}
}

func mustRequest(target string) *http.Request {
	req, err := http.NewRequest("GET", target, nil)
	if err != nil {
		panic(err)
	}
	return req
}

func TestSNIPick(t *testing.T) {
	a, b, c := &tls.Certificate{}, &tls.Certificate{}, &tls.Certificate{}
	s := &sniCerts{}
	s.add("*", c, api.Ref{})
	s.add("*.example.com", b, api.Ref{})
	s.add("www.example.com", a, api.Ref{})
	s.sort()
	for name, want := range map[string]*tls.Certificate{"www.example.com": a, "WWW.example.com.": a, "x.example.com": b, "example.com": c, "other.org": c, "": a} {
		if got := s.pick(name); got != want {
			t.Errorf("pick(%q) wrong certificate", name)
		}
	}
	if (*sniCerts)(nil).pick("x") != nil {
		t.Error("nil set picks a certificate")
	}
}

func FuzzSniff(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte("PRI * HTTP/2.0\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		got := looksLikeTLS(b)
		if got && (len(b) == 0 || b[0] != 0x16) {
			t.Fatalf("looksLikeTLS(%q) = true", b)
		}
		// No HTTP method or h2c preface starts with a TLS handshake byte.
		if len(b) > 0 && b[0] >= 'A' && b[0] <= 'Z' && got {
			t.Fatalf("an HTTP request line sniffed as TLS: %q", b)
		}
	})
}

func TestGatewayHTTPSListeners(t *testing.T) {
	aCrt, aKey := testCert(t, 11, "a.example.com")
	bCrt, bKey := testCert(t, 12, "*.b.example.com")
	https := func(name, host, secret string) gatewayv1.Listener {
		l := gwListen(name, 8443, "HTTPS", host)
		l.TLS = &gatewayv1.ListenerTLSConfig{CertificateRefs: []gatewayv1.SecretObjectReference{{Name: gatewayv1.ObjectName(secret)}}}
		return l
	}
	route := newHTTPRoute("ns", "secure", []gatewayv1.ParentReference{parentGW("gw", "tls")}, nil, gatewayv1.HTTPRouteRule{
		BackendRefs: []gatewayv1.HTTPBackendRef{backend("echo", 8080, -1)},
	})
	h := newGWHarness(t, nil,
		newTLSSecret("gw", "a", aCrt, aKey), newTLSSecret("gw", "b", bCrt, bKey),
		newGateway("gw", "tls", https("a", "a.example.com", "a"), https("b", "*.b.example.com", "b"), https("broken", "c.example.com", "missing")),
		route,
	)
	waitFor(t, "8443 to be bound", func() bool { return h.in.Addrs()[8443] != "" })
	addr := h.in.Addrs()[8443]
	for sni, want := range map[string]int64{"a.example.com": 11, "x.b.example.com": 12} {
		if got, _ := handshake(t, addr, sni); got != want {
			t.Errorf("SNI %q: certificate %d, want %d", sni, got, want)
		}
	}
	var broken bool
	for _, p := range h.in.Router().Table().Problems {
		broken = broken || (p.Ref.Name == "tls" && strings.Contains(p.Err.Error(), "listener broken") && strings.Contains(p.Err.Error(), "no Secret gw/missing"))
	}
	if !broken {
		t.Errorf("the listener with a missing Secret is not reported: %v", h.in.Router().Table().Problems)
	}

	c := httpsClient(t)
	c.Transport.(*http.Transport).TLSClientConfig.ServerName = "x.b.example.com"
	req, _ := http.NewRequest("GET", "https://"+addr+"/p", nil)
	req.Host = "x.b.example.com"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var e echo
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 || e.Header.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("HTTPS through the Gateway: %d %s XFP %q", resp.StatusCode, resp.Proto, e.Header.Get("X-Forwarded-Proto"))
	}
	// No listener for c.example.com is served (its Secret is missing).
	req, _ = http.NewRequest("GET", "https://"+addr+"/p", nil)
	req.Host = "c.example.com"
	if resp, err := c.Do(req); err != nil || resp.StatusCode != 404 {
		t.Errorf("host of the unserved listener: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

// secretList serves Secrets from a list, as the store would.
func secretList(secrets ...*corev1.Secret) func(api.Ref) (*corev1.Secret, error) {
	return func(ref api.Ref) (*corev1.Secret, error) {
		for _, s := range secrets {
			if s.Namespace == ref.Namespace && s.Name == ref.Name {
				return s, nil
			}
		}
		return nil, fmt.Errorf("%s: %w", ref, store.ErrNotFound)
	}
}

func TestSecretKeyPair(t *testing.T) {
	crt, key := testCert(t, 5, "x.example.com")
	str := newTLSSecret("ns", "str", nil, nil)
	str.Data = nil
	str.StringData = map[string]string{"tls.crt": string(crt), "tls.key": string(key)}
	wrongType := newTLSSecret("ns", "wrong", crt, key)
	wrongType.Type = corev1.SecretTypeDockerConfigJson
	var c secretCerts
	load := c.loader(secretList(newTLSSecret("ns", "ok", crt, key), str, wrongType, newTLSSecret("ns", "nokey", crt, nil), newTLSSecret("ns", "junk", []byte("junk"), key)))
	for name, want := range map[string]string{"ok": "", "str": "", "wrong": "want kubernetes.io/tls", "nokey": "lacks", "junk": "bad certificate", "absent": "no Secret ns/absent"} {
		cert, err := load(api.Ref{Kind: api.KindSecret, Namespace: "ns", Name: name})
		switch {
		case want == "" && (err != nil || cert == nil):
			t.Errorf("%s: %v", name, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want one mentioning %q", name, err, want)
		}
	}
	// The same content is parsed once; the cache keeps only what was used.
	a, _ := load(api.Ref{Kind: api.KindSecret, Namespace: "ns", Name: "ok"})
	b, _ := load(api.Ref{Kind: api.KindSecret, Namespace: "ns", Name: "ok"})
	if a != b {
		t.Error("an unchanged Secret was parsed again")
	}
	_ = c.loader(secretList()) // a new build that uses nothing
	c.prune()
	if len(c.cache) != 0 {
		t.Errorf("cache keeps %d certificates nobody uses", len(c.cache))
	}
}

func TestSilentConnectionClosedAtShutdown(t *testing.T) {
	h := newHarness(t, false)
	c, err := net.Dial("tcp", h.in.Addrs()[8080])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// The connection says nothing: it is still being sniffed when the
	// ingress stops, and is closed rather than left waiting.
	waitFor(t, "the connection to be accepted", func() bool {
		h.in.mu.Lock()
		defer h.in.mu.Unlock()
		for _, b := range h.in.bound {
			if sl, ok := b.ln.(*sniffListener); ok {
				sl.mu.Lock()
				n := len(sl.pending)
				sl.mu.Unlock()
				if n > 0 {
					return true
				}
			}
		}
		return false
	})
	start := time.Now()
	h.shutdown()
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("shutdown took %v with a silent connection open", d)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Errorf("the silent connection was not closed: %v", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}
