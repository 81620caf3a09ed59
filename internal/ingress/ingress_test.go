package ingress

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

// meshProxy stands in for the ingress's sidecar: an HTTP proxy that takes
// absolute-form requests for mesh authorities and forwards them to test
// backends, answering as Linkerd's proxy does when it cannot.
type meshProxy struct {
	srv *httptest.Server

	mu       sync.Mutex
	backends map[string]string // authority -> backend host:port
	seen     []string          // request URIs as received
	override []string          // l5d-dst-override values
}

func newMeshProxy(t *testing.T) *meshProxy {
	p := &meshProxy{backends: map[string]string{}}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *meshProxy) route(authority, backend string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.backends[authority] = backend
}

func (p *meshProxy) requests() (uris, overrides []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...), append([]string(nil), p.override...)
}

func (p *meshProxy) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		p.tunnel(w, r)
		return
	}
	if !strings.HasPrefix(r.RequestURI, "http://") {
		http.Error(w, "test mesh proxy: want an absolute-form request, got "+r.RequestURI, http.StatusBadRequest)
		return
	}
	p.mu.Lock()
	p.seen = append(p.seen, r.RequestURI)
	p.override = append(p.override, r.Header.Get("L5d-Dst-Override"))
	backend, ok := p.backends[r.URL.Host]
	p.mu.Unlock()
	if !ok {
		w.Header().Set("L5d-Proxy-Error", "no endpoints for "+r.URL.Host)
		http.Error(w, "no endpoints", http.StatusServiceUnavailable)
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: backend})
			// Pass the ingress's forwarding headers through untouched.
			for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"} {
				pr.Out.Header[k] = pr.In.Header[k]
			}
		},
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			w.Header().Set("L5d-Proxy-Error", "connect failed: "+err.Error())
			w.WriteHeader(http.StatusBadGateway)
		},
	}
	rp.ServeHTTP(w, r)
}

// tunnel serves CONNECT to a known authority by splicing bytes.
func (p *meshProxy) tunnel(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, "CONNECT "+r.Host)
	backend, ok := p.backends[r.Host]
	p.mu.Unlock()
	if !ok {
		w.Header().Set("L5d-Proxy-Error", "no endpoints for "+r.Host)
		http.Error(w, "no endpoints", http.StatusServiceUnavailable)
		return
	}
	up, err := net.Dial("tcp", backend)
	if err != nil {
		w.Header().Set("L5d-Proxy-Error", "connect failed")
		w.WriteHeader(http.StatusBadGateway)
		return
	}
	defer up.Close()
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	_, _ = brw.WriteString("HTTP/1.1 200 Connection established\r\n\r\n")
	_ = brw.Flush()
	go func() {
		_, _ = io.Copy(up, brw.Reader)
		if tc, ok := up.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	_, _ = io.Copy(conn, up)
}

// echo is what the test backend saw.
type echo struct {
	Path    string
	RawPath string
	Query   string
	Host    string
	Header  http.Header
}

