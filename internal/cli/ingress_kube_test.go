package cli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/weft-mesh/weft/internal/ingress"
	"github.com/weft-mesh/weft/internal/install"
)

// TestIngressKubeStore runs 'weft ingress' with the arguments of the
// Deployment 'weft install' renders, against a real API server (--store=kube
// --kubeconfig), authenticated as the install's weft-ingress ServiceAccount
// so that its RBAC is what is tested. A Listener and a Mapping applied to
// the API route a request to a local backend through the Service's
// EndpointSlice; a Mapping changed through the API takes effect; an
// HTTPRoute gets Accepted written to its status, and the installed
// GatewayClass weft Accepted (another controller's class and Gateway are
// left alone); the ingress keeps serving
// while the API server is down and follows changes once it is back; it
// stops cleanly.
func TestIngressKubeStore(t *testing.T) {
	c, o := installedCluster(t)
	wcert := installTestdata(t, "webhook", "tls.crt")

	// The API server refuses loopback endpoints: the backends listen on
	// this machine's first other address.
	ip := localNonLoopbackIP(t)
	v1Port, v2Port := kubeBackend(t, ip, "v1"), kubeBackend(t, ip, "v2")
	c.ApplyYAML(t, []byte(`
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: web2, namespace: shop}
spec: {ports: [{name: http, port: 80}]}
---
`+endpointSliceYAML("shop", "web-1", "web", ip, v1Port)+`
---
`+endpointSliceYAML("shop", "web2-1", "web2", ip, v2Port)+`
---
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
`+mappingYAML("web")+`
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: weft}
spec:
  gatewayClassName: weft
  listeners: [{name: http, port: 9090, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: other}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: foreign, namespace: weft}
spec:
  gatewayClassName: other
  listeners: [{name: http, port: 9191, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: api, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: weft}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: web, port: 80}]
`))

	// The rendered Deployment's arguments, on local ports.
	var dep *appsv1.Deployment
	for _, obj := range install.Objects(o) {
		if d, ok := obj.(*appsv1.Deployment); ok && d.Name == install.IngressName {
			dep = d
		}
	}
	if dep == nil {
		t.Fatal("no ingress Deployment rendered")
	}
	pod := dep.Spec.Template.Spec
	var container *corev1.Container
	for i := range pod.Containers {
		if pod.Containers[i].Name == install.IngressName {
			container = &pod.Containers[i]
		}
	}
	if container == nil {
		t.Fatalf("the ingress Deployment has no %s container", install.IngressName)
	}
	admin, listenerAddr, gatewayAddr, httpsAddr := freeAddr(t), freeAddr(t), freeAddr(t), freeAddr(t)
	var args []string
	sawUpstream := false
	for _, a := range container.Args {
		switch {
		case strings.HasPrefix(a, "--admin-addr="):
			a = "--admin-addr=" + admin
		case strings.HasPrefix(a, "--address="):
			a = "--address=127.0.0.1"
		case a == "--upstream=service":
			// The installed ingress is meshed: it dials services by
			// their cluster DNS names and its sidecar captures them
			// (iptables). This test has neither cluster DNS nor
			// iptables nor a sidecar, so it runs the same ingress
			// unmeshed, dialing the EndpointSlices' endpoints itself.
			a = "--upstream=endpoints"
			sawUpstream = true
		}
		args = append(args, a)
	}
	if !sawUpstream {
		t.Fatalf("the ingress Deployment does not run --upstream=service: %q", container.Args)
	}
	sa := "system:serviceaccount:" + install.DefaultNamespace + ":" + pod.ServiceAccountName
	kubeconfig := c.WriteKubeconfig(t, "weft-ingress", c.UserConfig(t, sa, "system:serviceaccounts", "system:serviceaccounts:"+install.DefaultNamespace, "system:authenticated"))
	args = append(args, "--kubeconfig="+kubeconfig, "--drain-timeout=5s",
		"--port-map=8080="+portOf(t, listenerAddr), "--port-map=9090="+portOf(t, gatewayAddr), "--port-map=8443="+portOf(t, httpsAddr))
	if !strings.Contains(strings.Join(args, " "), "--store=kube") {
		t.Fatalf("the ingress Deployment does not run --store=kube: %q", container.Args)
	}

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() { code <- Run(ctx, args, strings.NewReader(""), io.Discard, &errOut) }()
	pollUntil(t, 30*time.Second, "weft ingress ready", &errOut, func() bool {
		select {
		case c := <-code:
			t.Fatalf("weft %s exited %d: %s", strings.Join(args, " "), c, errOut.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	client := &http.Client{Timeout: 5 * time.Second}
	defer client.CloseIdleConnections()
	routesTo := func(url, want string) func() bool {
		return func() bool {
			resp, err := client.Get(url)
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return resp.StatusCode == http.StatusOK && string(b) == want
		}
	}
	webURL := "http://" + listenerAddr + "/web/"
	pollUntil(t, 10*time.Second, "the Mapping to reach backend v1", &errOut, routesTo(webURL, "v1"))

	// A Mapping changed through the API takes effect.
	c.ApplyYAML(t, []byte(mappingYAML("web2")))
	pollUntil(t, 10*time.Second, "the changed Mapping to reach backend v2", &errOut, routesTo(webURL, "v2"))

	// Gateway API: routed, and Accepted written to the HTTPRoute's status
	// in the API server.
	pollUntil(t, 10*time.Second, "the HTTPRoute to reach backend v1", &errOut, routesTo("http://"+gatewayAddr+"/api", "v1"))
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	routes := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}).Namespace("shop")
	pollUntil(t, 10*time.Second, "HTTPRoute shop/api's Accepted condition", &errOut, func() bool {
		r, err := routes.Get(ctx, "api", metav1.GetOptions{})
		if err != nil {
			return false
		}
		return routeCondition(r, ingress.ControllerName, "Accepted") == "True"
	})
	gateways := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gateways"}).Namespace("weft")
	pollUntil(t, 10*time.Second, "Gateway weft/edge's Programmed condition", &errOut, func() bool {
		g, err := gateways.Get(ctx, "edge", metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(g.Object, "status", "conditions")
		return conditionStatus(conds, "Programmed") == "True"
	})
	// The GatewayClass 'weft install' created is Accepted, for its
	// generation; another controller's class, and its Gateway, are left
	// alone (they would have been written in the same pass as edge's).
	classes := dyn.Resource(schema.GroupVersionResource{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"})
	pollUntil(t, 10*time.Second, "GatewayClass weft's Accepted condition", &errOut, func() bool {
		gc, err := classes.Get(ctx, ingress.GatewayClassName, metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(gc.Object, "status", "conditions")
		for _, c := range conds {
			if cm, ok := c.(map[string]any); ok && cm["type"] == "Accepted" {
				return cm["status"] == "True" && cm["observedGeneration"] == gc.GetGeneration()
			}
		}
		return false
	})
	if gc, err := classes.Get(ctx, "other", metav1.GetOptions{}); err != nil {
		t.Error(err)
	} else if conds, _, _ := unstructured.NestedSlice(gc.Object, "status", "conditions"); conditionStatus(conds, "Accepted") != "Unknown" {
		t.Errorf("another controller's GatewayClass was given status: %v", conds)
	}
	if g, err := gateways.Get(ctx, "foreign", metav1.GetOptions{}); err != nil {
		t.Error(err)
	} else if conds, _, _ := unstructured.NestedSlice(g.Object, "status", "conditions"); conditionStatus(conds, "Programmed") != "" && conditionStatus(conds, "Programmed") != "Unknown" {
		t.Errorf("a Gateway of another controller's class was given status: %v", conds)
	}

	// Up to here the RBAC 'weft install' grants was enough. (Right after
	// the restart below, a new API server refuses everyone for a moment,
	// until its own RBAC cache has synced.)
	if strings.Contains(errOut.String(), "forbidden") {
		t.Errorf("RBAC refused the ingress something:\n%s", errOut.String())
	}

	// The API server goes away: the last configuration keeps serving.
	// Once it is back, the informers list and watch again and a change
	// made then takes effect.
	c.StopAPIServer()
	for range 3 {
		if !routesTo(webURL, "v2")() {
			t.Fatalf("with the API server down, %s no longer reaches v2; stderr:\n%s", webURL, errOut.String())
		}
	}
	c.StartAPIServer(t)
	c.ApplyYAML(t, []byte(mappingYAML("web")))
	pollUntil(t, 45*time.Second, "a Mapping changed after the API server's restart to reach v1", &errOut, routesTo(webURL, "v1"))

	// HTTPS: a Host's tlsSecret is read from the API (the webhook test
	// certificate, self-signed, names weft-proxy-injector.weft.svc).
	const tlsName = "weft-proxy-injector.weft.svc"
	var docs []string
	for _, d := range []map[string]any{
		{"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "shop-cert", "namespace": "weft"},
			"type": "kubernetes.io/tls", "stringData": map[string]any{"tls.crt": string(wcert), "tls.key": string(installTestdata(t, "webhook", "tls.key"))}},
		{"apiVersion": "getambassador.io/v3alpha1", "kind": "Listener", "metadata": map[string]any{"name": "https", "namespace": "weft"},
			"spec": map[string]any{"port": 8443, "protocol": "HTTPS", "securityModel": "XFP", "hostBinding": map[string]any{"namespace": map[string]any{"from": "ALL"}}}},
		{"apiVersion": "getambassador.io/v3alpha1", "kind": "Host", "metadata": map[string]any{"name": "shop", "namespace": "weft"},
			"spec": map[string]any{"hostname": tlsName, "tlsSecret": map[string]any{"name": "shop-cert"}}},
	} {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	c.ApplyYAML(t, []byte(strings.Join(docs, "\n---\n")))
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(wcert) {
		t.Fatal("bad test certificate")
	}
	tlsClient := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: tlsName}}}
	defer tlsClient.CloseIdleConnections()
	pollUntil(t, 10*time.Second, "HTTPS with the Host's Secret to reach v1", &errOut, func() bool {
		req, err := http.NewRequest(http.MethodGet, "https://"+httpsAddr+"/web/", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tlsName
		resp, err := tlsClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "v1"
	})

	stop()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("weft ingress exited %d: %s", c, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("weft ingress did not stop after its context ended")
	}
}

// kubeBackend is an HTTP server on ip answering its name; it returns its
// port.
func kubeBackend(t *testing.T, ip, name string) int {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().(*net.TCPAddr).Port
}

// localNonLoopbackIP is an IPv4 address of this machine that an
// EndpointSlice may hold (not loopback or link-local); the test is skipped
// on a machine with none.
func localNonLoopbackIP(t *testing.T) string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip := n.IP.To4(); ip != nil && !ip.IsLoopback() && !ip.IsLinkLocalUnicast() {
				return ip.String()
			}
		}
	}
	t.Skip("no non-loopback IPv4 address on this machine for the backends' EndpointSlices (the API server refuses 127.0.0.0/8)")
	return ""
}

// endpointSliceYAML is an EndpointSlice of service with one ready endpoint
// at ip:port, named like the Service port "http".
func endpointSliceYAML(ns, name, service, ip string, port int) string {
	return fmt.Sprintf(`apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: %s, namespace: %s, labels: {kubernetes.io/service-name: %s}}
addressType: IPv4
endpoints: [{addresses: [%s], conditions: {ready: true}}]
ports: [{name: http, port: %d, protocol: TCP}]`, name, ns, service, ip, port)
}

func mappingYAML(service string) string {
	return `apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: web, namespace: shop}
spec: {hostname: "*", prefix: /web/, service: ` + service + `}`
}

func portOf(t *testing.T, addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := strconv.Atoi(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// routeCondition returns the status of condition typ in the route's
// status.parents entry of controller, or "".
func routeCondition(r *unstructured.Unstructured, controller, typ string) string {
	parents, _, _ := unstructured.NestedSlice(r.Object, "status", "parents")
	for _, p := range parents {
		pm, ok := p.(map[string]any)
		if !ok || pm["controllerName"] != controller {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(pm, "conditions")
		return conditionStatus(conds, typ)
	}
	return ""
}

func conditionStatus(conds []any, typ string) string {
	for _, c := range conds {
		if cm, ok := c.(map[string]any); ok && cm["type"] == typ {
			s, _ := cm["status"].(string)
			return s
		}
	}
	return ""
}
