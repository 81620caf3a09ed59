package outbound

import (
	"net"
	"net/http"
	"net/netip"
	"testing"
)

func TestTransparentAuthority(t *testing.T) {
	dst := netip.MustParseAddrPort("10.96.0.10:8080")
	for _, c := range []struct{ host, want string }{
		{"", "10.96.0.10:8080"},                // no Host: where the app dialed
		{"smiley", "smiley:8080"},              // a name without port takes the dialed port
		{"smiley.faces:80", "smiley.faces:80"}, // an explicit port is kept
		{"10.96.0.10", "10.96.0.10:8080"},      // IP literals: the original destination
		{"10.1.2.3:80", "10.96.0.10:8080"},     // even another IP
		{"[fd00::1]", "10.96.0.10:8080"},       // IPv6 literal
		{"[fd00::1]:80", "10.96.0.10:8080"},    // IPv6 literal with port
		{"web.ns.svc.cluster.local", "web.ns.svc.cluster.local:8080"},
	} {
		r := &http.Request{Host: c.host}
		if got := transparentAuthority(r, dst); got != c.want {
			t.Errorf("Host %q: got %q, want %q", c.host, got, c.want)
		}
	}
}

func TestRedirected(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	self := netip.MustParseAddrPort(s.LocalAddr().String())
	if redirected(s, self) {
		t.Error("a connection to the listener itself counted as redirected")
	}
	if !redirected(s, netip.MustParseAddrPort("10.0.0.1:80")) {
		t.Error("a connection to another address not counted as redirected")
	}
}
