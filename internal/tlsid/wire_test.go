package tlsid

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// tap relays TCP between a client and a server on 127.0.0.1 and keeps a
// copy of every byte in both directions: what a capture on the wire sees.
type tap struct {
	lis     net.Listener
	mu      sync.Mutex
	capture bytes.Buffer
}

func newTap(t testing.TB, upstream string) *tap {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{lis: lis}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			go tp.pipe(c, u)
			go tp.pipe(u, c)
		}
	}()
	return tp
}

func (tp *tap) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			tp.mu.Lock()
			tp.capture.Write(buf[:n])
			tp.mu.Unlock()
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (tp *tap) bytes() []byte {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return bytes.Clone(tp.capture.Bytes())
}

// No application byte crosses a mesh connection in the clear: a request
// and a response, each with a marker, go through; the wire shows neither.
func TestNoPlaintextOnTheWire(t *testing.T) {
	a := testAuthority(t)
	serverID := a.Domain.Name("faces", "smiley")
	srv := NewMesh(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "smiley")})
	cli := NewMesh(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "face")})
	request := bytes.Repeat([]byte("GET /secret-request-marker HTTP/1.1\r\n"), 50)
	response := bytes.Repeat([]byte("HTTP/1.1 200 secret-response-marker\r\n"), 50)

	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.Server())
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	got := make(chan []byte, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		b := make([]byte, len(request))
		io.ReadFull(c, b)
		c.Write(response)
		got <- b
	}()
	tp := newTap(t, lis.Addr().String())

	c, err := tls.Dial("tcp", tp.lis.Addr().String(), cli.Client(serverID))
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := c.Write(request); err != nil {
		t.Fatal(err)
	}
	resp := make([]byte, len(response))
	if _, err := io.ReadFull(c, resp); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if !bytes.Equal(<-got, request) || !bytes.Equal(resp, response) {
		t.Fatal("application data did not arrive intact")
	}
	wire := tp.bytes()
	if len(wire) < len(request)+len(response) {
		t.Fatalf("captured only %d bytes", len(wire))
	}
	for _, marker := range []string{"secret-request-marker", "secret-response-marker", "HTTP/1.1"} {
		if bytes.Contains(wire, []byte(marker)) {
			t.Errorf("%q crossed the wire in plaintext", marker)
		}
	}
	// The capture is TLS: it starts with a handshake record.
	if !LooksLikeTLS(wire[:3]) {
		t.Errorf("capture starts with %x, not a TLS record", wire[:3])
	}
}

// BenchmarkHandshake measures full mTLS handshakes (both certificates
// verified) over 127.0.0.1, one connection per iteration.
func BenchmarkHandshake(b *testing.B) {
	a := testAuthority(b)
	serverID := a.Domain.Name("faces", "smiley")
	srv := NewMesh(a.AnchorPool(), StaticCertSource{issue(b, a, "faces", "smiley")})
	cli := NewMesh(a.AnchorPool(), StaticCertSource{issue(b, a, "faces", "face")})
	lis, err := tls.Listen("tcp", "127.0.0.1:0", srv.Server())
	if err != nil {
		b.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	cfg := cli.Client(serverID)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := tls.Dial("tcp", lis.Addr().String(), cfg)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