func newBackend(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if ms := r.URL.Query().Get("sleep"); ms != "" {
			n, _ := strconv.Atoi(ms)
			select {
			case <-time.After(time.Duration(n) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
		if code := r.URL.Query().Get("status"); code != "" {
			n, _ := strconv.Atoi(code)
			w.WriteHeader(n)
			_, _ = io.WriteString(w, "from the app")
			return
		}
		if r.Header.Get("Upgrade") == "websocket" {
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			_ = brw.Flush()
			_, _ = io.Copy(conn, brw.Reader)
			return
		}
		w.Header().Set("X-Backend-Secret", "s3cret")
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{Path: r.URL.Path, RawPath: r.URL.RawPath, Query: r.URL.RawQuery, Host: r.Host, Header: r.Header})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// harness is an Ingress on a memory store with one Listener on 8080 moved
// to a free port.
type harness struct {
	t     *testing.T
	st    *store.Memory
	in    *Ingress
	mesh  *meshProxy
	stop  context.CancelFunc
	done  chan error
	httpc *http.Client
}

func newHarness(t *testing.T, viaMesh bool, objs ...api.Object) *harness {
	t.Helper()
	return newHarnessWith(t, viaMesh, nil, objs...)
}

// newHarnessWith is newHarness with a hook to adjust the Config.
func newHarnessWith(t *testing.T, viaMesh bool, adjust func(*Config), objs ...api.Object) *harness {
	t.Helper()
	h := &harness{t: t, st: store.NewMemory(), done: make(chan error, 1)}
	var proxyURL *url.URL
	if viaMesh {
		h.mesh = newMeshProxy(t)
		proxyURL, _ = url.Parse(h.mesh.srv.URL)
	}
	tr := NewTransport(proxyURL)
	t.Cleanup(tr.(interface{ CloseIdleConnections() }).CloseIdleConnections)
	base := []api.Object{newListener("weft", "http", 8080, "ALL")}
	if err := h.st.Apply(context.Background(), append(base, objs...)...); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Store: h.st, Transport: tr, PortMap: map[int32]int{8080: 0, 9090: 0, 8443: 0}, AdminAddr: "127.0.0.1:0",
		DrainTimeout: 5 * time.Second, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)),
	}
	if adjust != nil {
		adjust(&cfg)
	}
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.in = in
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	go func() { h.done <- in.Run(ctx) }()
	t.Cleanup(h.shutdown)
	h.httpc = &http.Client{Transport: &http.Transport{}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	t.Cleanup(h.httpc.CloseIdleConnections)
	waitFor(t, "the ingress to be ready", func() bool { return in.Ready() && in.Addrs()[8080] != "" })
	return h
}

func (h *harness) shutdown() {
	h.stop()
	select {
	case err := <-h.done:
		if err != nil {
			h.t.Errorf("Run: %v", err)
		}
		h.done <- err
	case <-time.After(10 * time.Second):
		h.t.Error("Run did not return after its context ended")
	}
}

func (h *harness) url(path string) string { return "http://" + h.in.Addrs()[8080] + path }

func (h *harness) apply(objs ...api.Object) {
	h.t.Helper()
	if err := h.st.Apply(context.Background(), objs...); err != nil {
		h.t.Fatal(err)
	}
}

// waitRoute polls until a request for path on 8080 routes to the Mapping
// named want ("" for no match).
func (h *harness) waitRoute(path, want string) {
	h.t.Helper()
	waitFor(h.t, fmt.Sprintf("%s to route to %q", path, want), func() bool {
		d, ok := h.in.Router().Table().Match(8080, httptest.NewRequest("GET", "http://x"+path, nil))
		if !ok {
			return want == ""
		}
		return d.Route.Name == want
	})
}

func (h *harness) get(path string, hdr http.Header) (*http.Response, string) {
	h.t.Helper()
	req, err := http.NewRequest("GET", h.url(path), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := h.httpc.Do(req)
	if err != nil {
		h.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatalf("GET %s: reading body: %v", path, err)
	}
	return resp, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval, not a wait for an event
	}
}

func backendAuthority(t *testing.T, srv *httptest.Server) string {
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestThroughMeshProxy(t *testing.T) {
	backend := newBackend(t)
	face := newMapping("faces", "face", api.MappingSpec{
		Hostname: "*", Prefix: "/face/", Service: "face",
		AddRequestHeaders: map[string]api.AddedHeader{
			"x-plain": {Value: "added"},
			"x-obj":   {Value: "replaced", Append: ptr(false)},
		},
		RemoveRequestHeaders:  api.StringOrList{"x-remove-me"},
		AddResponseHeaders:    map[string]api.AddedHeader{"x-resp": {Value: "r"}},
		RemoveResponseHeaders: api.StringOrList{"x-backend-secret"},
	})
	keep := newMapping("faces", "keep", api.MappingSpec{Prefix: "/keep/", Service: "face.faces:8080", Rewrite: ptr(""), HostRewrite: "face.example"})
	h := newHarness(t, true, face, keep)
	h.mesh.route("face.faces.svc.cluster.local:80", backendAuthority(t, backend))
	h.mesh.route("face.faces.svc.cluster.local:8080", backendAuthority(t, backend))

	resp, body := h.get("/face/hello%2Fworld?x=1", http.Header{
		"X-Plain":           {"client"},
		"X-Obj":             {"client"},
		"X-Remove-Me":       {"yes"},
		"X-Forwarded-For":   {"10.0.0.1"},
		"X-Forwarded-Proto": {"https"},
		"L5d-Dst-Override":  {"evil.other.svc.cluster.local:80"},
		"X-Request-Id":      {"client-chosen"},
	})
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatal(err)
	}
	if e.Path != "/hello/world" || e.RawPath != "/hello%2Fworld" || e.Query != "x=1" {
		t.Errorf("backend saw path %q raw %q query %q, want /hello%%2Fworld?x=1 (prefix rewritten to /)", e.Path, e.RawPath, e.Query)
	}
	uris, overrides := h.mesh.requests()
	if len(uris) != 1 || uris[0] != "http://face.faces.svc.cluster.local:80/hello%2Fworld?x=1" {
		t.Errorf("sidecar saw %q, want one absolute-form request for face.faces.svc.cluster.local:80", uris)
	}
	if overrides[0] != "face.faces.svc.cluster.local:80" {
		t.Errorf("l5d-dst-override = %q", overrides[0])
	}
	checks := []struct{ name, got, want string }{
		{"X-Envoy-Original-Path", e.Header.Get("X-Envoy-Original-Path"), "/face/hello%2Fworld?x=1"},
		{"X-Forwarded-For", e.Header.Get("X-Forwarded-For"), "10.0.0.1, 127.0.0.1"},
		{"X-Forwarded-Proto (l7Depth 0 overwrites)", e.Header.Get("X-Forwarded-Proto"), "http"},
		{"X-Forwarded-Host", e.Header.Get("X-Forwarded-Host"), h.in.Addrs()[8080]},
		{"X-Plain", strings.Join(e.Header.Values("X-Plain"), ","), "client,added"},
		{"X-Obj", strings.Join(e.Header.Values("X-Obj"), ","), "replaced"},
		{"X-Remove-Me", e.Header.Get("X-Remove-Me"), ""},
		{"response X-Resp", resp.Header.Get("X-Resp"), "r"},
		{"response X-Backend-Secret", resp.Header.Get("X-Backend-Secret"), ""},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
		}
	}
	if id := e.Header.Get("X-Request-Id"); !uuidRE.MatchString(id) {
		t.Errorf("X-Request-Id = %q, want a fresh UUIDv4", id)
	}

	// rewrite "" keeps the path; host_rewrite sets Host; the port is used.
	// A rewritten Host rides a CONNECT tunnel to the service, so that the
	// sidecar routes by service while the app sees the Host asked for.
	resp, body = h.get("/keep/a", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d, body %q", resp.StatusCode, body)
	}
	uris, _ = h.mesh.requests()
	if last := uris[len(uris)-1]; last != "CONNECT face.faces.svc.cluster.local:8080" {
		t.Errorf("sidecar saw %q", last)
	}
	e = echo{}
	_ = json.Unmarshal([]byte(body), &e)
	if e.Host != "face.example" || e.Path != "/keep/a" {
		t.Errorf("host_rewrite through the mesh: backend saw Host %q path %q", e.Host, e.Path)
	}
	if e.Header.Get("X-Envoy-Original-Path") != "" {
		t.Errorf("x-envoy-original-path set without a rewrite: %q", e.Header.Get("X-Envoy-Original-Path"))
	}
}

