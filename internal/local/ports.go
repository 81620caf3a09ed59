package local

import (
	"fmt"
	"net"
	"sync"
)

// Ports hands out free loopback TCP ports. A port is free when the kernel
// gives it to a listener on 127.0.0.1:0; Ports remembers what it handed out
// so that two replicas never get the same port even before their processes
// bind it.
type Ports struct {
	mu    sync.Mutex
	taken map[int]bool
}

// NewPorts returns an allocator with nothing handed out.
func NewPorts() *Ports { return &Ports{taken: map[int]bool{}} }

// Alloc returns a loopback port that no listener holds and that this
// allocator has not handed out.
func (p *Ports) Alloc() (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("local: allocating a loopback port: %w", err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !p.taken[port] {
			p.taken[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("local: no free loopback port after 100 tries")
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
