package tlsid

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"
	"time"
)

// replayConn yields prefix before reading the connection again.
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// The inbound side peeks the ClientHello, sees its own identity as SNI,
// and completes the real mTLS handshake over the replayed bytes.
func TestPeekClientHelloThenTerminate(t *testing.T) {
	a := testAuthority(t)
	serverID := a.Domain.Name("faces", "smiley")
	srv := NewMesh(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "smiley")})
	cli := NewMesh(a.AnchorPool(), StaticCertSource{issue(t, a, "faces", "face")})

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type result struct {
		hello    *tls.ClientHelloInfo
		clientID string
		err      error
	}
	done := make(chan result, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(testTimeout))
		first := make([]byte, 1)
		if _, err := io.ReadFull(c, first); err != nil || !LooksLikeTLS(first) {
			done <- result{err: err}
			return
		}
		hello, consumed, err := PeekClientHello(io.MultiReader(bytes.NewReader(first), c))
		if err != nil {
			done <- result{err: err}
			return
		}
		tc := tls.Server(&replayConn{Conn: c, r: io.MultiReader(bytes.NewReader(consumed), c)}, srv.Server())
		if err := tc.Handshake(); err != nil {
			done <- result{hello: hello, err: err}
			return
		}
		id, err := PeerIdentity(tc.ConnectionState())
		io.Copy(tc, io.LimitReader(tc, 5))
		done <- result{hello: hello, clientID: id, err: err}
	}()

	c, err := tls.Dial("tcp", lis.Addr().String(), cli.Client(serverID))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(testTimeout))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\n" {
		t.Fatalf("echo %q, %v", buf, err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.hello.ServerName != serverID {
		t.Errorf("peeked SNI %q, want %q", r.hello.ServerName, serverID)
	}
	if len(r.hello.SupportedProtos) == 0 || r.hello.SupportedProtos[0] != ALPNMeshH2 {
		t.Errorf("peeked ALPN %v", r.hello.SupportedProtos)
	}
	if r.clientID != a.Domain.Name("faces", "face") {
		t.Errorf("client identity %q", r.clientID)
	}
}

func TestPeekClientHelloNotTLS(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
		"\x16\x03\x01\x00\x05hello", // a handshake record that is no hello
		"",
	} {
		hello, consumed, err := PeekClientHello(bytes.NewReader([]byte(in)))
		if err == nil || hello != nil {
			t.Errorf("PeekClientHello(%q) = %v, %v", in, hello, err)
		}
		if !bytes.HasPrefix([]byte(in), consumed) {
			t.Errorf("PeekClientHello(%q) consumed %q, not a prefix of the input", in, consumed)
		}
	}
	if LooksLikeTLS([]byte("GET")) || LooksLikeTLS([]byte("PRI")) || LooksLikeTLS(nil) || !LooksLikeTLS([]byte{0x16, 0x03, 0x01}) {
		t.Error("LooksLikeTLS misclassifies")
	}
}

func FuzzPeekClientHello(f *testing.F) {
	// A real ClientHello as a seed.
	var rec bytes.Buffer
	c := tls.Client(recordConn{&rec}, &tls.Config{ServerName: "smiley.faces.serviceaccount.identity.weft.cluster.local", NextProtos: MeshALPN})
	c.SetDeadline(time.Now().Add(time.Second))
	c.Handshake()
	f.Add(rec.Bytes())
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, in []byte) {
		hello, consumed, err := PeekClientHello(bytes.NewReader(in))
		if !bytes.HasPrefix(in, consumed) {
			t.Fatalf("consumed %q is not a prefix of the input", consumed)
		}
		if (err == nil) != (hello != nil) {
			t.Fatalf("hello %v with err %v", hello, err)
		}
		if hello != nil && !LooksLikeTLS(in) {
			t.Fatalf("a hello from input LooksLikeTLS refuses: %q", in[:min(len(in), 3)])
		}
	})
}

// recordConn captures what a TLS client sends and fails its reads, so a
// handshake stops after the ClientHello.
type recordConn struct{ w io.Writer }

func (c recordConn) Read([]byte) (int, error)       { return 0, io.EOF }
func (c recordConn) Write(p []byte) (int, error)    { return c.w.Write(p) }
func (recordConn) Close() error                     { return nil }
func (recordConn) LocalAddr() net.Addr              { return nil }
func (recordConn) RemoteAddr() net.Addr             { return nil }
func (recordConn) SetDeadline(time.Time) error      { return nil }
func (recordConn) SetReadDeadline(time.Time) error  { return nil }
func (recordConn) SetWriteDeadline(time.Time) error { return nil }