func TestLocalReplies(t *testing.T) {
	backend := newBackend(t)
	dead := deadAddr(t)
	h := newHarness(t, true,
		newMapping("faces", "face", api.MappingSpec{Prefix: "/face/", Service: "face"}),
		newMapping("faces", "ghost", api.MappingSpec{Prefix: "/ghost/", Service: "ghost"}),
		newMapping("faces", "broken", api.MappingSpec{Prefix: "/broken/", Service: "broken"}),
	)
	h.mesh.route("face.faces.svc.cluster.local:80", backendAuthority(t, backend))
	h.mesh.route("broken.faces.svc.cluster.local:80", dead)

	for _, tc := range []struct {
		path       string
		status     int
		body       string
		bodyPrefix bool
	}{
		{"/nothing", 404, "no Mapping matches GET", true},
		{"/ghost/x", 503, BodyNoHealthy, false},
		{"/broken/x", 503, BodyConnectFailure, false},
		{"/face/?status=503", 503, "from the app", false}, // the app's own 503 passes through
		{"/face/?status=418", 418, "from the app", false},
	} {
		resp, body := h.get(tc.path, nil)
		if resp.StatusCode != tc.status || (tc.bodyPrefix && !strings.HasPrefix(body, tc.body)) || (!tc.bodyPrefix && body != tc.body) {
			t.Errorf("GET %s = %d %q, want %d %q", tc.path, resp.StatusCode, body, tc.status, tc.body)
		}
		if tc.status != 418 && resp.Header.Get("L5d-Proxy-Error") != "" && tc.path != "/face/?status=503" {
			t.Errorf("GET %s leaked l5d-proxy-error to the client", tc.path)
		}
	}
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestConnectFailureDirectAndDeadSidecar(t *testing.T) {
	dead := deadAddr(t)
	h := newHarness(t, false, newMapping("ns", "dead", api.MappingSpec{Prefix: "/", Service: "http://" + dead}))
	resp, body := h.get("/x", nil)
	if resp.StatusCode != 503 || body != BodyConnectFailure {
		t.Errorf("direct to a dead port: %d %q", resp.StatusCode, body)
	}

	// A sidecar that is down is a connect failure too.
	st := store.NewMemory()
	if err := st.Apply(context.Background(), newListener("weft", "http", 8080, "ALL"), newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "face"})); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse("http://" + deadAddr(t))
	in, err := New(Config{Store: st, Transport: NewTransport(u), PortMap: map[int32]int{8080: 0}, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "ready", func() bool { return in.Addrs()[8080] != "" })
	r2, err := http.Get("http://" + in.Addrs()[8080] + "/x")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r2.Body)
	r2.Body.Close()
	if r2.StatusCode != 503 || string(b) != BodyConnectFailure {
		t.Errorf("through a dead sidecar: %d %q", r2.StatusCode, b)
	}
}

