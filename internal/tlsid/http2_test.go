package tlsid

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// The way proxies use the configurations: the inbound serves HTTP/2 on
// accepted mesh TLS connections and learns the client's identity; the
// outbound dials with the peer's expected identity through DialTLSContext
// (x/net/http2's own dialer would insist on ALPN "h2").
func TestHTTP2OverMeshTLS(t *testing.T) {
	a := testAuthority(t)
	serverID, clientID := a.Domain.Name("faces", "smiley"), a.Domain.Name("faces", "face")
	srv := NewMesh(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "smiley")})
	cli := NewMesh(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "face")})

	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.Server())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	h2s := &http2.Server{}
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				tc := c.(*tls.Conn)
				if err := tc.HandshakeContext(context.Background()); err != nil {
					tc.Close()
					return
				}
				id, _ := PeerIdentity(tc.ConnectionState())
				h2s.ServeConn(tc, &http2.ServeConnOpts{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("l5d-client-id", id)
					io.WriteString(w, r.Proto+" "+tc.ConnectionState().NegotiatedProtocol)
				})})
			}()
		}
	}()

	tr := &http2.Transport{
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			d := tls.Dialer{Config: cli.Client(serverID)}
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	for i := 0; i < 3; i++ { // one pooled connection, several requests
		resp, err := (&http.Client{Transport: tr}).Get("https://" + lis.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "HTTP/2.0 "+ALPNMeshH2 {
			t.Errorf("body %q", body)
		}
		if got := resp.Header.Get("l5d-client-id"); got != clientID {
			t.Errorf("server saw client %q, want %q", got, clientID)
		}
	}
}

// BenchmarkHTTP2Request compares one small HTTP/2 request over a pooled
// connection in cleartext (h2c, today's proxy-to-proxy hop) and over mesh
// mTLS: the per-request cost mTLS adds at the transport.
func BenchmarkHTTP2Request(b *testing.B) {
	a := testAuthority(b)
	serverID := a.Domain.Name("faces", "smiley")
	srv := NewMesh(a.AnchorPool(), StaticCertSource{issue(b, a, "faces", "smiley")})
	cli := NewMesh(a.AnchorPool(), StaticCertSource{issue(b, a, "faces", "face")})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })

	for _, mode := range []string{"h2c", "mtls"} {
		b.Run(mode, func(b *testing.B) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer lis.Close()
			h2s := &http2.Server{}
			go func() {
				for {
					c, err := lis.Accept()
					if err != nil {
						return
					}
					go func() {
						if mode == "mtls" {
							// http2.Server refuses a *tls.Conn whose
							// handshake has not run yet.
							tc := tls.Server(c, srv.Server())
							if err := tc.Handshake(); err != nil {
								c.Close()
								return
							}
							c = tc
						}
						h2s.ServeConn(c, &http2.ServeConnOpts{Handler: handler})
					}()
				}
			}()
			tr := &http2.Transport{
				AllowHTTP: true,
				DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
					if mode == "mtls" {
						return (&tls.Dialer{Config: cli.Client(serverID)}).DialContext(ctx, network, addr)
					}
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				},
			}
			defer tr.CloseIdleConnections()
			url := "http://" + lis.Addr().String() + "/"
			if mode == "mtls" {
				url = "https://" + lis.Addr().String() + "/"
			}
			client := &http.Client{Transport: tr}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := client.Get(url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
