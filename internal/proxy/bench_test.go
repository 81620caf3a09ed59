package proxy_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/proxy/proxytest"
)

// BenchmarkPeerHop measures one HTTP/1 request through the whole mesh
// path: app -> outbound (absolute form) -> HTTP/2 -> peer inbound -> app.
// Run: go test -run '^$' -bench PeerHop -benchmem ./internal/proxy/
func BenchmarkPeerHop(b *testing.B) {
	dst, dstAddr := destination(b)
	app := backend(b, "smiley-1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	server := startProxy(b, dstAddr, "faces", "smiley-1", app)
	dst.Set(smileyPath, proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})
	client := startProxy(b, dstAddr, "faces", "gui-1")
	c := proxyClient(client)
	c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
	get(b, c, "http://smiley/") // warm discovery and pools
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := c.Get("http://smiley/")
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// BenchmarkMeshHop compares one HTTP/1 request app -> outbound -> peer
// inbound -> app over the pooled HTTP/2 hop in cleartext and over mTLS
// (both proxies with identities from the real control plane).
// Run: go test -run '^$' -bench MeshHop -benchmem ./internal/proxy/
func BenchmarkMeshHop(b *testing.B) {
	e := newMeshEnv(b, time.Hour)
	app := backend(b, "smiley-1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	server := e.startProxy(b, "faces", "smiley-abc-1", "smiley", app)
	e.register(b, "faces", "smiley", "smiley-abc-1", "smiley", 80, server.InboundAddrs()[0], true)
	clients := map[string]*running{
		// Without an identity the client reaches the meshed peer in
		// plaintext HTTP/2 (the peer's inbound accepts both).
		"h2c":  startProxyWith(b, e.addr, "faces", "gui-def-1", "gui", nil),
		"mtls": e.startProxy(b, "faces", "gui-def-2", "gui"),
	}
	for _, mode := range []string{"h2c", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			c := proxyClient(clients[mode])
			c.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
			waitFor(b, "smiley", func() error {
				resp, body := get(b, c, "http://smiley/")
				if resp.StatusCode != 200 {
					return &statusErr{resp.StatusCode, body}
				}
				return nil
			})
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Get("http://smiley/")
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
		})
	}
}

// BenchmarkMeshConnect measures a new connection to a meshed peer: an
// opaque CONNECT tunnel through the outbound to an echo app behind the
// peer's inbound, one line echoed; with mTLS each is a full handshake
// (both chains verified), so ns/op bounds the proxies' handshake rate.
// Run: go test -run '^$' -bench MeshConnect -benchmem ./internal/proxy/
func BenchmarkMeshConnect(b *testing.B) {
	e := newMeshEnv(b, time.Hour)
	server := e.startProxy(b, "faces", "echo-abc-1", "echo", echoServer(b))
	e.register(b, "faces", "echo", "echo-abc-1", "echo", 7, server.InboundAddrs()[0], true)
	clients := map[string]*running{
		"plaintext": startProxyWith(b, e.addr, "faces", "gui-def-1", "gui", nil),
		"mtls":      e.startProxy(b, "faces", "gui-def-2", "gui"),
	}
	for _, mode := range []string{"plaintext", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			out := clients[mode].OutboundAddr()
			waitFor(b, "echo", func() error { return echoOnce(out, "echo.faces:7") })
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := echoOnce(out, "echo.faces:7"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkOneHop is what one proxy costs per request: the same GET (a 1
// KiB response) straight to the app and through the outbound listener,
// over HTTP/1.1 (absolute form, as with HTTP_PROXY) and HTTP/2 cleartext,
// and through both proxies of the mesh path (outbound -> h2c -> peer
// inbound). The client and the app run in this process too, so a hop's
// cost is its allocs/op and B/op minus the direct case's.
// Run: go test -run '^$' -bench OneHop -benchmem -cpu 1 ./internal/proxy/
func BenchmarkOneHop(b *testing.B) {
	body := strings.Repeat("x", 1024)
	dst, dstAddr := destination(b)
	app := backend(b, "smiley-1", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, body) })
	server := startProxy(b, dstAddr, "faces", "smiley-1", app)
	client := startProxy(b, dstAddr, "faces", "gui-1")
	dst.Set(smileyPath, proxytest.Endpoint{Addr: app})
	dst.Set("web.faces.svc.cluster.local:80", proxytest.Endpoint{Addr: server.InboundAddrs()[0], H2: true})

	h2cTo := func(addr string) *http.Client {
		protos := new(http.Protocols)
		protos.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: protos, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}}
		b.Cleanup(tr.CloseIdleConnections)
		return &http.Client{Transport: tr, Timeout: testTimeout}
	}
	h1Direct := &http.Client{Transport: &http.Transport{DisableCompression: true}, Timeout: testTimeout}
	b.Cleanup(h1Direct.CloseIdleConnections)
	cases := []struct {
		name string
		c    *http.Client
		url  string
	}{
		{"h1/direct", h1Direct, "http://" + app + "/"},
		{"h1/outbound", proxyClient(client), "http://smiley/"},
		{"h2c/direct", h2cTo(app), "http://" + app + "/"},
		{"h2c/outbound", h2cTo(client.OutboundAddr()), "http://smiley/"},
		{"h1/mesh", proxyClient(client), "http://web/"},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			waitFor(b, tc.name, func() error {
				resp, got := get(b, tc.c, tc.url)
				if resp.StatusCode != 200 || got != body {
					return &statusErr{resp.StatusCode, got}
				}
				return nil
			})
			b.ReportAllocs()
			for b.Loop() {
				resp, err := tc.c.Get(tc.url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}