func TestTimeouts504(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	h := newHarness(t, false,
		newMapping("ns", "short", api.MappingSpec{Prefix: "/short/", Service: svc, TimeoutMS: ptr(int64(100))}),
		newMapping("ns", "none", api.MappingSpec{Prefix: "/none/", Service: svc, TimeoutMS: ptr(int64(0))}),
		newMapping("ns", "fast", api.MappingSpec{Prefix: "/fast/", Service: svc, TimeoutMS: ptr(int64(100))}),
	)
	start := time.Now()
	resp, body := h.get("/short/?sleep=5000", nil)
	if resp.StatusCode != 504 || body != BodyTimeout {
		t.Errorf("slow upstream: %d %q, want 504 %q", resp.StatusCode, body, BodyTimeout)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("timeout_ms 100 answered after %v", el)
	}
	// timeout_ms: 0 disables the timeout: an upstream slower than the other
	// Mapping's 100ms still answers.
	resp, body = h.get("/none/?sleep=300", nil)
	if resp.StatusCode != 200 {
		t.Errorf("timeout_ms 0: %d %q, want 200", resp.StatusCode, body)
	}
	resp, _ = h.get("/fast/", nil)
	if resp.StatusCode != 200 {
		t.Errorf("fast upstream under a timeout: %d", resp.StatusCode)
	}
}

func TestWebsocket(t *testing.T) {
	backend := newBackend(t)
	h := newHarness(t, true,
		newMapping("ns", "ws", api.MappingSpec{Prefix: "/ws/", Service: "chat", AllowUpgrade: []string{"websocket"}, TimeoutMS: ptr(int64(200))}),
		newMapping("ns", "plain", api.MappingSpec{Prefix: "/plain/", Service: "chat"}),
	)
	h.mesh.route("chat.ns.svc.cluster.local:80", backendAuthority(t, backend))

	upgrade := func(path string) (*http.Response, net.Conn, *bufio.Reader) {
		conn, err := net.Dial("tcp", h.in.Addrs()[8080])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", path)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return resp, conn, br
	}

	resp, conn, br := upgrade("/ws/")
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("allowed upgrade: status %d", resp.StatusCode)
	}
	// Echo for longer than the Mapping's timeout: it covers the handshake,
	// not the tunnel.
	start := time.Now()
	for i := 0; time.Since(start) < 400*time.Millisecond; i++ {
		msg := fmt.Sprintf("ping %d\n", i)
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo %d: %q, %v", i, got, err)
		}
	}

	resp, _, _ = upgrade("/plain/")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("upgrade without allow_upgrade: status %d, want 403", resp.StatusCode)
	}
}

