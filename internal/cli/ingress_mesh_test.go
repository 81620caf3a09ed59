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

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control"
	ctlidentity "github.com/weft-mesh/weft/internal/control/identity"
	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/install"
	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/ratelimit"
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
// kube-proxy would have balanced, unmeshed). The rate limit service
// (unmeshed, as installed) is reached through the same proxy by its
// Service name over gRPC, and limits.
func TestIngressMeshedUpstream(t *testing.T) {
	// ClusterIPs, and the source addresses the test's "iptables" tell
	// apart the ingress's connections by (OriginalDst).
	const clusterIP, rlsClusterIP = "127.0.0.10", "127.0.0.11"
	const webSrc, rlsSrc = "127.0.0.2", "127.0.0.3"
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
	// The rate limit service, unmeshed, behind Service weft-ratelimit.
	rlsAddr := freeAddr(t)
	var rlsErr syncBuffer
	rlsDone := make(chan int, 1)
	go func() {
		rlsDone <- Run(ctx, []string{"ratelimit", "--workshop", "--addr", rlsAddr, "--admin-addr", ""}, strings.NewReader(""), io.Discard, &rlsErr)
	}()
	defer func() { cancel(); <-rlsDone }()
	rlsSvc := api.New(api.KindService).(*corev1.Service)
	rlsSvc.Namespace, rlsSvc.Name = install.DefaultNamespace, install.RatelimitName
	rlsSvc.Spec.ClusterIP, rlsSvc.Spec.ClusterIPs = rlsClusterIP, []string{rlsClusterIP}
	rlsSvc.Spec.Ports = []corev1.ServicePort{{Name: "grpc", Port: install.RatelimitPort, Protocol: corev1.ProtocolTCP}}
	rlsPort := int32(netip.MustParseAddrPort(rlsAddr).Port())
	grpcName := "grpc"
	rlsSlice := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	rlsSlice.Namespace, rlsSlice.Name = install.DefaultNamespace, install.RatelimitName+"-1"
	rlsSlice.Labels = map[string]string{discoveryv1.LabelServiceName: install.RatelimitName}
	rlsSlice.AddressType = discoveryv1.AddressTypeIPv4
	rlsSlice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}
	rlsSlice.Ports = []discoveryv1.EndpointPort{{Name: &grpcName, Port: &rlsPort, Protocol: &proto}}
	objs := []api.Object{svc, pod, es, rlsSvc, rlsSlice}
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
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {name: ratelimit, namespace: emissary}
spec: {service: "ratelimit.emissary:8081", protocol_version: v3, domain: emissary, failure_mode_deny: false, timeout_ms: 1000}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: limited, namespace: shop}
spec:
  hostname: "*"
  prefix: /limited/
  rewrite: /
  service: "web:%d"
  labels:
    emissary:
      - request_label_group:
        - x-emissary-test-allow: null
          generic_key: {key: mykey, value: myvalue}
`, svcPort, svcPort)), "objects.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, append(objs, sp...)...); err != nil {
		t.Fatal(err)
	}

	// The ingress's own proxy: the connections its outbound listener
	// takes were, as far as it knows, redirected from the ClusterIPs.
	rlsDst := netip.AddrPortFrom(netip.MustParseAddr(rlsClusterIP), install.RatelimitPort)
	ingressProxy := startProxy(install.DefaultNamespace, "weft-ingress-abc-1", install.IngressName, proxy.Config{
		OriginalDst: func(c net.Conn) (netip.AddrPort, error) {
			src, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			switch src {
			case webSrc:
				return netip.MustParseAddrPort(directLn.Addr().String()), nil
			case rlsSrc:
				return rlsDst, nil
			}
			return netip.AddrPort{}, fmt.Errorf("no original destination for %s", src)
		},
	})
	// "DNS" and "iptables": the names the ingress dials become
	// connections to its proxy from the source the destination is told
	// by.
	var mu sync.Mutex
	var dialed []string
	capture := func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		dialed = append(dialed, addr)
		mu.Unlock()
		src := ""
		switch addr {
		case fmt.Sprintf("web.shop.svc.cluster.local.:%d", svcPort):
			src = webSrc
		case fmt.Sprintf("%s.%s.svc.cluster.local:%d", install.RatelimitName, install.DefaultNamespace, install.RatelimitPort):
			src = rlsSrc
		default:
			return nil, fmt.Errorf("no such host %s", addr)
		}
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		return d.DialContext(ctx, "tcp", ingressProxy.OutboundAddr())
	}
	tr := ingress.NewTransportWith(ingress.TransportOptions{Transparent: true,
		Dial: func(ctx context.Context, _, addr string) (net.Conn, error) { return capture(ctx, addr) }})
	defer tr.(interface{ CloseIdleConnections() }).CloseIdleConnections()
	// The rate limit client as 'weft ingress --ratelimit-addr' makes it
	// (the installed address), its connection captured likewise.
	pool := ratelimit.NewPool(ratelimit.ClientOptions{Timeout: -1, DialOptions: []grpc.DialOption{grpc.WithContextDialer(capture)}})
	defer pool.Close()
	limiter := ingressRateLimiter{pool: pool, addr: fmt.Sprintf("%s.%s.svc.cluster.local:%d", install.RatelimitName, install.DefaultNamespace, install.RatelimitPort)}
	in, err := ingress.New(ingress.Config{Store: st, Transport: tr, Address: "127.0.0.1", PortMap: map[int32]int{8080: 0},
		Namespace: install.DefaultNamespace, DrainTimeout: 5 * time.Second, Logger: logger, RateLimiter: limiter})
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
	// 30 quick requests span at most a few one-second windows of the
	// workshop's 8: some are limited, so the rate limit service answered
	// through the proxy (the ingress fails open when it cannot reach it).
	var ok, limited int
	for range 30 {
		switch code, body := get("/limited/"); code {
		case 200:
			ok++
		case 429:
			limited++
		default:
			t.Fatalf("GET /limited/: %d %q\nratelimit:\n%s", code, body, rlsErr.String())
		}
	}
	if limited == 0 || ok < 7 {
		t.Errorf("%d passed, %d limited; want some of each (8 a second), the rate limit service reached through the proxy", ok, limited)
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
