package tcp

import (
	"net"
	"runtime"
	"strings"
	"testing"
)

// Without iptables, a TCP connection's original destination is its own
// local address (Linux); a connection that is no socket is refused.
func TestOriginalDst(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := OriginalDst(a); err == nil {
		t.Error("a pipe has an original destination")
	}
	if runtime.GOOS != "linux" {
		return
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dst, err := OriginalDst(s)
	if err != nil {
		// No conntrack entry (nf_conntrack not loaded): a clear error.
		if !strings.Contains(err.Error(), "SO_ORIGINAL_DST") {
			t.Fatalf("unclear error: %v", err)
		}
		t.Skipf("no conntrack here: %v", err)
	}
	if dst.String() != s.LocalAddr().String() {
		t.Errorf("original destination %s, want the local address %s", dst, s.LocalAddr())
	}
}