func TestLiveReconfigurationUnderLoad(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	h := newHarness(t, false, newMapping("ns", "stable", api.MappingSpec{Prefix: "/stable/", Service: svc}))

	var ok, bad atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(h.url("/stable/x"))
				if err != nil {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					bad.Add(1)
					firstErr.CompareAndSwap(nil, resp.Status)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	for i := 0; i < 30; i++ {
		name := fmt.Sprintf("extra-%d", i)
		h.apply(
			newMapping("ns", name, api.MappingSpec{Prefix: "/" + name + "/", Service: svc}),
			// Change the busy Mapping itself each time.
			newMapping("ns", "stable", api.MappingSpec{Prefix: "/stable/", Service: svc, AddRequestHeaders: map[string]api.AddedHeader{"x-gen": {Value: strconv.Itoa(i)}}}),
		)
		h.waitRoute("/"+name+"/", "ns/"+name)
		if i%3 == 0 {
			if err := h.st.Delete(context.Background(), api.Ref{Kind: api.KindMapping, Namespace: "ns", Name: name}); err != nil {
				t.Fatal(err)
			}
			h.waitRoute("/"+name+"/", "")
		}
	}
	close(stop)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of %d requests failed during reconfiguration; first: %v", bad.Load(), bad.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Error("no request succeeded")
	}
	t.Logf("%d requests across 30 reconfigurations", ok.Load())
}

func TestListenerAddedAndRemovedLive(t *testing.T) {
	backend := newBackend(t)
	h := newHarness(t, false, newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "http://" + backendAuthority(t, backend)}))
	second := newListener("weft", "second", 9090, "ALL")
	h.apply(second)
	waitFor(t, "listener 9090 to be bound", func() bool { return h.in.Addrs()[9090] != "" })
	addr := h.in.Addrs()[9090]
	resp, err := http.Get("http://" + addr + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("new listener: status %d", resp.StatusCode)
	}

	if err := h.st.Delete(context.Background(), api.RefOf(second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listener 9090 to be closed", func() bool {
		if h.in.Addrs()[9090] != "" {
			return false
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	// The first listener is untouched.
	if resp, _ := h.get("/x", nil); resp.StatusCode != 200 {
		t.Errorf("8080 after removing 9090: status %d", resp.StatusCode)
	}
}

func TestBadObjectDoesNotFreezeUpdates(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	h := newHarness(t, false, newMapping("ns", "a", api.MappingSpec{Prefix: "/a/", Service: svc}))
	// The memory store does not validate, like a store written by another
	// version: the ingress must skip the bad object and serve the rest.
	h.apply(
		newMapping("ns", "bad", api.MappingSpec{Prefix: "/bad/", Service: "not a service"}),
		newMapping("ns", "b", api.MappingSpec{Prefix: "/b/", Service: svc}),
	)
	h.waitRoute("/b/", "ns/b")
	if resp, _ := h.get("/a/", nil); resp.StatusCode != 200 {
		t.Errorf("/a/ status %d", resp.StatusCode)
	}
	if resp, _ := h.get("/bad/", nil); resp.StatusCode != 404 {
		t.Errorf("/bad/ status %d, want 404", resp.StatusCode)
	}
	probs := h.in.Router().Table().Problems
	if len(probs) != 1 || probs[0].Ref.Name != "bad" || !strings.Contains(probs[0].Err.Error(), "spec.service") {
		t.Errorf("problems = %v", probs)
	}
}

func TestAdmin(t *testing.T) {
	backend := newBackend(t)
	h := newHarness(t, false, newMapping("faces", "face", api.MappingSpec{Prefix: "/face/", Service: "http://" + backendAuthority(t, backend)}))
	h.get("/face/", nil)
	h.get("/face/", nil)
	h.get("/nope", nil)
	admin := "http://" + h.in.AdminAddr()
	for path, want := range map[string]string{
		"/ready":   "ready",
		"/live":    "live",
		"/metrics": `weft_ingress_requests_total{mapping="faces/face",status="200"} 2`,
		"/routes":  `prefix "/face/" -> faces/face`,
	} {
		resp, err := http.Get(admin + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			t.Errorf("GET %s = %d\n%s\nwant it to contain %q", path, resp.StatusCode, b, want)
		}
	}
	resp, _ := http.Get(admin + "/metrics")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `weft_ingress_requests_total{mapping="",status="404"} 1`) {
		t.Errorf("metrics lack the 404:\n%s", b)
	}
}

func TestGracefulDrain(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		_, _ = io.WriteString(w, "done")
	}))
	defer slow.Close()
	h := newHarness(t, false, newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "http://" + backendAuthority(t, slow)}))
	addr := h.in.Addrs()[8080]
	type result struct {
		status int
		body   string
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{status: resp.StatusCode, body: string(b)}
	}()
	<-arrived
	h.stop()
	// Shutdown stops accepting before it waits for the request in flight.
	waitFor(t, "the listener to stop accepting", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	select {
	case <-h.done:
		t.Fatal("Run returned with a request in flight")
	default:
	}
	close(release)
	r := <-res
	if r.err != nil || r.status != 200 || r.body != "done" {
		t.Errorf("request in flight during shutdown: %d %q, %v", r.status, r.body, r.err)
	}
	select {
	case err := <-h.done:
		h.done <- err
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the drain")
	}
}

