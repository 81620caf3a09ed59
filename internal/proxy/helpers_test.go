package proxy_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy"
	"github.com/weft-mesh/weft/internal/proxy/proxytest"
)

const testTimeout = 20 * time.Second

// running is a proxy under test.
type running struct {
	*proxy.Proxy
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returns
	err    error         // Run's result, set before done closes
}

// stop cancels the proxy and waits for Run to return.
func (r *running) stop(t testing.TB) error {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
		return r.err
	case <-time.After(testTimeout):
		t.Fatal("proxy did not stop")
		return nil
	}
}

// startProxy runs a proxy in namespace ns with one inbound listener per app.
func startProxy(t testing.TB, dstAddr, ns, pod string, apps ...string) *running {
	t.Helper()
	return runProxy(t, testConfig(dstAddr, ns, pod, apps...))
}

// testConfig is the proxy configuration every test starts from: loopback
// listeners on free ports, one inbound listener per app, short detection
// and discovery timeouts.
func testConfig(dstAddr, ns, pod string, apps ...string) proxy.Config {
	cfg := proxy.Config{
		ControlAddr:      dstAddr,
		OutboundAddr:     "127.0.0.1:0",
		AdminAddr:        "127.0.0.1:0",
		Namespace:        ns,
		Pod:              pod,
		Deployment:       strings.Split(pod, "-")[0],
		ServiceAccount:   "default",
		ShutdownGrace:    5 * time.Second,
		DetectTimeout:    500 * time.Millisecond,
		DiscoveryTimeout: 300 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, a := range apps {
		cfg.Inbound = append(cfg.Inbound, proxy.InboundPort{Listen: "127.0.0.1:0", App: a})
	}
	return cfg
}

// runProxy starts a proxy with cfg, stops it when the test ends, and
// returns once its /ready answers.
func runProxy(t testing.TB, cfg proxy.Config) *running {
	t.Helper()
	p, err := proxy.Listen(cfg)
	if err != nil {
		t.Fatalf("proxy.Listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Proxy: p, cancel: cancel, done: make(chan struct{})}
	go func() {
		r.err = p.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	waitFor(t, "proxy ready", func() error {
		resp, err := http.Get("http://" + p.AdminAddr() + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	return r
}

// waitFor polls f until it succeeds or the test deadline passes.
func waitFor(t testing.TB, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s: %v", what, err)
}

// proxyClient sends HTTP/1 requests through the proxy's outbound listener
// in absolute form, as an app with HTTP_PROXY does.
func proxyClient(p *running) *http.Client {
	u := &url.URL{Scheme: "http", Host: p.OutboundAddr()}
	return &http.Client{
		Transport: &http.Transport{Proxy: http.ProxyURL(u), DisableCompression: true},
		Timeout:   testTimeout,
	}
}

// h2cClient speaks HTTP/2 with prior knowledge to the outbound listener.
// Its connections close before the proxy stops (an open HTTP/2 connection
// holds a graceful shutdown for its GOAWAY timeout).
func h2cClient(t testing.TB, p *running) *http.Client {
	protos := new(http.Protocols)
	protos.SetUnencryptedHTTP2(true)
	addr := p.OutboundAddr()
	tr := &http.Transport{
		Protocols: protos,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// dialConnect opens a CONNECT tunnel to target through the proxy.
func dialConnect(ctx context.Context, proxyAddr, target string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		c.Close()
		return nil, err
	}
	if resp.StatusCode != 200 {
		c.Close()
		return nil, fmt.Errorf("CONNECT %s: %s", target, resp.Status)
	}
	if br.Buffered() > 0 {
		c.Close()
		return nil, errors.New("CONNECT: unexpected bytes after the response")
	}
	return c, nil
}

// destination starts a controllable Destination server.
func destination(t testing.TB) (*proxytest.Destination, string) {
	d := proxytest.NewDestination()
	addr, _ := d.Serve(t, "127.0.0.1:0")
	return d, addr
}

// backend is an HTTP server that names itself in X-Backend.
func backend(t testing.TB, name string, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	protos := new(http.Protocols)
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s := &http.Server{Protocols: protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", name)
		if h != nil {
			h(w, r)
			return
		}
		fmt.Fprintf(w, "%s %s %s %s", name, r.Proto, r.Host, r.URL.RequestURI())
	})}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

func get(t testing.TB, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", u, err)
	}
	return resp, string(b)
}

func metricsText(t testing.TB, p *running) string {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// serveTCP listens on addr and hands every connection to handle on a
// goroutine of its own, closing it afterwards, until the test ends; it
// returns the bound address. The opaque TCP apps of the tests are built
// on it.
func serveTCP(t testing.TB, addr string, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// echoServer is an opaque TCP app: it echoes every byte.
func echoServer(t testing.TB) string {
	return serveTCP(t, "127.0.0.1:0", func(c net.Conn) { io.Copy(c, c) })
}

// lineEcho serves on addr, answering each connection's first line with
// "<name> <line>"; it returns the bound address.
func lineEcho(t testing.TB, addr, name string) string {
	return serveTCP(t, addr, func(c net.Conn) {
		l, _ := bufio.NewReader(c).ReadString('\n')
		fmt.Fprintf(c, "%s %s\n", name, strings.TrimSpace(l))
	})
}
