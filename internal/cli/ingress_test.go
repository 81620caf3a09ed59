package cli

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store/local"
)

// ingressLog is a goroutine-safe buffer for the command's stderr.
type ingressLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *ingressLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *ingressLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func ingressFreePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port
}

// ingressGet polls url until it answers want, or fails after a deadline.
func ingressGet(t *testing.T, url string, want int, stderr func() string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for {
		resp, err := http.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return string(b)
			}
			last = resp.Status + " " + string(b)
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s never answered %d (last: %s); stderr:\n%s", url, want, last, stderr())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func TestIngressServesStateDir(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "backend saw "+r.URL.Path)
	}))
	defer backend.Close()

	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	apply := func(manifest string) {
		t.Helper()
		objs, err := api.Decode(strings.NewReader(manifest), "test.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := st.Apply(context.Background(), objs...); err != nil {
			t.Fatal(err)
		}
	}
	apply(`
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec:
  port: 8080
  protocol: HTTP
  securityModel: XFP
  hostBinding: {namespace: {from: ALL}}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: face, namespace: faces}
spec:
  hostname: "*"
  prefix: /face/
  service: ` + backend.URL + `
`)

	port, admin := ingressFreePort(t), "127.0.0.1:"+ingressFreePort(t)
	accessPath := filepath.Join(t.TempDir(), "access.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut ingressLog
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"ingress", "--state-dir", dir, "--port-map", "8080=" + port, "--admin-addr", admin, "--access-log", accessPath}, strings.NewReader(""), io.Discard, &errOut)
	}()
	base := "http://127.0.0.1:" + port
	if got := ingressGet(t, base+"/face/x", 200, errOut.String); got != "backend saw /x" {
		t.Errorf("GET /face/x = %q", got)
	}
	ingressGet(t, "http://"+admin+"/ready", 200, errOut.String)
	if b, err := os.ReadFile(accessPath); err != nil || !strings.Contains(string(b), `"route":"faces/face"`) || !strings.Contains(string(b), `"status":200`) {
		t.Errorf("--access-log file: %q, %v", b, err)
	}

	// Another process (weft apply) adds a Mapping; the ingress follows.
	other, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	objs, err := api.Decode(strings.NewReader(`
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: keep, namespace: faces}
spec: {prefix: /keep/, rewrite: "", service: "`+backend.URL+`"}
`), "x.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	if got := ingressGet(t, base+"/keep/y", 200, errOut.String); got != "backend saw /keep/y" {
		t.Errorf("GET /keep/y = %q", got)
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("weft ingress exited %d; stderr:\n%s", c, errOut.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("weft ingress did not stop after its context ended")
	}
}

// TestIngressUpstreamMode: --upstream's default follows the store (an
// unmeshed ingress run by hand with --store=kube dials endpoints, as it
// did before the flag), an explicit mode wins, and --proxy needs none.
func TestIngressUpstreamMode(t *testing.T) {
	for _, tc := range []struct {
		upstream, proxy, store string
		want                   string
	}{
		{"", "", "local", upstreamService},
		{"", "", "kube", upstreamEndpoints},
		{"service", "", "kube", upstreamService},
		{"endpoints", "", "local", upstreamEndpoints},
		{"", "http://127.0.0.1:4140", "local", ""},
		{"", "http://127.0.0.1:4140", "kube", ""},
	} {
		o := ingressOptions{upstream: tc.upstream, proxy: tc.proxy, store: storeFlags{kind: tc.store}}
		got, err := o.upstreamMode()
		if err != nil || got != tc.want {
			t.Errorf("--upstream=%q --proxy=%q --store=%s: %q, %v; want %q", tc.upstream, tc.proxy, tc.store, got, err, tc.want)
		}
	}
}

func TestIngressFlagErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--port-map", "8080"}, "LISTENER_PORT=LOCAL_PORT"},
		{[]string{"--port-map", "8080=x"}, "local port"},
		{[]string{"--proxy", "127.0.0.1:4140"}, "want http://HOST:PORT"},
		{[]string{"--address", "not-an-ip"}, "want an IP address"},
		{[]string{"--log-level", "loud"}, "--log-level"},
		{[]string{"--access-log", "/nonexistent/dir/access.log"}, "--access-log"},
		{[]string{"--store", "etcd"}, `unknown --store "etcd"`},
		{[]string{"--store=kube"}, "--kubeconfig"},
		{[]string{"--store=kube", "--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
		{[]string{"--upstream", "dns"}, `--upstream "dns": want service`},
		{[]string{"--upstream=endpoints", "--proxy", "http://127.0.0.1:4140"}, "--upstream=endpoints and --proxy exclude each other"},
		{[]string{"--store=kube", "--upstream=service", "--proxy", "http://127.0.0.1:4140"}, "--upstream=service and --proxy exclude each other"},
	} {
		// Outside a cluster, with no kubeconfig from the environment.
		t.Setenv("KUBECONFIG", "")
		t.Setenv("KUBERNETES_SERVICE_HOST", "")
		t.Setenv("KUBERNETES_SERVICE_PORT", "")
		var errOut ingressLog
		args := append([]string{"ingress", "--state-dir", t.TempDir(), "--admin-addr", ""}, tc.args...)
		// Bounded: flags a regression accepts would start the ingress,
		// which must fail this case, not hang the package.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c := Run(ctx, args, strings.NewReader(""), io.Discard, &errOut)
		cancel()
		if c != 2 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("weft %v: exit %d, stderr %q; want exit 2 mentioning %q", args, c, errOut.String(), tc.want)
		}
	}
}