func TestInsecureRequestPolicy(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	secure := newHost("weft", "secure", "secure.example.com")
	secure.Spec.TLSSecret = &corev1.SecretReference{Name: "cert"}
	reject := newHost("weft", "reject", "reject.example.com")
	reject.Spec.RequestPolicy = &api.RequestPolicy{Insecure: &api.InsecureRequestPolicy{Action: "Reject"}}
	open := newHost("weft", "open", "*")
	h := newHarness(t, false, secure, reject, open, newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: svc}))

	do := func(host string, hdr http.Header) *http.Response {
		req, _ := http.NewRequest("GET", h.url("/p?q=1"), nil)
		req.Host = host
		for k, v := range hdr {
			req.Header[k] = v
		}
		resp, err := h.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if r := do("secure.example.com:8080", nil); r.StatusCode != 301 || r.Header.Get("Location") != "https://secure.example.com/p?q=1" {
		t.Errorf("insecure request to a TLS Host: %d Location %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r := do("reject.example.com", nil); r.StatusCode != 400 {
		t.Errorf("Reject: %d", r.StatusCode)
	}
	if r := do("other.example.com", nil); r.StatusCode != 200 {
		t.Errorf("Route (no TLS): %d", r.StatusCode)
	}
	// With a trusted proxy in front (l7Depth 1), its X-Forwarded-Proto
	// decides: https is secure and routed.
	l := newListener("weft", "http", 8080, "ALL")
	l.Spec.L7Depth = 1
	h.apply(l)
	waitFor(t, "l7Depth to apply", func() bool {
		d, _ := h.in.Router().Table().Match(8080, httptest.NewRequest("GET", "http://x/", nil))
		return d.L7Depth == 1
	})
	if r := do("secure.example.com", http.Header{"X-Forwarded-Proto": {"https"}}); r.StatusCode != 200 {
		t.Errorf("XFP https behind l7Depth 1: %d", r.StatusCode)
	}
	if r := do("secure.example.com", http.Header{"X-Forwarded-Proto": {"http"}}); r.StatusCode != 301 {
		t.Errorf("XFP http behind l7Depth 1: %d", r.StatusCode)
	}
}

func TestHostHeaderDirect(t *testing.T) {
	backend := newBackend(t)
	svc := "http://" + backendAuthority(t, backend)
	h := newHarness(t, false,
		newMapping("ns", "keep", api.MappingSpec{Prefix: "/keep/", Service: svc}),
		newMapping("ns", "rewrite", api.MappingSpec{Prefix: "/rw/", Service: svc, HostRewrite: "inner.example"}),
	)
	for path, want := range map[string]string{"/keep/": "outer.example:8080", "/rw/": "inner.example"} {
		req, _ := http.NewRequest("GET", h.url(path), nil)
		req.Host = "outer.example:8080"
		resp, err := h.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var e echo
		err = json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if e.Host != want {
			t.Errorf("GET %s: upstream Host %q, want %q", path, e.Host, want)
		}
	}
}

func TestRetries(t *testing.T) {
	var calls atomic.Int64
	// Every other request fails: the first attempt of each pair answers
	// 500, or hangs when ?hang is set; the retry succeeds.
	flaky := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1)%2 == 1 {
			if r.URL.Query().Has("hang") {
				<-r.Context().Done()
				return
			}
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	defer flaky.Close()
	svc := "http://" + backendAuthority(t, flaky)
	h := newHarness(t, false,
		newMapping("ns", "retry", api.MappingSpec{Prefix: "/retry/", Service: svc, RetryPolicy: &api.RetryPolicy{RetryOn: "5xx", NumRetries: ptr(int32(1))}}),
		newMapping("ns", "noretry", api.MappingSpec{Prefix: "/noretry/", Service: svc}),
		newMapping("ns", "gw", api.MappingSpec{Prefix: "/gw/", Service: svc, RetryPolicy: &api.RetryPolicy{RetryOn: "gateway-error"}}),
		newMapping("ns", "pertry", api.MappingSpec{Prefix: "/pertry/", Service: svc, RetryPolicy: &api.RetryPolicy{RetryOn: "5xx", PerTryTimeout: "100ms"}}),
	)
	for _, tc := range []struct {
		path   string
		status int
		calls  int64
	}{
		{"/retry/", 200, 2},
		{"/noretry/", 500, 1},
		{"/gw/", 500, 1}, // 500 is not a gateway error
		{"/pertry/?hang", 200, 2},
	} {
		calls.Store(0)
		resp, body := h.get(tc.path, nil)
		if resp.StatusCode != tc.status || calls.Load() != tc.calls {
			t.Errorf("GET %s = %d %q after %d upstream calls, want %d after %d", tc.path, resp.StatusCode, body, calls.Load(), tc.status, tc.calls)
		}
	}
}

func TestH2CPriorKnowledge(t *testing.T) {
	backend := newBackend(t)
	h := newHarness(t, false, newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "http://" + backendAuthority(t, backend)}))
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(h.url("/h2"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Errorf("h2c request: %s over %s", resp.Status, resp.Proto)
	}
}

