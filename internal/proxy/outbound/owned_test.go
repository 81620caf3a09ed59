package outbound

import (
	"context"
	"net"
	"net/http"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/internal/proxy/balance"
	"github.com/weft-mesh/weft/internal/proxy/discovery"
	"github.com/weft-mesh/weft/internal/proxy/forward"
	"github.com/weft-mesh/weft/internal/proxy/proxytest"
)

// firstPick is a P2C balancer whose first pick is the endpoint at addr.
type firstPick struct {
	*balance.P2C
	addr string
	once sync.Once
}

func (f *firstPick) Pick() (*balance.Node, error) {
	var n *balance.Node
	var err error
	f.once.Do(func() {
		for {
			if n, err = f.P2C.Pick(); err != nil || n.Endpoint.Addr == f.addr {
				return
			}
			n.Done()
		}
	})
	if n != nil || err != nil {
		return n, err
	}
	return f.P2C.Pick()
}

// TestOwnedRetryRestoresHeader: a request the transport owns is changed in
// place (RoundTripOwned); when its first endpoint, a meshed peer (marked
// l5d-orig-proto for HTTP/2), refuses the connection and the request goes
// to an unmeshed endpoint instead, that one must get the request as the
// client sent it.
func TestOwnedRetryRestoresHeader(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	var mu sync.Mutex
	var seen []string
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Proto+" orig-proto="+r.Header.Get(forward.OrigProtoHeader))
		mu.Unlock()
	})}
	go app.Serve(ln)
	t.Cleanup(func() { app.Close() })

	d := proxytest.NewDestination()
	dstAddr, _ := d.Serve(t, "127.0.0.1:0")
	d.Set("web.faces.svc.cluster.local:80", proxytest.Endpoint{Addr: dead, H2: true}, proxytest.Endpoint{Addr: ln.Addr().String()})
	res, err := discovery.Dial(dstAddr, discovery.Config{Namespace: "faces", Pod: "gui-1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go res.Run(ctx)
	defer res.Close()
	tr := NewTransport(TransportConfig{Resolver: res, NewBalancer: func() balance.Balancer {
		return &firstPick{P2C: balance.NewP2C(), addr: dead}
	}})
	defer tr.CloseIdleConnections()

	req, err := http.NewRequest(http.MethodGet, "http://web.faces/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTripOwned(req)
	if err != nil {
		t.Fatalf("RoundTripOwned: %v", err)
	}
	resp.Body.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || seen[0] != "HTTP/1.1 orig-proto=" {
		t.Errorf("the unmeshed endpoint got %q, want one plain HTTP/1.1 request", seen)
	}
	if v, ok := req.Header[forward.OrigProtoHeader]; ok {
		t.Errorf("the owned request kept l5d-orig-proto %q after the failed peer", v)
	}
	if req.URL.Host != ln.Addr().String() {
		t.Errorf("owned request's URL host %q, want the endpoint that answered, %s", req.URL.Host, ln.Addr())
	}
}