func TestIngressGatewayRouteStatusInGet(t *testing.T) {
	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	objs, err := api.Decode(strings.NewReader(`
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: edge, namespace: gw}
spec:
  gatewayClassName: weft
  listeners:
  - {name: http, port: 9090, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: shop}
spec:
  parentRefs: [{name: edge, namespace: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /web}}]
    backendRefs: [{name: web, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: new.example}}]
`), "gw.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(context.Background(), objs...); err != nil {
		t.Fatal(err)
	}
	port := ingressFreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var errOut ingressLog
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"ingress", "--state-dir", dir, "--port-map", "9090=" + port, "--admin-addr", ""}, strings.NewReader(""), io.Discard, &errOut)
	}()
	// The Gateway's listener is bound at its port, moved by --port-map.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := c.Get("http://127.0.0.1:" + port + "/moved/x")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 302 && resp.Header.Get("Location") == "http://new.example:9090/moved/x" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Gateway never redirected /moved/x; stderr:\n%s", errOut.String())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	var out strings.Builder
	for {
		out.Reset()
		var getErr ingressLog
		if c := Run(context.Background(), []string{"get", "httproute", "web", "-n", "shop", "-o", "yaml", "--state-dir", dir}, strings.NewReader(""), &out, &getErr); c != 0 {
			t.Fatalf("weft get: exit %d: %s", c, getErr.String())
		}
		s := out.String()
		if strings.Contains(s, "controllerName: weft.io/gateway-controller") && strings.Contains(s, "reason: Accepted") && strings.Contains(s, "reason: ResolvedRefs") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft get httproute -o yaml never showed the status:\n%s\nstderr:\n%s", s, errOut.String())
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	cancel()
	if c := <-code; c != 0 {
		t.Fatalf("weft ingress exited %d; stderr:\n%s", c, errOut.String())
	}
}

// The Faces workshop's last step, on real processes' code paths: 'weft
// ratelimit --workshop' and 'weft ingress --ratelimit-addr', with the
// workshop's RateLimitService and face Mapping labels.
func TestIngressRateLimitedByWeftRatelimit(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "face")
	}))
	defer backend.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rlsAddr := "127.0.0.1:" + ingressFreePort(t)
	var rlsErr ingressLog
	rlsDone := make(chan int, 1)
	go func() {
		rlsDone <- Run(ctx, []string{"ratelimit", "--workshop", "--addr", rlsAddr, "--admin-addr", ""}, strings.NewReader(""), io.Discard, &rlsErr)
	}()

	dir := t.TempDir()
	st, err := local.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	objs, err := api.Decode(strings.NewReader(`
apiVersion: getambassador.io/v3alpha1
kind: Listener
metadata: {name: http, namespace: weft}
spec: {port: 8080, protocol: HTTP, securityModel: XFP, hostBinding: {namespace: {from: ALL}}}
---
apiVersion: getambassador.io/v3alpha1
kind: RateLimitService
metadata: {name: ratelimit, namespace: emissary}
spec: {service: "ratelimit.emissary:8081", protocol_version: v3, domain: emissary, failure_mode_deny: false, timeout_ms: 1000}
---
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: face, namespace: faces}
spec:
  hostname: "*"
  prefix: /face/
  service: `+backend.URL+`
  labels:
    emissary:
      - request_label_group:
        - x-emissary-test-allow: null
          generic_key: {key: mykey, value: myvalue}
`), "workshop.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Apply(ctx, objs...); err != nil {
		t.Fatal(err)
	}
	port := ingressFreePort(t)
	var errOut ingressLog
	code := make(chan int, 1)
	go func() {
		code <- Run(ctx, []string{"ingress", "--state-dir", dir, "--port-map", "8080=" + port, "--admin-addr", "", "--ratelimit-addr", rlsAddr}, strings.NewReader(""), io.Discard, &errOut)
	}()
	url := "http://127.0.0.1:" + port + "/face/"
	stderr := func() string { return errOut.String() + "\nratelimit:\n" + rlsErr.String() }
	ingressGet(t, url, 200, stderr)
	// 30 quick requests span at most a few one-second windows of 8: some
	// must be limited, answered as Envoy does.
	var ok, limited int
	for range 30 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case 200:
			ok++
		case 429:
			limited++
			if resp.Header.Get("X-Envoy-Ratelimited") != "true" {
				t.Errorf("429 without x-envoy-ratelimited: %v", resp.Header)
			}
		default:
			t.Fatalf("status %d; stderr:\n%s", resp.StatusCode, stderr())
		}
	}
	if limited == 0 || ok < 7 {
		t.Errorf("%d passed, %d limited; want some of each (8 per second)\n%s", ok, limited, stderr())
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("weft ingress exited %d:\n%s", c, errOut.String())
	}
	<-rlsDone
}
