// Package proxytest holds test doubles for code that talks to the proxy's
// control plane: a real gRPC Destination server whose answers the test
// controls.
package proxytest

import (
	"maps"
	"net"
	"net/netip"
	"sync"
	"testing"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	netpb "github.com/linkerd/linkerd2-proxy-api/go/net"
	"google.golang.org/grpc"
)

// Endpoint is one address the Destination server announces.
type Endpoint struct {
	Addr   string            // IPv4 host:port
	H2     bool              // announce protocol_hint h2 (a meshed peer)
	Labels map[string]string // metric_labels
}

// Destination is a controllable io.linkerd.proxy.destination.Destination
// server. Paths not Set answer no_endpoints{exists: false}.
type Destination struct {
	pb.UnimplementedDestinationServer

	mu       sync.Mutex
	services map[string][]Endpoint
	changed  chan struct{}
	tokens   []string
}

// NewDestination returns a server that knows no services.
func NewDestination() *Destination {
	return &Destination{services: map[string][]Endpoint{}, changed: make(chan struct{})}
}

// Set makes path (`name.ns.svc.cluster.local:port`) a known service with eps
// (none: known but empty) and notifies open streams.
func (d *Destination) Set(path string, eps ...Endpoint) {
	d.mu.Lock()
	d.services[path] = eps
	close(d.changed)
	d.changed = make(chan struct{})
	d.mu.Unlock()
}

// Tokens returns the context tokens of every Get received so far.
func (d *Destination) Tokens() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.tokens...)
}

// Serve serves on addr ("127.0.0.1:0" for any port) until the test ends or
// stop is called; it returns the bound address.
func (d *Destination) Serve(t testing.TB, addr string) (bound string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("destination listen: %v", err)
	}
	s := grpc.NewServer()
	pb.RegisterDestinationServer(s, d)
	go s.Serve(ln)
	t.Cleanup(s.Stop)
	return ln.Addr().String(), s.Stop
}

// Get streams updates for one path: the current state at once, then diffs.
func (d *Destination) Get(req *pb.GetDestination, stream pb.Destination_GetServer) error {
	d.mu.Lock()
	d.tokens = append(d.tokens, req.GetContextToken())
	d.mu.Unlock()
	sent := map[string]Endpoint{}
	const (
		none = iota
		unknown
		empty
		some
	)
	last := none
	for {
		d.mu.Lock()
		eps, exists := d.services[req.GetPath()]
		changed := d.changed
		d.mu.Unlock()
		var ups []*pb.Update
		switch {
		case !exists:
			if last != unknown {
				ups = append(ups, &pb.Update{Update: &pb.Update_NoEndpoints{NoEndpoints: &pb.NoEndpoints{Exists: false}}})
				last = unknown
			}
			clear(sent)
		case len(eps) == 0:
			if last != empty {
				ups = append(ups, &pb.Update{Update: &pb.Update_NoEndpoints{NoEndpoints: &pb.NoEndpoints{Exists: true}}})
				last = empty
			}
			clear(sent)
		default:
			cur := map[string]Endpoint{}
			for _, e := range eps {
				cur[e.Addr] = e
			}
			var removed []*netpb.TcpAddress
			for a := range sent {
				if _, ok := cur[a]; !ok {
					removed = append(removed, tcpAddr(a))
				}
			}
			if len(removed) > 0 {
				ups = append(ups, &pb.Update{Update: &pb.Update_Remove{Remove: &pb.AddrSet{Addrs: removed}}})
			}
			var added []*pb.WeightedAddr
			for a, e := range cur {
				if old, ok := sent[a]; ok && old.H2 == e.H2 && maps.Equal(old.Labels, e.Labels) {
					continue
				}
				wa := &pb.WeightedAddr{Addr: tcpAddr(a), Weight: 10000, MetricLabels: e.Labels}
				if e.H2 {
					wa.ProtocolHint = &pb.ProtocolHint{Protocol: &pb.ProtocolHint_H2_{H2: &pb.ProtocolHint_H2{}}}
				}
				added = append(added, wa)
			}
			if len(added) > 0 {
				ups = append(ups, &pb.Update{Update: &pb.Update_Add{Add: &pb.WeightedAddrSet{Addrs: added}}})
			}
			sent = cur
			last = some
		}
		for _, u := range ups {
			if err := stream.Send(u); err != nil {
				return err
			}
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return nil
		}
	}
}

func tcpAddr(s string) *netpb.TcpAddress {
	ap := netip.MustParseAddrPort(s)
	b := ap.Addr().As4()
	ip := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return &netpb.TcpAddress{Ip: &netpb.IPAddress{Ip: &netpb.IPAddress_Ipv4{Ipv4: ip}}, Port: uint32(ap.Port())}
}
