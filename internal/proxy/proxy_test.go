package proxy_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/proxytest"
)

const smileyPath = "smiley.faces.svc.cluster.local:80"

func TestOutboundAbsoluteForm(t *testing.T) {
	dst, dstAddr := destination(t)
	be := backend(t, "smiley-1", nil)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: be})
	p := startProxy(t, dstAddr, "faces", "gui-abc")
	c := proxyClient(p)

	for _, u := range []string{"http://smiley/center/?x=1", "http://smiley.faces/center/", "http://smiley.faces.svc.cluster.local:80/center/", "http://smiley:80/a"} {
		resp, body := get(t, c, u)
		if resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "smiley-1" {
			t.Fatalf("GET %s = %d %q, want 200 from smiley-1", u, resp.StatusCode, body)
		}
		host := strings.TrimPrefix(u, "http://")
		host = host[:strings.IndexByte(host, '/')]
		if want := "smiley-1 HTTP/1.1 " + host + " "; !strings.HasPrefix(body, want) {
			t.Errorf("GET %s: backend saw %q, want prefix %q (Host preserved)", u, body, want)
		}
	}
	// Keep-alive: every request rode one client connection.
	if m := metricsText(t, p); !regexp.MustCompile(`(?m)^tcp_open_total\{direction="outbound",[^}]*peer="src"\} 1$`).MatchString(m) {
		t.Errorf("want exactly one outbound connection; metrics:\n%s", grepLines(m, "tcp_open_total"))
	}
	toks := dst.Tokens()
	if len(toks) != 1 {
		t.Fatalf("Destination got %d Get calls, want 1 (one shared watch): %v", len(toks), toks)
	}
	var tok struct{ NS, NodeName, Pod string }
	if err := json.Unmarshal([]byte(toks[0]), &tok); err != nil || tok.NS != "faces" || tok.Pod != "gui-abc" || tok.NodeName != "local" {
		t.Errorf("context token = %s (%v), want ns faces, pod gui-abc, nodeName local", toks[0], err)
	}
}

func TestConnectHTTP1(t *testing.T) {
	dst, dstAddr := destination(t)
	be := backend(t, "smiley-1", nil)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: be})
	p := startProxy(t, dstAddr, "faces", "gui-abc")

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := dialConnect(ctx, p.OutboundAddr(), "smiley.faces:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	for i := range 3 {
		fmt.Fprintf(c, "GET /req/%d HTTP/1.1\r\nHost: whatever.example\r\n\r\n", i)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request %d in tunnel: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("smiley-1 HTTP/1.1 whatever.example /req/%d", i); string(b) != want {
			t.Errorf("request %d in tunnel: got %q, want %q", i, b, want)
		}
	}
}

func TestConnectOpaque(t *testing.T) {
	dst, dstAddr := destination(t)
	server := startProxy(t, dstAddr, "faces", "smiley-1", echoServer(t))
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")

	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	c, err := dialConnect(ctx, client.OutboundAddr(), "smiley.faces:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	msg := []byte("\x16\x03\x01 not http at all \x00\xff")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading echo through opaque tunnel: %v", err)
	}
	if string(got) != string(msg) {
		t.Errorf("echo = %q, want %q", got, msg)
	}
}

func TestH2CDirect(t *testing.T) {
	dst, dstAddr := destination(t)
	be := backend(t, "smiley-1", nil)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: be})
	p := startProxy(t, dstAddr, "faces", "gui-abc")
	req, _ := http.NewRequest("GET", "http://ignored/h2", nil)
	req.Host = "smiley"
	resp, err := h2cClient(t, p).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || string(b) != "smiley-1 HTTP/2.0 smiley /h2" {
		t.Errorf("h2c through proxy: %s %q, want HTTP/2 response %q", resp.Proto, b, "smiley-1 HTTP/2.0 smiley /h2")
	}
}

