package tcp

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/internal/metrics"
)

// pair returns both ends of a loopback TCP connection.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// TestSpliceHalfClose relays a request, half-closes, and still gets the
// full reply: each direction ends on its own.
func TestSpliceHalfClose(t *testing.T) {
	app, proxyIn := pair(t)       // app <-> proxy
	proxyOut, upstream := pair(t) // proxy <-> upstream
	reg := metrics.NewRegistry()
	m := metrics.NewProxy(reg).TCP(metrics.L("direction", "outbound"))
	counted := Count(proxyIn, m, nil)
	done := make(chan struct{})
	go func() { Splice(counted, proxyOut); close(done) }()

	go func() {
		// Upstream reads everything until the half-close, then answers.
		b, _ := io.ReadAll(upstream)
		upstream.Write([]byte("reply to " + string(b)))
		upstream.Close()
	}()
	app.Write([]byte("request"))
	app.(*net.TCPConn).CloseWrite()
	app.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(app)
	if err != nil || string(got) != "reply to request" {
		t.Fatalf("app got %q, %v", got, err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Splice did not return after both directions ended")
	}
	var b strings.Builder
	reg.WriteText(&b)
	for _, want := range []string{
		`tcp_open_total{direction="outbound"} 1`,
		`tcp_open_connections{direction="outbound"} 0`,
		`tcp_read_bytes_total{direction="outbound"} 7`,
		`tcp_write_bytes_total{direction="outbound"} 16`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("metrics lack %s:\n%s", want, b.String())
		}
	}
}

func TestTrackerShutdown(t *testing.T) {
	var tr Tracker
	a, _ := pair(t)
	b, _ := pair(t)
	doneA := tr.Add(a)
	tr.Add(b) // never finishes on its own
	doneA()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	tr.Shutdown(ctx) // must close b after the grace period and return
	if _, err := b.Write([]byte("x")); err == nil {
		t.Error("a connection still open after the grace period was not closed")
	}
	c, _ := pair(t)
	tr.Add(c)
	if _, err := c.Write([]byte("x")); err == nil {
		t.Error("a connection added after Shutdown was not closed")
	}
}

func TestChanListener(t *testing.T) {
	l := NewChanListener(&net.TCPAddr{})
	a, _ := pair(t)
	go l.Push(a)
	got, err := l.Accept()
	if err != nil || got != a {
		t.Fatalf("Accept = %v, %v", got, err)
	}
	l.Close()
	if l.Push(a) {
		t.Error("Push after Close succeeded")
	}
	if _, err := l.Accept(); err != net.ErrClosed {
		t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
	}
}