func TestCORS(t *testing.T) {
	backend := newBackend(t)
	var upstreamCalls atomic.Int64
	counting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamCalls.Add(1)
		backend.Config.Handler.ServeHTTP(w, r)
	}))
	defer counting.Close()
	h := newHarness(t, false, newMapping("ns", "api", api.MappingSpec{Prefix: "/api/", Service: "http://" + backendAuthority(t, counting), CORS: &api.CORS{
		Origins: api.StringOrList{"http://a.example,http://b.example"}, Methods: api.StringOrList{"GET", "POST"},
		Headers: api.StringOrList{"x-user"}, ExposedHeaders: api.StringOrList{"x-trace"}, MaxAge: "1h", Credentials: ptr(true),
	}}))
	do := func(method, origin string, preflight bool) *http.Response {
		req, _ := http.NewRequest(method, h.url("/api/x"), nil)
		req.Header.Set("Origin", origin)
		if preflight {
			req.Header.Set("Access-Control-Request-Method", "POST")
		}
		resp, err := h.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp := do("OPTIONS", "http://b.example", true)
	want := map[string]string{
		"Access-Control-Allow-Origin": "http://b.example", "Access-Control-Allow-Methods": "GET,POST",
		"Access-Control-Allow-Headers": "x-user", "Access-Control-Max-Age": "3600", "Access-Control-Allow-Credentials": "true",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("preflight %s = %q, want %q", k, got, v)
		}
	}
	if resp.StatusCode != 200 || upstreamCalls.Load() != 0 {
		t.Errorf("preflight: %d with %d upstream calls; the ingress should answer it", resp.StatusCode, upstreamCalls.Load())
	}
	resp = do("GET", "http://a.example", false)
	if resp.Header.Get("Access-Control-Allow-Origin") != "http://a.example" || resp.Header.Get("Access-Control-Expose-Headers") != "x-trace" {
		t.Errorf("actual request headers: %v", resp.Header)
	}
	resp = do("GET", "http://evil.example", false)
	if resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed origin got Access-Control-Allow-Origin %q", resp.Header.Get("Access-Control-Allow-Origin"))
	}
	before := upstreamCalls.Load()
	do("OPTIONS", "http://evil.example", true)
	if upstreamCalls.Load() != before+1 {
		t.Error("a preflight from a disallowed origin should go upstream untouched")
	}
}