// TestPeerHop sends HTTP/1 from one proxy's outbound over HTTP/2 to another
// proxy's inbound, which restores HTTP/1 for its app.
func TestPeerHop(t *testing.T) {
	dst, dstAddr := destination(t)
	var sawOrig atomic.Value
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		sawOrig.Store(r.Header.Get("L5d-Orig-Proto"))
		fmt.Fprintf(w, "%s %s", r.Proto, r.Host)
	})
	server := startProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true,
		Labels: map[string]string{"deployment": "smiley", "pod": "smiley-1", "namespace": "faces"}})
	client := startProxy(t, dstAddr, "faces", "gui-1")

	resp, body := get(t, proxyClient(client), "http://smiley/center/")
	if resp.StatusCode != 200 || body != "HTTP/1.1 smiley" {
		t.Fatalf("through peer hop: %d %q, want 200 %q", resp.StatusCode, body, "HTTP/1.1 smiley")
	}
	if v := sawOrig.Load(); v != "" {
		t.Errorf("app saw l5d-orig-proto %q; the inbound must remove it", v)
	}
	// The hop itself was HTTP/2: the server proxy's inbound counted one
	// h2 connection and the client proxy labels the destination.
	m := metricsText(t, client)
	want := `request_total{direction="outbound",namespace="faces",pod="gui-1",deployment="gui",authority="smiley.faces.svc.cluster.local:80",dst_deployment="smiley",dst_namespace="faces",dst_pod="smiley-1",tls="no_identity",no_tls_reason="not_provided_by_service_discovery"} 1`
	if !strings.Contains(m, want+"\n") {
		t.Errorf("client metrics lack %s; got:\n%s", want, grepLines(m, "request_total"))
	}
	m = metricsText(t, server)
	if !strings.Contains(m, `request_total{direction="inbound",namespace="faces",pod="smiley-1",deployment="smiley",authority="smiley",tls="no_identity",no_tls_reason="disabled"} 1`) {
		t.Errorf("server inbound metrics:\n%s", grepLines(m, "request_total"))
	}
	// An unmeshed client may speak plain HTTP/1 to the inbound.
	resp, body = get(t, http.DefaultClient, "http://"+server.InboundAddrs()[0]+"/direct")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "HTTP/1.1 ") {
		t.Errorf("plain HTTP/1 to inbound: %d %q", resp.StatusCode, body)
	}
}

func TestBalancingReachesEveryEndpoint(t *testing.T) {
	dst, dstAddr := destination(t)
	var eps []proxytest.Endpoint
	for i := range 3 {
		name := fmt.Sprintf("smiley-%d", i)
		app := backend(t, name, nil)
		if i == 0 { // mix unmeshed and meshed endpoints
			eps = append(eps, proxytest.Endpoint{Addr: app})
			continue
		}
		srv := startProxy(t, dstAddr, "faces", name, app)
		eps = append(eps, proxytest.Endpoint{Addr: srv.InboundAddrs()[0], H2: true})
	}
	dst.Set(smileyPath, eps...)
	client := startProxy(t, dstAddr, "faces", "gui-1")
	c := proxyClient(client)
	seen := map[string]int{}
	for range 60 {
		resp, _ := get(t, c, "http://smiley.faces/")
		seen[resp.Header.Get("X-Backend")]++
	}
	for i := range 3 {
		if name := fmt.Sprintf("smiley-%d", i); seen[name] == 0 {
			t.Errorf("endpoint %s got no requests: %v", name, seen)
		}
	}
}

func TestPassthrough(t *testing.T) {
	_, dstAddr := destination(t)
	be := backend(t, "outside", nil)
	p := startProxy(t, dstAddr, "faces", "gui-1")
	c := proxyClient(p)

	// An IP address never goes to discovery.
	resp, body := get(t, c, "http://"+be+"/ip")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "outside HTTP/1.1 "+be+" /ip") {
		t.Errorf("GET by IP: %d %q", resp.StatusCode, body)
	}
	// A name Destination does not know is forwarded to the name as given:
	// localhost.faces does not resolve, so the proxy answers 502 (connect
	// failed), not 503 (known service without endpoints).
	_, port, _ := net.SplitHostPort(be)
	resp, body = get(t, c, "http://ghost.invalid.faces:"+port+"/")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("GET unknown name: %d %q, want 502", resp.StatusCode, body)
	}
}

func TestKnownServiceWithoutEndpoints(t *testing.T) {
	dst, dstAddr := destination(t)
	dst.Set(smileyPath)
	p := startProxy(t, dstAddr, "faces", "gui-1")
	resp, body := get(t, proxyClient(p), "http://smiley/")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status = %d, want 503", resp.StatusCode)
	}
	if h := resp.Header.Get("L5d-Proxy-Error"); !strings.Contains(h, "no ready endpoints") {
		t.Errorf("l5d-proxy-error = %q, want it to say there are no ready endpoints", h)
	}
	if !strings.Contains(body, smileyPath) {
		t.Errorf("body %q does not name the service", body)
	}
	m := metricsText(t, p)
	for _, want := range []string{
		`request_total{direction="outbound",namespace="faces",pod="gui-1",deployment="gui",authority="smiley.faces.svc.cluster.local:80"} 1`,
		`response_total{direction="outbound",namespace="faces",pod="gui-1",deployment="gui",authority="smiley.faces.svc.cluster.local:80",status_code="503",classification="failure"} 1`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "_total{"))
		}
	}
}

