package proxy_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// The ClusterIP test's addresses. The "ClusterIP" is a loopback address
// where a stand-in for kube-proxy answers as "direct": what reaches it
// went straight to the ClusterIP, unmeshed. What reaches the Service's
// endpoint went through the mesh. Client "apps" dial the client proxy's
// outbound listener from their own source addresses, and the proxy's
// OriginalDst maps each source to the destination that app dialed, as
// SO_ORIGINAL_DST would behind iptables.
const (
	cipService = "127.0.0.10" // web's ClusterIP
	cipHTTP    = "127.0.0.2"  // app dialing ClusterIP:80, HTTP
	cipOpaque  = "127.0.0.3"  // app dialing ClusterIP:9000, opaque TCP
	cipNoPort  = "127.0.0.4"  // app dialing ClusterIP:81, a port web lacks
	cipNoHost  = "127.0.0.5"  // app dialing ClusterIP:80, HTTP/1.0 without Host
	cipH2      = "127.0.0.6"  // app dialing ClusterIP:80, h2c with an IP :authority
	cipVHost   = "127.0.0.7"  // app dialing ClusterIP:80 with a Host that names no service
)

// TestTransparentClusterIP: in transparent mode, connections to a
// Service's ClusterIP are meshed as if the app had named the Service:
// HTTP with an IP Host is balanced over the Service's endpoint over mTLS
// (the app learns the client's identity, metrics say tls="true" and the
// Service's authority, the same series a request by name counts on) with
// the ServiceProfile's retry applied; opaque TCP reaches the endpoint over
// mTLS. A port the Service lacks goes to the ClusterIP itself.
func TestTransparentClusterIP(t *testing.T) {
	e := newMeshEnv(t, time.Hour)
	var flaky atomic.Int64
	app := backend(t, "web", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky" && flaky.Add(1) == 1 {
			http.Error(w, "first attempt fails", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "endpoint host=%s client-id=%s", r.Host, r.Header.Get("l5d-client-id"))
	})
	server := e.startProxy(t, "ns", "web-abc-1", "web", app, lineEcho(t, "127.0.0.1:0", "endpoint"))
	for _, port := range []string{"80", "81", "9000"} {
		direct := cipService + ":" + port
		if port == "9000" {
			lineEcho(t, direct, "direct")
			continue
		}
		directHTTP(t, direct)
	}
	registerClusterIPService(t, e, server.InboundAddrs())

	dsts := map[string]netip.AddrPort{
		cipHTTP:   netip.MustParseAddrPort(cipService + ":80"),
		cipOpaque: netip.MustParseAddrPort(cipService + ":9000"),
		cipNoPort: netip.MustParseAddrPort(cipService + ":81"),
		cipNoHost: netip.MustParseAddrPort(cipService + ":80"),
		cipH2:     netip.MustParseAddrPort(cipService + ":80"),
		cipVHost:  netip.MustParseAddrPort(cipService + ":80"),
	}
	client := startTransparentProxy(t, e, "ns", "gui-def-1", "gui", func(c net.Conn) (netip.AddrPort, error) {
		src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		if dst, ok := dsts[src]; ok {
			return dst, nil
		}
		return netip.AddrPort{}, fmt.Errorf("not redirected: %s", src)
	})
	clientID, serverID := e.name("ns", "gui"), e.name("ns", "web")
	fromHTTP := appClient(t, cipHTTP, client.OutboundAddr())

	// The control plane may not have the Service yet: wait until the
	// ClusterIP resolves (before that the request goes direct).
	waitFor(t, "the ClusterIP to resolve to web", func() error {
		resp, body := get(t, fromHTTP, "http://"+cipService+"/")
		if want := "endpoint host=" + cipService + " client-id=" + clientID; resp.StatusCode != 200 || body != want {
			return fmt.Errorf("%d %q, want 200 %q", resp.StatusCode, body, want)
		}
		return nil
	})

	// The profile's retry: the first attempt fails, the client sees the
	// second.
	if resp, body := get(t, fromHTTP, "http://"+cipService+"/flaky"); resp.StatusCode != 200 || flaky.Load() != 2 {
		t.Errorf("retryable route through the ClusterIP: %d %q after %d attempts, want 200 after 2", resp.StatusCode, body, flaky.Load())
	}
	// Without a Host, and over HTTP/2, the same.
	if got := http10NoHost(t, cipNoHost, client.OutboundAddr()); !strings.HasPrefix(got, "HTTP/1.0 200 OK") || !strings.HasSuffix(got, "client-id="+clientID) {
		t.Errorf("HTTP/1.0 without Host to the ClusterIP: %q, want 200 from the endpoint over mTLS", got)
	}
	h2 := appClient(t, cipH2, client.OutboundAddr())
	h2.Transport.(*http.Transport).Protocols = new(http.Protocols)
	h2.Transport.(*http.Transport).Protocols.SetUnencryptedHTTP2(true)
	if resp, body := get(t, h2, "http://"+cipService+"/"); resp.StatusCode != 200 || resp.Proto != "HTTP/2.0" || !strings.HasSuffix(body, "client-id="+clientID) {
		t.Errorf("h2c to the ClusterIP: %s %d %q, want HTTP/2.0 200 from the endpoint over mTLS", resp.Proto, resp.StatusCode, body)
	}
	// A virtual host Destination does not know (a rewritten name, an
	// external vhost): the ClusterIP the app dialed still meshes it, and
	// the endpoint sees the Host as sent.
	if resp, body := get(t, appClient(t, cipVHost, client.OutboundAddr()), "http://www.example.com/"); resp.StatusCode != 200 || body != "endpoint host=www.example.com client-id="+clientID {
		t.Errorf("unknown Host to the ClusterIP: %d %q, want 200 from the endpoint over mTLS", resp.StatusCode, body)
	}
	// A request by name counts on the same series.
	if resp, body := get(t, proxyClient(client), "http://web.ns.svc.cluster.local/"); resp.StatusCode != 200 {
		t.Errorf("by name: %d %q", resp.StatusCode, body)
	}
	// A port the Service lacks: straight to the ClusterIP.
	if resp, body := get(t, appClient(t, cipNoPort, client.OutboundAddr()), "http://"+cipService+":81/"); resp.StatusCode != 200 || body != "direct" {
		t.Errorf("ClusterIP:81: %d %q, want 200 \"direct\"", resp.StatusCode, body)
	}

	// Opaque TCP to ClusterIP:9000 reaches the endpoint's echo.
	if got := echoLine(t, cipOpaque, client.OutboundAddr(), "hello"); got != "endpoint hello" {
		t.Errorf("opaque TCP to the ClusterIP: got %q, want %q", got, "endpoint hello")
	}

	m := metricsText(t, client)
	byService := `authority="web.ns.svc.cluster.local:80"`
	tls := `tls="true",server_id="` + serverID + `"`
	var counted bool
	for _, l := range strings.Split(grepLines(m, "request_total{direction=\"outbound\""), "\n") {
		if strings.HasPrefix(l, "request_total{") && strings.Contains(l, byService) && strings.Contains(l, tls) {
			// 1 by name, 1 /flaky, 1 HTTP/1.0, 1 h2c, at least 1 / while waiting.
			if n := lineValue(l); n < 5 {
				t.Errorf("request_total by the Service's authority = %v, want >= 5: %s", n, l)
			}
			counted = true
		}
		if strings.Contains(l, `authority="`+cipService+`:80"`) {
			t.Errorf("a request to the ClusterIP was counted under its address: %s", l)
		}
	}
	if !counted {
		t.Errorf("no outbound request_total with %s and %s:\n%s", byService, tls, grepLines(m, "request_total"))
	}
	for _, want := range []string{
		`rt_route="flaky",status_code="500",classification="failure"`,
		`outbound_http_route_retry_successes_total{`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("client metrics lack %s:\n%s", want, grepLines(m, "route"))
		}
	}
	// The opaque connection, like the HTTP ones, arrived over mTLS from
	// the client: every inbound connection is counted under its identity.
	var conns float64
	for _, l := range strings.Split(grepLines(metricsText(t, server), `tcp_open_total{direction="inbound"`), "\n") {
		if lineValue(l) > 0 && !strings.Contains(l, `tls="true",client_id="`+clientID+`"`) {
			t.Errorf("server inbound connection without mTLS from the client: %s", l)
		}
		conns += lineValue(l)
	}
	if conns < 2 {
		t.Errorf("server inbound tcp_open_total = %v, want >= 2 (HTTP and opaque)", conns)
	}
}

