// Package detect sniffs the protocol a client speaks from the first bytes of
// a connection, as Linkerd's proxy does: the HTTP/2 connection preface means
// HTTP/2 (prior knowledge), an HTTP/1 request line means HTTP/1, anything
// else is opaque TCP. Nothing is sent upstream until detection ends.
package detect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// Protocol is a detected protocol.
type Protocol int

const (
	// Unknown means more bytes are needed to decide.
	Unknown Protocol = iota
	// HTTP1 is an HTTP/1.x request line.
	HTTP1
	// HTTP2 is the HTTP/2 client connection preface.
	HTTP2
	// Opaque is anything else.
	Opaque
)

func (p Protocol) String() string {
	switch p {
	case HTTP1:
		return "http/1"
	case HTTP2:
		return "h2"
	case Opaque:
		return "opaque"
	}
	return "unknown"
}

// MaxPeek is how many bytes detection reads at most.
const MaxPeek = 1024

// preface is the part of the HTTP/2 preface that decides (as in Linkerd).
const preface = "PRI * HTTP/2.0"

// Classify decides the protocol from the bytes read so far. It returns
// Unknown while b is a valid prefix of both outcomes and shorter than
// MaxPeek; a request line still incomplete at MaxPeek bytes is HTTP/1. Classify is monotonic: once it decides for b it decides the same
// for any extension of b.
func Classify(b []byte) Protocol {
	// Only the first MaxPeek bytes count, so a decision at MaxPeek is final.
	b = b[:min(len(b), MaxPeek)]
	if len(b) >= len(preface) && string(b[:len(preface)]) == preface {
		return HTTP2
	}
	if len(b) < len(preface) && string(b) == preface[:len(b)] {
		return Unknown
	}
	line, complete := b, false
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		line, complete = b[:i], true
	}
	if complete {
		line = bytes.TrimSuffix(line, []byte{'\r'})
		if isRequestLine(line) {
			return HTTP1
		}
		return Opaque
	}
	if !requestLinePrefix(line) {
		return Opaque
	}
	if len(b) >= MaxPeek {
		// A request line longer than we peek (a long URL): a method and
		// the start of a target are enough to call it HTTP/1.
		if m, _, ok := bytes.Cut(line, []byte{' '}); ok && len(m) > 0 {
			return HTTP1
		}
		return Opaque
	}
	return Unknown
}

// isRequestLine reports whether line is `METHOD SP TARGET SP HTTP/1.x`.
func isRequestLine(line []byte) bool {
	m, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok || len(m) == 0 || !isToken(m) {
		return false
	}
	target, version, ok := bytes.Cut(rest, []byte{' '})
	if !ok || len(target) == 0 || bytes.IndexByte(target, ' ') >= 0 || !isTarget(target) {
		return false
	}
	return len(version) == 8 && string(version[:7]) == "HTTP/1." && (version[7] == '0' || version[7] == '1')
}

// requestLinePrefix reports whether b could still become a request line.
func requestLinePrefix(b []byte) bool {
	m, rest, cut := bytes.Cut(b, []byte{' '})
	if !isToken(m) || (cut && len(m) == 0) {
		return false
	}
	if !cut {
		return true
	}
	target, version, cut := bytes.Cut(rest, []byte{' '})
	if !isTarget(target) {
		return false
	}
	if !cut {
		return true
	}
	if len(target) == 0 || len(version) > 8 {
		return false
	}
	const v = "HTTP/1.x"
	for i := range version {
		if i == 7 {
			return version[i] == '0' || version[i] == '1'
		}
		if version[i] != v[i] {
			return false
		}
	}
	return true
}

func isToken(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || bytes.IndexByte([]byte(`"(),/:;<=>?@[\]{}`), c) >= 0 {
			return false
		}
	}
	return true
}

func isTarget(b []byte) bool {
	for _, c := range b {
		if c <= ' ' || c >= 0x7f {
			return false
		}
	}
	return true
}

// ErrEOF is returned when the client closed before sending anything.
var ErrEOF = errors.New("detect: connection closed before any data")

// Detect reads from c until the protocol is known, at most MaxPeek bytes and
// until timeout. prefix holds bytes already read from c (for example by an
// HTTP server before a hijack); it is replayed first. A timeout (even before
// any byte) or EOF after some data yields Opaque; EOF before any byte is
// ErrEOF. The returned conn replays every byte read.
func Detect(c net.Conn, prefix []byte, timeout time.Duration) (Protocol, net.Conn, error) {
	buf := make([]byte, 0, MaxPeek)
	buf = append(buf, prefix[:min(len(prefix), MaxPeek)]...)
	rest := prefix[len(buf):]
	p := Classify(buf)
	if p == Unknown && len(buf) < MaxPeek {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return Unknown, c, fmt.Errorf("detect: %w", err)
		}
		for p == Unknown {
			n, err := c.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			p = Classify(buf)
			if err != nil && p == Unknown {
				switch {
				case errors.Is(err, os.ErrDeadlineExceeded):
					// Silence (a server-speaks-first protocol) or a stall:
					// opaque, as Linkerd does.
				case errors.Is(err, io.EOF) && len(buf) == 0:
					return Unknown, c, ErrEOF
				case errors.Is(err, io.EOF):
				default:
					return Unknown, c, fmt.Errorf("detect: %w", err)
				}
				p = Opaque
			}
		}
		if err := c.SetReadDeadline(time.Time{}); err != nil {
			return Unknown, c, fmt.Errorf("detect: %w", err)
		}
	}
	if len(rest) > 0 {
		buf = append(buf, rest...)
	}
	if len(buf) == 0 {
		return p, c, nil
	}
	return p, &Conn{Conn: c, buf: buf}, nil
}

// Conn is a net.Conn that first replays bytes already read.
type Conn struct {
	net.Conn
	buf []byte
}

// Read replays the buffered bytes, then reads from the connection.
func (c *Conn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// Unwrap returns the underlying connection.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

// Replay returns a connection that yields b before reading from c: bytes
// already consumed from c by another sniffer (a TLS ClientHello peek).
func Replay(c net.Conn, b []byte) net.Conn {
	if len(b) == 0 {
		return c
	}
	return &Conn{Conn: c, buf: b}
}

// Buffered returns the bytes not yet replayed (the start of what the
// client sent, when nothing has been read from c yet).
func (c *Conn) Buffered() []byte { return c.buf }