func TestConnectFailureIs502(t *testing.T) {
	dst, dstAddr := destination(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	dst.Set(smileyPath, proxytest.Endpoint{Addr: dead})
	p := startProxy(t, dstAddr, "faces", "gui-1")
	resp, _ := get(t, proxyClient(p), "http://smiley/")
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(resp.Header.Get("L5d-Proxy-Error"), "connect") {
		t.Errorf("got %d l5d-proxy-error=%q, want 502 naming the connect failure", resp.StatusCode, resp.Header.Get("L5d-Proxy-Error"))
	}
}

func TestControlPlaneLoss(t *testing.T) {
	dst := proxytest.NewDestination()
	dstAddr, stop := dst.Serve(t, "127.0.0.1:0")
	one := backend(t, "smiley-1", nil)
	two := backend(t, "smiley-2", nil)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: one})
	p := startProxy(t, dstAddr, "faces", "gui-1")
	c := proxyClient(p)
	if resp, _ := get(t, c, "http://smiley/"); resp.Header.Get("X-Backend") != "smiley-1" {
		t.Fatalf("before loss: reached %q", resp.Header.Get("X-Backend"))
	}
	stop()
	for range 5 {
		if resp, body := get(t, c, "http://smiley/"); resp.StatusCode != 200 || resp.Header.Get("X-Backend") != "smiley-1" {
			t.Fatalf("control plane down: %d %q, want the last known endpoint", resp.StatusCode, body)
		}
	}
	// A new control plane on the same address: the proxy reconnects and
	// its first answer replaces the endpoint set.
	dst2 := proxytest.NewDestination()
	dst2.Set(smileyPath, proxytest.Endpoint{Addr: two})
	dst2.Serve(t, dstAddr)
	waitFor(t, "requests to reach the new endpoint", func() error {
		resp, _ := get(t, c, "http://smiley/")
		if b := resp.Header.Get("X-Backend"); b != "smiley-2" {
			return fmt.Errorf("reached %q", b)
		}
		return nil
	})
}

func TestStreamingBothWays(t *testing.T) {
	dst, dstAddr := destination(t)
	release := make(chan struct{})
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		// Read the first chunk of the request before answering: the
		// client sends the rest only after seeing our first chunk.
		http.NewResponseController(w).EnableFullDuplex()
		buf := make([]byte, 5)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "got %s\n", buf)
		w.(http.Flusher).Flush()
		<-release
		rest, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "then %s\n", rest)
	})
	server := startProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")

	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", "http://smiley/stream", pr)
	go pw.Write([]byte("hello"))
	respc := make(chan *http.Response, 1)
	errc := make(chan error, 1)
	go func() {
		resp, err := proxyClient(client).Do(req)
		if err != nil {
			errc <- err
			return
		}
		respc <- resp
	}()
	var resp *http.Response
	select {
	case resp = <-respc:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(testTimeout):
		t.Fatal("no response headers while the request body is still open: the proxy buffers")
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "got hello\n" {
		t.Fatalf("first chunk = %q, %v", line, err)
	}
	close(release)
	pw.Write([]byte("world"))
	pw.Close()
	line, err = br.ReadString('\n')
	if err != nil || line != "then world\n" {
		t.Fatalf("second chunk = %q, %v", line, err)
	}
}

func TestHTTP2Trailers(t *testing.T) {
	dst, dstAddr := destination(t)
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "Grpc-Status, X-Sum")
		w.Header().Set("Content-Type", "application/grpc")
		io.WriteString(w, "payload")
		w.Header().Set("Grpc-Status", "0")
		w.Header().Set("X-Sum", "abc")
	})
	server := startProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")

	req, _ := http.NewRequest("POST", "http://x/svc/Method", strings.NewReader("req"))
	req.Host = "smiley.faces"
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := h2cClient(t, client).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "payload" || resp.Trailer.Get("Grpc-Status") != "0" || resp.Trailer.Get("X-Sum") != "abc" {
		t.Errorf("body %q trailers %v, want payload with grpc-status 0 and x-sum abc", b, resp.Trailer)
	}
	waitFor(t, "grpc_status in metrics", func() error {
		if m := metricsText(t, client); !strings.Contains(m, `grpc_status="0",classification="success"} 1`) {
			return fmt.Errorf("metrics:\n%s", grepLines(m, "response_total"))
		}
		return nil
	})
}

