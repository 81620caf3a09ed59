// Package tcp holds the proxy's connection plumbing: a listener fed by the
// proxy's own accept loop (so detected connections can be handed to an
// http.Server), byte-counting connections, connection tracking for graceful
// shutdown, and bidirectional copying for opaque traffic.
package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"

	"github.com/weft-mesh/weft/internal/metrics"
)

// ChanListener is a net.Listener whose connections are pushed by Push. It
// lets the proxy run detection before an http.Server sees a connection.
type ChanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

// NewChanListener returns a listener reporting addr as its address.
func NewChanListener(addr net.Addr) *ChanListener {
	return &ChanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

// Push hands c to the server calling Accept. It returns false (and the
// caller keeps c) once the listener is closed.
func (l *ChanListener) Push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.done:
		return false
	}
}

// Accept waits for the next pushed connection.
func (l *ChanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept and Push.
func (l *ChanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

// Addr returns the address given to NewChanListener.
func (l *ChanListener) Addr() net.Addr { return l.addr }

// CountingConn counts the bytes read and written and reports them to its
// metrics when closed (Linkerd counts bytes on close too).
type CountingConn struct {
	net.Conn
	m        atomic.Pointer[metrics.TCP] // nil until Start
	fallback *metrics.TCP
	read     atomic.Uint64
	write    atomic.Uint64
	closed   atomic.Bool
	onDone   func()
}

// Count wraps c, counting it as opened now. onClose, if not nil, runs once
// when the connection is closed.
func Count(c net.Conn, m *metrics.TCP, onClose func()) *CountingConn {
	cc := &CountingConn{Conn: c, fallback: m, onDone: onClose}
	cc.Start(m)
	return cc
}

// CountLater wraps c, counting its bytes from now but opening its series
// only at Start, once the labels are known (the inbound learns the
// client's identity after the TLS handshake). A connection closed before
// Start is counted in fallback.
func CountLater(c net.Conn, fallback *metrics.TCP, onClose func()) *CountingConn {
	return &CountingConn{Conn: c, fallback: fallback, onDone: onClose}
}

// Start counts the connection as opened in m; only the first call counts.
func (c *CountingConn) Start(m *metrics.TCP) {
	if c.m.CompareAndSwap(nil, m) {
		m.Open()
	}
}

func (c *CountingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(uint64(n))
	return n, err
}

func (c *CountingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.write.Add(uint64(n))
	return n, err
}

// Close closes the connection and records its metrics once.
func (c *CountingConn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.Start(c.fallback)
		c.m.Load().Close(c.read.Load(), c.write.Load())
		if c.onDone != nil {
			c.onDone()
		}
	}
	return err
}

// CloseWrite half-closes the connection when the underlying one supports it.
func (c *CountingConn) CloseWrite() error { return closeWrite(c.Conn) }

// Unwrap returns the underlying connection.
func (c *CountingConn) Unwrap() net.Conn { return c.Conn }

func closeWrite(c net.Conn) error {
	for {
		switch v := c.(type) {
		case interface{ CloseWrite() error }:
			return v.CloseWrite()
		case interface{ Unwrap() net.Conn }:
			c = v.Unwrap()
		default:
			return c.Close()
		}
	}
}

// Tracker remembers open connections that no http.Server tracks (opaque
// streams, tunnels, upgraded connections) so shutdown can close them.
type Tracker struct {
	mu     sync.Mutex
	conns  map[io.Closer]struct{}
	closed bool
	wg     sync.WaitGroup
}

// Add tracks c until the returned function runs. If the tracker is already
// closed, c is closed at once.
func (t *Tracker) Add(c io.Closer) (done func()) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		c.Close()
		return func() {}
	}
	if t.conns == nil {
		t.conns = make(map[io.Closer]struct{})
	}
	t.conns[c] = struct{}{}
	t.wg.Add(1)
	t.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
			t.wg.Done()
		})
	}
}

// Shutdown waits for tracked connections to finish until ctx ends, then
// closes those left and returns without waiting further.
func (t *Tracker) Shutdown(ctx context.Context) {
	t.mu.Lock()
	t.closed = true
	t.mu.Unlock()
	idle := make(chan struct{})
	go func() { t.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		return
	case <-ctx.Done():
	}
	t.mu.Lock()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	// Their goroutines end on their own once the connections are closed.
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Splice copies bytes both ways between a and b until both directions end,
// half-closing each side as its peer finishes, then closes both.
func Splice(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		pipe(b, a)
	}()
	pipe(a, b)
	wg.Wait()
	a.Close()
	b.Close()
}

// pipe copies src to dst, then half-closes dst.
func pipe(dst, src net.Conn) {
	bp := bufPool.Get().(*[]byte)
	_, err := io.CopyBuffer(writerOnly{dst}, src, *bp)
	bufPool.Put(bp)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		// A reset on one side: tear both down rather than leave the other
		// direction waiting forever.
		dst.Close()
		src.Close()
		return
	}
	if closeWrite(dst) != nil {
		dst.Close()
	}
}

// writerOnly hides ReadFrom so CopyBuffer uses our pooled buffer.
type writerOnly struct{ io.Writer }