// registerClusterIPService publishes Service ns/web (ClusterIP
// cipService; port 80 "http" and 9000 "tcp") with its ServiceProfile and
// its one meshed pod, whose inbound ports are inbound[0] (http) and
// inbound[1] (tcp).
func registerClusterIPService(t *testing.T, e *meshEnv, inbound []string) {
	t.Helper()
	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "ns", "web"
	svc.Spec.Selector = map[string]string{"app": "web"}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = cipService, []string{cipService}
	svc.Spec.Ports = []corev1.ServicePort{
		{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
		{Name: "tcp", Port: 9000, TargetPort: intstr.FromInt32(9000), Protocol: corev1.ProtocolTCP},
	}
	pod := api.New(api.KindPod).(*corev1.Pod)
	pod.Namespace, pod.Name = "ns", "web-abc-1"
	pod.Labels = map[string]string{"app": "web"}
	pod.Annotations = map[string]string{"linkerd.io/proxy-version": "test"}
	pod.Spec.ServiceAccountName = "web"
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.Phase = corev1.PodRunning

	ready, proto := true, corev1.ProtocolTCP
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = "ns", "web-web-abc-1"
	es.Labels = map[string]string{discoveryv1.LabelServiceName: "web", discoveryv1.LabelManagedBy: "weft-supervisor"}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = []discoveryv1.Endpoint{{
		Addresses:  []string{"127.0.0.1"},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "ns", Name: pod.Name},
	}}
	for i, name := range []string{"http", "tcp"} {
		ap := netip.MustParseAddrPort(inbound[i])
		port := int32(ap.Port())
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: &name, Port: &port, Protocol: &proto})
	}

	sp, err := api.Decode(strings.NewReader(`apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: web.ns.svc.cluster.local
  namespace: ns
spec:
  routes:
  - name: flaky
    condition: {method: GET, pathRegex: /flaky}
    isRetryable: true
`), "web-profile.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := e.store.Apply(context.Background(), append([]api.Object{svc, pod, es}, sp...)...); err != nil {
		t.Fatalf("apply: %v", err)
	}
}