func TestLargeUpload(t *testing.T) {
	const size = 100 << 20
	dst, dstAddr := destination(t)
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
	})
	server := startProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")

	src := rand.NewChaCha8([32]byte{1})
	h := sha256.New()
	body := io.TeeReader(io.LimitReader(src, size), h)
	req, _ := http.NewRequest("PUT", "http://smiley/upload", body)
	req.ContentLength = size
	resp, err := proxyClient(client).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%d %s", size, hex.EncodeToString(h.Sum(nil))); string(got) != want {
		t.Errorf("app received %q, want %q", got, want)
	}
}

func TestWebSocketUpgrade(t *testing.T) {
	dst, dstAddr := destination(t)
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
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo
	})
	server := startProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")

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
	for _, msg := range []string{"ping", "pong and more"} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo = %q, %v; want %q", got, err, msg)
		}
	}
}

// metricLine is one sample line of the Prometheus text format.
var metricLine = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? -?[0-9.e+]+$`)

func TestMetricsExposition(t *testing.T) {
	dst, dstAddr := destination(t)
	be := backend(t, "smiley-1", nil)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: be, Labels: map[string]string{"service": "smiley"}})
	p := startProxy(t, dstAddr, "faces", "gui-1")
	for range 3 {
		get(t, proxyClient(p), "http://smiley/")
	}
	// response_total is counted when the proxy sees the end of the response
	// stream, which can be just after the client has read it.
	waitFor(t, "three responses to be counted", func() error {
		if !strings.Contains(metricsText(t, p), `,status_code="200",classification="success"} 3`) {
			return errors.New("not yet")
		}
		return nil
	})
	resp, err := http.Get("http://" + p.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	types := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		if f := strings.Fields(line); len(f) >= 4 && f[1] == "TYPE" {
			types[f[2]] = f[3]
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if !metricLine.MatchString(line) {
			t.Errorf("malformed sample line %q", line)
		}
	}
	for name, typ := range map[string]string{"request_total": "counter", "response_total": "counter", "response_latency_ms": "histogram",
		"tcp_open_total": "counter", "tcp_open_connections": "gauge", "tcp_read_bytes_total": "counter", "tcp_write_bytes_total": "counter"} {
		if types[name] != typ {
			t.Errorf("metric %s has type %q, want %q", name, types[name], typ)
		}
	}
	m := string(b)
	base := `direction="outbound",namespace="faces",pod="gui-1",deployment="gui",authority="smiley.faces.svc.cluster.local:80",dst_service="smiley",tls="no_identity",no_tls_reason="not_provided_by_service_discovery"`
	for _, want := range []string{
		`request_total{` + base + `} 3`,
		`response_total{` + base + `,status_code="200",classification="success"} 3`,
		`response_latency_ms_bucket{` + base + `,status_code="200",le="+Inf"} 3`,
		`response_latency_ms_count{` + base + `,status_code="200"} 3`,
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Buckets are Linkerd's.
	var les []string
	for _, l := range regexp.MustCompile(`response_latency_ms_bucket\{`+regexp.QuoteMeta(base)+`,status_code="200",le="([^"]+)"\}`).FindAllStringSubmatch(m, -1) {
		les = append(les, l[1])
	}
	if got, want := strings.Join(les, ","), "1,2,3,4,5,10,20,30,40,50,100,200,300,400,500,1000,2000,3000,4000,5000,10000,20000,30000,40000,50000,+Inf"; got != want {
		t.Errorf("buckets = %s, want %s", got, want)
	}
	for _, path := range []string{"/live", "/ready"} {
		resp, err := http.Get("http://" + p.AdminAddr() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Errorf("GET %s = %v, %v", path, resp, err)
		}
	}
}

