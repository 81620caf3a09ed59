package local

import (
	"net"
	"testing"
)

// TestPortsAvoidTheEphemeralRange: handed-out ports are distinct, bindable
// and below the kernel's ephemeral range, where the mesh's own outgoing
// connections cannot take them before the replica binds.
func TestPortsAvoidTheEphemeralRange(t *testing.T) {
	p := NewPorts()
	eph := ephemeralLow()
	if p.hi != eph || p.lo != minPort {
		t.Fatalf("range [%d, %d), want [%d, %d)", p.lo, p.hi, minPort, eph)
	}
	seen := map[int]bool{}
	for range 200 {
		port, err := p.Alloc()
		if err != nil {
			t.Fatal(err)
		}
		if port < minPort || port >= eph || seen[port] {
			t.Fatalf("port %d: outside [%d, %d) or handed out twice", port, minPort, eph)
		}
		seen[port] = true
	}
	// A port some socket holds is not handed out.
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	q := &Ports{taken: map[int]bool{}, lo: held.Addr().(*net.TCPAddr).Port, hi: held.Addr().(*net.TCPAddr).Port + 1}
	if port, err := q.Alloc(); err == nil {
		t.Fatalf("handed out port %d, which a listener holds", port)
	}
	// Released ports can be handed out again.
	q.lo, q.hi = minPort, minPort+1
	if _, err := q.Alloc(); err != nil {
		t.Skipf("port %d in use on this machine: %v", minPort, err)
	}
	if _, err := q.Alloc(); err == nil {
		t.Fatal("a one-port range handed its port out twice")
	}
	q.Release(minPort)
	if _, err := q.Alloc(); err != nil {
		t.Fatalf("after Release: %v", err)
	}
}
