package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control"
	ctlidentity "github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// TestIngressMeshedUpstream follows a request through the ingress as
// 'weft install' meshes it: --upstream=service dials the Mapping's service
// by name; the test's "DNS" gives the Service's ClusterIP and its
// "iptables" hand the connection to a real transparent weft proxy with
// the identity of the weft-ingress ServiceAccount (OriginalDst stands in
// for SO_ORIGINAL_DST). That proxy resolves the service through a real
// control plane and reaches the meshed pod's proxy over mTLS: the app
// learns the ingress's identity, and the ServiceProfile's retry hides a
// failed first attempt. Nothing reaches the ClusterIP itself (what
// kube-proxy would have balanced, unmeshed).
func TestIngressMeshedUpstream(t *testing.T) {
	const clusterIP = "127.0.0.10"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))

	// The control plane, with its CA.
	st := store.NewMemory()
	idDir := filepath.Join(t.TempDir(), "identity")
	cp, err := control.Listen(control.Config{Addr: "127.0.0.1:0", AdminAddr: "127.0.0.1:0", Store: st, Logger: logger,
		Identity: control.IdentityConfig{Dir: idDir}})
	if err != nil {
		t.Fatal(err)
	}
	cpDone := make(chan struct{})
	go func() { cp.Run(ctx); close(cpDone) }()
	defer func() { cancel(); <-cpDone }()
	tokenKey, err := ctlidentity.LoadOrCreateTokenKey(idDir)
	if err != nil {
		t.Fatal(err)
	}
	startProxy := func(ns, pod, sa string, cfg proxy.Config) *proxy.Proxy {
		t.Helper()
		tok, err := ctlidentity.MintToken(tokenKey, ctlidentity.Workload{Namespace: ns, ServiceAccount: sa, Pod: pod})
		if err != nil {
			t.Fatal(err)
		}
		tokFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokFile, tok, 0o600); err != nil {
			t.Fatal(err)
		}
		cfg.ControlAddr, cfg.OutboundAddr, cfg.AdminAddr = cp.Addr().String(), "127.0.0.1:0", "127.0.0.1:0"
		cfg.Namespace, cfg.Pod, cfg.ServiceAccount = ns, pod, sa
		cfg.ShutdownGrace, cfg.DiscoveryTimeout, cfg.Logger = 5*time.Second, 2*time.Second, logger
		cfg.Identity = &proxy.IdentityConfig{TokenFile: tokFile, AnchorsFile: filepath.Join(idDir, tlsid.AnchorsFile)}
		p, err := proxy.Listen(cfg)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		t.Cleanup(func() { cancel(); <-done })
		pollUntil(t, 10*time.Second, pod+"'s proxy ready", &syncBuffer{}, func() bool {
			resp, err := http.Get("http://" + p.AdminAddr() + "/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		return p
	}

	// The meshed app: it answers with the identity its proxy verified,
	// and fails the first /flaky request.
	var flaky atomic.Int64
	app := httptestServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/flaky" && flaky.Add(1) == 1 {
			http.Error(w, "first attempt fails", http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "app client-id=%s host=%s xfh=%s", r.Header.Get("l5d-client-id"), r.Host, r.Header.Get("X-Forwarded-Host"))
	})
	server := startProxy("shop", "web-abc-1", "web", proxy.Config{Inbound: []proxy.InboundPort{{Listen: "127.0.0.1:0", App: app}}})

	// What kube-proxy would reach at the ClusterIP, unmeshed.
	var direct atomic.Int64
	directLn, err := net.Listen("tcp", clusterIP+":0")
	if err != nil {
		t.Skipf("cannot listen on %s (no loopback /8 here): %v", clusterIP, err)
	}
	directSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		direct.Add(1)
		io.WriteString(w, "direct")
	})}
	go directSrv.Serve(directLn)
	defer directSrv.Close()
	svcPort, _ := strconv.Atoi(strings.TrimPrefix(directLn.Addr().String(), clusterIP+":"))

	// The Service, its meshed pod and EndpointSlice, its ServiceProfile.
	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "shop", "web"
	svc.Spec.Selector = map[string]string{"app": "web"}
	svc.Spec.ClusterIP, svc.Spec.ClusterIPs = clusterIP, []string{clusterIP}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: int32(svcPort), Protocol: corev1.ProtocolTCP}}
	pod := api.New(api.KindPod).(*corev1.Pod)
	pod.Namespace, pod.Name = "shop", "web-abc-1"
	pod.Labels = map[string]string{"app": "web"}
	pod.Annotations = map[string]string{"linkerd.io/proxy-version": "test"}
	pod.Spec.ServiceAccountName = "web"
	pod.Status.PodIP, pod.Status.Phase = "127.0.0.1", corev1.PodRunning
	ready, proto, portName := true, corev1.ProtocolTCP, "http"
	inbound := netip.MustParseAddrPort(server.InboundAddrs()[0])
	inPort := int32(inbound.Port())
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = "shop", "web-web-abc-1"
	es.Labels = map[string]string{discoveryv1.LabelServiceName: "web"}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef: &corev1.ObjectReference{Kind: "Pod", Namespace: "shop", Name: pod.Name}}}
	es.Ports = []discoveryv1.EndpointPort{{Name: &portName, Port: &inPort, Protocol: &proto}}
	objs := []api.Object{svc, pod, es}
	sp, err := api.Decode(strings.NewReader(fmt.Sprintf(`apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: web.shop.svc.cluster.local, namespace: shop}
spec:
  routes:
  - name: flaky
    condition: {method: GET, pathRegex: /flaky}
    isRetryable: true
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: web, namespace: shop}
spec: {hostname: "*", prefix: /web/, rewrite: /, service: "web:%d"}
`, svcPort)), "objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, append(objs, sp...)...); err != nil {
		t.Fatal(err)
	}

	// The ingress's own proxy: every connection its outbound listener
	// takes was, as far as it knows, redirected from the ClusterIP.
	ingressProxy := startProxy(install.DefaultNamespace, "weft-ingress-abc-1", install.IngressName, proxy.Config{
		OriginalDst: func(net.Conn) (netip.AddrPort, error) {
			return netip.MustParseAddrPort(directLn.Addr().String()), nil
		},
	})
	var mu sync.Mutex
	var dialed []string
	capture := func(ctx context.Context, network, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		if addr != fmt.Sprintf("web.shop.svc.cluster.local.:%d", svcPort) {
			return nil, fmt.Errorf("no such host %s", addr)
		}
		var d net.Dialer
		return d.DialContext(ctx, network, ingressProxy.OutboundAddr())
	}
	tr := ingress.NewTransportWith(ingress.TransportOptions{Transparent: true, Dial: capture})
	defer tr.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	in, err := ingress.New(ingress.Config{Store: st, Transport: tr, Address: "127.0.0.1", PortMap: map[int32]int{8080: 0},
		Namespace: install.DefaultNamespace, DrainTimeout: 5 * time.Second, Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	inDone := make(chan error, 1)
	go func() { inDone <- in.Run(ctx) }()
	defer func() { cancel(); <-inDone }()
	pollUntil(t, 10*time.Second, "the ingress ready", &syncBuffer{}, func() bool { return in.Ready() && in.Addrs()[8080] != "" })

	get := func(path string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+in.Addrs()[8080]+path, nil)
		req.Host = "shop.example"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	ingressID := tlsid.DefaultDomain.Name(install.DefaultNamespace, install.IngressName)
	want := fmt.Sprintf("app client-id=%s host=web.shop.svc.cluster.local:%d xfh=shop.example", ingressID, svcPort)
	if code, body := get("/web/"); code != 200 || body != want {
		t.Errorf("GET /web/: %d %q, want 200 %q (over mTLS, with the ingress's identity)", code, body, want)
	}
	if code, body := get("/web/flaky"); code != 200 || !strings.HasPrefix(body, "app client-id="+ingressID) {
		t.Errorf("GET /web/flaky: %d %q, want 200 after the ServiceProfile's retry", code, body)
	}
	if n := flaky.Load(); n != 2 {
		t.Errorf("the app saw /flaky %d times, want 2 (the failure, then the proxy's retry)", n)
	}
	if n := direct.Load(); n != 0 {
		t.Errorf("%d requests reached the ClusterIP directly, outside the mesh", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(dialed) == 0 {
		t.Error("the ingress dialed nothing through the capture")
	}
}

// httptestServer serves h on 127.0.0.1 until the test ends and returns
// its address.
func httptestServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}