func TestGracefulShutdown(t *testing.T) {
	dst, dstAddr := destination(t)
	arrived := make(chan struct{})
	release := make(chan struct{})
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		io.WriteString(w, "finished")
	})
	dst.Set(smileyPath, proxytest.Endpoint{Addr: app})
	p := startProxy(t, dstAddr, "faces", "gui-1")
	c := proxyClient(p)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://smiley/slow")
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-arrived
	stopped := make(chan error, 1)
	go func() { stopped <- p.stop(t) }()
	// New connections are refused once the listener closes.
	waitFor(t, "outbound listener to close", func() error {
		c, err := net.Dial("tcp", p.OutboundAddr())
		if err == nil {
			c.Close()
			return fmt.Errorf("still accepting")
		}
		return nil
	})
	close(release)
	r := <-res
	if r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request during shutdown: %q, %v; want it to finish", r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run returned %v", err)
	}
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestControlPlaneNeverUp checks that a name never resolved fails fast with
// 503 when the control plane cannot be reached, rather than hanging.
func TestControlPlaneNeverUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	p := startProxy(t, dead, "faces", "gui-1")
	start := time.Now()
	resp, _ := get(t, proxyClient(p), "http://smiley/")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(resp.Header.Get("L5d-Proxy-Error"), "resolve") {
		t.Errorf("got %d %q, want 503 saying the name cannot be resolved", resp.StatusCode, resp.Header.Get("L5d-Proxy-Error"))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("took %v; the discovery timeout should bound the wait", d)
	}
}

// TestLongRequestLine sends a request line longer than detection peeks.
func TestLongRequestLine(t *testing.T) {
	dst, dstAddr := destination(t)
	be := backend(t, "smiley-1", nil)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: be})
	p := startProxy(t, dstAddr, "faces", "gui-1")
	q := strings.Repeat("x", 4000)
	resp, body := get(t, proxyClient(p), "http://smiley/long?q="+q)
	if resp.StatusCode != 200 || !strings.HasSuffix(body, q) {
		t.Errorf("long URL: %d, body of %d bytes", resp.StatusCode, len(body))
	}
}

// TestHopByHopHeaders checks that connection-scoped headers stop at the
// proxy while end-to-end ones (and Host) arrive intact, across a peer hop.
func TestHopByHopHeaders(t *testing.T) {
	dst, dstAddr := destination(t)
	seen := make(chan http.Header, 1)
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Clone()
		h.Set("Host", r.Host)
		seen <- h
		w.Header().Set("X-Reply", "1")
	})
	server := startProxy(t, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(t, dstAddr, "faces", "gui-1")

	c, err := net.Dial("tcp", client.OutboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	io.WriteString(c, "GET http://smiley.faces/h HTTP/1.1\r\nHost: smiley.faces\r\n"+
		"Connection: keep-alive, X-Conn-Scoped\r\nX-Conn-Scoped: drop me\r\nKeep-Alive: timeout=5\r\n"+
		"Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic eA==\r\n"+
		"X-End-To-End: keep me\r\nX-Forwarded-For: 10.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("X-Reply") != "1" {
		t.Fatalf("status %d, X-Reply %q", resp.StatusCode, resp.Header.Get("X-Reply"))
	}
	h := <-seen
	for _, gone := range []string{"X-Conn-Scoped", "Keep-Alive", "Proxy-Connection", "Proxy-Authorization", "L5d-Orig-Proto"} {
		if v := h.Get(gone); v != "" {
			t.Errorf("app saw hop-by-hop header %s: %q", gone, v)
		}
	}
	for k, want := range map[string]string{"X-End-To-End": "keep me", "Host": "smiley.faces", "X-Forwarded-For": "10.0.0.1"} {
		if got := h.Get(k); got != want {
			t.Errorf("app saw %s = %q, want %q", k, got, want)
		}
	}
}

// TestInboundServerFirstProtocol: a client that waits for the server to
// speak first gets relayed as opaque TCP once detection times out.
func TestInboundServerFirstProtocol(t *testing.T) {
	_, dstAddr := destination(t)
	smtp := serveTCP(t, "127.0.0.1:0", func(c net.Conn) {
		io.WriteString(c, "220 smtp ready\r\n")
		io.Copy(c, c)
	})
	server := startProxy(t, dstAddr, "faces", "mail-1", smtp)
	c, err := net.Dial("tcp", server.InboundAddrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); err != nil || line != "220 smtp ready\r\n" {
		t.Fatalf("greeting = %q, %v", line, err)
	}
	io.WriteString(c, "HELO x\r\n")
	if line, err := br.ReadString('\n'); err != nil || line != "HELO x\r\n" {
		t.Fatalf("echo = %q, %v", line, err)
	}
}