func TestConnectRefused(t *testing.T) {
	backend := newBackend(t)
	h := newHarness(t, false, newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "http://" + backendAuthority(t, backend)}))
	conn, err := net.Dial("tcp", h.in.Addrs()[8080])
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", backendAuthority(t, backend), backendAuthority(t, backend))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("CONNECT through the ingress: %d, want 404", resp.StatusCode)
	}
}

func TestBusyPortIsRetried(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, p, _ := net.SplitHostPort(busy.Addr().String())
	port, _ := strconv.Atoi(p)
	backend := newBackend(t)
	st := store.NewMemory()
	if err := st.Apply(context.Background(), newListener("weft", "http", 8080, "ALL"), newMapping("ns", "m", api.MappingSpec{Prefix: "/", Service: "http://" + backendAuthority(t, backend)})); err != nil {
		t.Fatal(err)
	}
	in, err := New(Config{Store: st, Transport: NewTransport(nil), PortMap: map[int32]int{8080: port}, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- in.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the first configuration", func() bool { return in.Generation() > 0 })
	if in.Addrs()[8080] != "" {
		t.Fatal("bound a busy port")
	}
	busy.Close() // the previous owner goes away; no store change follows
	waitFor(t, "the port to be bound on retry", func() bool { return in.Addrs()[8080] != "" })
	resp, err := http.Get("http://" + in.Addrs()[8080] + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("status %d", resp.StatusCode)
	}
}

// A store whose watch ends while the ingress runs is an error, not a
// clean stop.
type closingStore struct{ *store.Memory }

func (c closingStore) Watch(ctx context.Context, kinds ...api.Kind) (<-chan struct{}, error) {
	ch := make(chan struct{}, 1)
	ch <- struct{}{}
	close(ch)
	return ch, nil
}

func TestStoreWatchEndingIsAnError(t *testing.T) {
	in, err := New(Config{Store: closingStore{store.NewMemory()}, Transport: NewTransport(nil), Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := in.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "stopped notifying") {
		t.Errorf("Run = %v", err)
	}
}

func TestGRPCThroughMeshTunnel(t *testing.T) {
	// A gRPC-shaped h2c backend: it needs HTTP/2 and answers with trailers.
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(body)
		w.Header().Set("Grpc-Status", "0")
	}))
	backend.Config.Protocols = new(http.Protocols)
	backend.Config.Protocols.SetUnencryptedHTTP2(true)
	backend.Start()
	defer backend.Close()

	h := newHarness(t, true,
		newMapping("ns", "grpc", api.MappingSpec{Prefix: "/emoji.Service/", Rewrite: ptr(""), Service: "emoji:8080", GRPC: true}),
		newMapping("ns", "ghost", api.MappingSpec{Prefix: "/ghost.Service/", Rewrite: ptr(""), Service: "ghost:8080"}),
	)
	h.mesh.route("emoji.ns.svc.cluster.local:8080", backendAuthority(t, backend))

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	call := func(path string) (*http.Response, string) {
		req, _ := http.NewRequest("POST", h.url(path), strings.NewReader("\x00\x00\x00\x00\x02hi"))
		req.Header.Set("Content-Type", "application/grpc")
		req.Header.Set("Te", "trailers")
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := call("/emoji.Service/ListAll")
	if resp.StatusCode != 200 || body != "\x00\x00\x00\x00\x02hi" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("gRPC call: %d body %q trailers %v", resp.StatusCode, body, resp.Trailer)
	}
	uris, _ := h.mesh.requests()
	if len(uris) == 0 || uris[0] != "CONNECT emoji.ns.svc.cluster.local:8080" {
		t.Errorf("sidecar saw %q, want a CONNECT tunnel to the service", uris)
	}
	// Local replies to gRPC clients are gRPC statuses, as Envoy sends them.
	resp, _ = call("/ghost.Service/X")
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "14" || resp.Header.Get("Grpc-Message") != "no%20healthy%20upstream" {
		t.Errorf("gRPC to a service without endpoints: %d %v", resp.StatusCode, resp.Header)
	}
	resp, _ = call("/nothing.Service/X")
	if resp.StatusCode != 200 || resp.Header.Get("Grpc-Status") != "12" {
		t.Errorf("gRPC with no Mapping: %d %v, want grpc-status 12 (UNIMPLEMENTED)", resp.StatusCode, resp.Header)
	}
}
