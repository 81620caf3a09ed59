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
