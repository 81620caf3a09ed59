package tlsid

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// LooksLikeTLS reports whether the first bytes of a connection may be a
// TLS ClientHello: a handshake record (0x16) of TLS major version 3. One
// byte is enough to tell TLS from HTTP/1, HTTP/2 prior knowledge and most
// opaque protocols; three bytes make it surer.
func LooksLikeTLS(prefix []byte) bool {
	if len(prefix) == 0 || prefix[0] != 0x16 {
		return false
	}
	return len(prefix) < 2 || prefix[1] == 0x03
}

// maxHelloBytes bounds how much PeekClientHello reads: one record.
const maxHelloBytes = 5 + 1<<14 + 2048

// errPeeked stops crypto/tls once it has parsed the hello.
var errPeeked = errors.New("tlsid: client hello peeked")

// PeekClientHello reads a TLS ClientHello from r without answering it and
// returns what it says (server name, ALPN, versions) and every byte read,
// to be replayed into the real handshake (tls.Server over a connection
// that first yields consumed) or passed through untouched. An inbound
// proxy uses it to terminate mTLS only when the SNI is its own identity.
func PeekClientHello(r io.Reader) (hello *tls.ClientHelloInfo, consumed []byte, err error) {
	var buf bytes.Buffer
	tee := io.TeeReader(io.LimitReader(r, maxHelloBytes), &buf)
	srv := tls.Server(peekConn{r: tee}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			cp := *h
			cp.Conn = nil
			hello = &cp
			return nil, errPeeked
		},
	})
	herr := srv.Handshake()
	if hello != nil {
		return hello, buf.Bytes(), nil
	}
	if herr == nil {
		herr = errors.New("no client hello")
	}
	return nil, buf.Bytes(), errors.Join(errors.New("tlsid: reading a TLS client hello"), herr)
}

// peekConn feeds crypto/tls the peeked bytes and swallows what it would
// send (an alert): the real peer must see nothing.
type peekConn struct{ r io.Reader }

func (c peekConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (c peekConn) Write(p []byte) (int, error)    { return len(p), nil }
func (peekConn) Close() error                     { return nil }
func (peekConn) LocalAddr() net.Addr              { return nil }
func (peekConn) RemoteAddr() net.Addr             { return nil }
func (peekConn) SetDeadline(time.Time) error      { return nil }
func (peekConn) SetReadDeadline(time.Time) error  { return nil }
func (peekConn) SetWriteDeadline(time.Time) error { return nil }