// startTransparentProxy runs a proxy with the identity of ns/sa whose
// outbound listener takes origDst's original destinations.
func startTransparentProxy(t *testing.T, e *meshEnv, ns, pod, sa string, origDst func(net.Conn) (netip.AddrPort, error)) *running {
	t.Helper()
	tok, err := identity.MintToken(e.tokenKey, identity.Workload{Namespace: ns, ServiceAccount: sa, Pod: pod})
	if err != nil {
		t.Fatal(err)
	}
	tokFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokFile, tok, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(e.addr, ns, pod)
	cfg.ServiceAccount = sa
	cfg.DiscoveryTimeout = 2 * time.Second
	cfg.Identity = &proxy.IdentityConfig{TokenFile: tokFile, AnchorsFile: filepath.Join(e.dir, tlsid.AnchorsFile)}
	cfg.OriginalDst = origDst
	return runProxy(t, cfg)
}

// appClient is an app on source address src whose every connection the
// "iptables" of the test send to the proxy's outbound listener.
func appClient(t *testing.T, src, outbound string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testTimeout}
	tr := &http.Transport{
		DialContext:        func(ctx context.Context, _, _ string) (net.Conn, error) { return d.DialContext(ctx, "tcp", outbound) },
		DisableCompression: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// http10NoHost sends an HTTP/1.0 GET without Host from src to the
// outbound listener and returns the response's status line and body.
func http10NoHost(t *testing.T, src, outbound string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testTimeout}
	c, err := d.Dial("tcp", outbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("HTTP/1.0 through the proxy: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Proto + " " + resp.Status + " " + string(b)
}

// echoLine sends line over a new connection from src to the outbound
// listener and returns the line that comes back.
func echoLine(t *testing.T, src, outbound, line string) string {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: testTimeout}
	c, err := d.Dial("tcp", outbound)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	fmt.Fprintln(c, line)
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("echo through the proxy: %v (got %q)", err, got)
	}
	return strings.TrimSpace(got)
}

// directHTTP stands in for kube-proxy at a ClusterIP:port: it answers
// "direct", so a request that was not meshed shows.
func directHTTP(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "direct") })}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
}

// lineValue is the value of a Prometheus text line.
func lineValue(l string) float64 {
	var v float64
	fmt.Sscan(l[strings.LastIndexByte(l, ' ')+1:], &v)
	return v
}
