package proxy_test

import (
	"io"
	"net/http"
	"testing"

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
