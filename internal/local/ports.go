package local

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Ports hands out free loopback TCP ports for replicas to bind later.
// Ports remembers what it handed out so that two replicas never get the
// same port even before their processes bind it.
//
// The ports come from below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range) when there is room: a port from that
// range, free at Alloc, may become the source port of one of the mesh's
// own outgoing connections before the replica binds it, and a long-lived
// connection (a proxy's gRPC stream to the control plane) then keeps the
// replica from starting for as long as it lives.
type Ports struct {
	mu     sync.Mutex
	taken  map[int]bool
	lo, hi int // the range to draw from, [lo, hi); 0, 0: let the kernel pick
}

// NewPorts returns an allocator with nothing handed out.
func NewPorts() *Ports {
	p := &Ports{taken: map[int]bool{}}
	if eph := ephemeralLow(); eph-minPort >= 1000 {
		p.lo, p.hi = minPort, eph
	}
	return p
}

// minPort is the lowest port Ports hands out: above the well-known and
// commonly configured service ports.
const minPort = 20000

// ephemeralLow returns the start of the kernel's ephemeral port range,
// Linux's default when it cannot be read.
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if lo, err := strconv.Atoi(f[0]); err == nil {
				return lo
			}
		}
	}
	return 32768
}

// Alloc returns a loopback port that no socket holds and that this
// allocator has not handed out.
func (p *Ports) Alloc() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 100 {
		port, err := p.candidate()
		if err != nil {
			return 0, err
		}
		if !p.taken[port] {
			p.taken[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("local: no free loopback port after 100 tries")
}

// candidate returns a port that could be bound a moment ago: drawn at
// random from the allocator's range (so that two supervisors rarely try
// the same one), or the kernel's choice without a range.
func (p *Ports) candidate() (int, error) {
	if p.hi == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("local: allocating a loopback port: %w", err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
	var last error
	for range 100 {
		port := p.lo + rand.IntN(p.hi-p.lo)
		if p.taken[port] {
			continue
		}
		l, err := net.Listen("tcp", loopback(port))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("local: no free loopback port in %d-%d: %v", p.lo, p.hi-1, last)
}

// Reserve marks port as handed out (for fixed, flag-given ports).
func (p *Ports) Reserve(port int) {
	p.mu.Lock()
	p.taken[port] = true
	p.mu.Unlock()
}

// Release returns ports to the pool once their processes have exited.
func (p *Ports) Release(ports ...int) {
	p.mu.Lock()
	for _, port := range ports {
		delete(p.taken, port)
	}
	p.mu.Unlock()
}

// CheckFree reports a clear error if addr cannot be bound now; flag names the
// command-line flag that set it, so the user knows what to change.
func CheckFree(addr, flag string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("local: %s is not available (%v); another process holds it: stop that process or choose another address with %s", addr, err, flag)
	}
	return l.Close()
}

func loopback(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }
