package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/weft-mesh/weft/internal/api"
)

// capture stands in for what sits between a meshed ingress and its
// upstreams on Kubernetes: the cluster's DNS and the iptables rules that
// send the connection to the sidecar. It records every address the
// ingress dials and connects names it was told about to a test backend.
type capture struct {
	mu     sync.Mutex
	dialed []string
	to     map[string]string // dialed address -> backend address
}

func (c *capture) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	c.mu.Lock()
	c.dialed = append(c.dialed, addr)
	backend, ok := c.to[addr]
	c.mu.Unlock()
	if !ok {
		return nil, &net.OpError{Op: "dial", Net: network, Err: fmt.Errorf("no such host %s", addr)}
	}
	var d net.Dialer
	return d.DialContext(ctx, network, backend)
}

func (c *capture) addresses() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.dialed)
}

// TestTransparentUpstream: with --upstream=service (TransportOptions
// Transparent) the ingress dials a Mapping's service by its cluster DNS
// name, svc.ns.svc.cluster.local:port (rooted: with a trailing dot), and
// the request names the service
// in its Host (:authority for gRPC), so that a transparent sidecar routes
// it by service; the client's Host is in X-Forwarded-Host. A rewritten
// Host is kept, and an IP upstream is dialed and addressed as written.
func TestTransparentUpstream(t *testing.T) {
	web := newBackend(t)
	other := newBackend(t)
	var grpcAuthority sync.Map
	grpcBackend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2, got "+r.Proto, http.StatusHTTPVersionNotSupported)
			return
		}
		grpcAuthority.Store("last", r.Host)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		_, _ = w.Write(body)
		w.Header().Set("Grpc-Status", "0")
	}))
	grpcBackend.Config.Protocols = new(http.Protocols)
	grpcBackend.Config.Protocols.SetUnencryptedHTTP2(true)
	grpcBackend.Start()
	t.Cleanup(grpcBackend.Close)

	otherAddr := backendAuthority(t, other)
	c := &capture{to: map[string]string{
		"web.shop.svc.cluster.local.:80":     backendAuthority(t, web),
		"emoji.shop.svc.cluster.local.:8080": backendAuthority(t, grpcBackend),
		otherAddr:                            otherAddr,
	}}
	h := newHarnessWith(t, false, func(cfg *Config) {
		tr := NewTransportWith(TransportOptions{Transparent: true, Dial: c.dial})
		t.Cleanup(tr.(interface{ CloseIdleConnections() }).CloseIdleConnections)
		cfg.Transport = tr
	},
		newMapping("shop", "web", api.MappingSpec{Prefix: "/web/", Service: "web"}),
		newMapping("shop", "rw", api.MappingSpec{Prefix: "/rw/", Service: "web.shop:80", HostRewrite: "inner.example"}),
		newMapping("shop", "ip", api.MappingSpec{Prefix: "/ip/", Service: "http://" + otherAddr}),
		newMapping("shop", "grpc", api.MappingSpec{Prefix: "/emoji.Service/", Rewrite: ptr(""), Service: "emoji:8080", GRPC: true}),
	)

	get := func(path string) echo {
		t.Helper()
		req, _ := http.NewRequest("GET", h.url(path), nil)
		req.Host = "outer.example:8080"
		resp, err := h.httpc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			b, _ := io.ReadAll(resp.Body)
			t.Fatalf("GET %s: %d %q", path, resp.StatusCode, b)
		}
		var e echo
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Fatal(err)
		}
		return e
	}

	e := get("/web/")
	// Rooted, so that the pod's resolver does not try its search domains
	// first.
	if d := c.addresses(); !slices.Contains(d, "web.shop.svc.cluster.local.:80") {
		t.Errorf("dialed %q, want web.shop.svc.cluster.local.:80", d)
	}
	if e.Host != "web.shop.svc.cluster.local:80" {
		t.Errorf("upstream Host %q, want the service's authority for the sidecar to route by", e.Host)
	}
	if got := e.Header.Get("X-Forwarded-Host"); got != "outer.example:8080" {
		t.Errorf("X-Forwarded-Host %q, want the client's Host", got)
	}
	if got := e.Header.Get("L5d-Dst-Override"); got != "web.shop.svc.cluster.local:80" {
		t.Errorf("l5d-dst-override %q", got)
	}

	if e := get("/rw/"); e.Host != "inner.example" {
		t.Errorf("host_rewrite: upstream Host %q, want inner.example", e.Host)
	}
	if e := get("/ip/"); e.Host != "outer.example:8080" {
		t.Errorf("IP upstream: Host %q, want the client's (only cluster names are the sidecar's to route)", e.Host)
	}
	if d := c.addresses(); !slices.Contains(d, otherAddr) {
		t.Errorf("dialed %q, want the IP upstream %s as written", d, otherAddr)
	}

	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("POST", h.url("/emoji.Service/ListAll"), strings.NewReader("\x00\x00\x00\x00\x02hi"))
	req.Host = "outer.example:8080"
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "\x00\x00\x00\x00\x02hi" || resp.Trailer.Get("Grpc-Status") != "0" {
		t.Errorf("gRPC call: %d body %q trailers %v", resp.StatusCode, body, resp.Trailer)
	}
	if a, _ := grpcAuthority.Load("last"); a != "emoji.shop.svc.cluster.local:8080" {
		t.Errorf("gRPC :authority %v, want the service's", a)
	}
	if d := c.addresses(); !slices.Contains(d, "emoji.shop.svc.cluster.local.:8080") {
		t.Errorf("dialed %q, want emoji.shop.svc.cluster.local.:8080", d)
	}
}

// TestTransparentNeedsOnlyItsMode: the service authority goes into Host
// only in Transparent mode; an ingress without a sidecar keeps the
// client's Host, as Emissary does.
func TestTransparentNeedsOnlyItsMode(t *testing.T) {
	web := newBackend(t)
	c := &capture{to: map[string]string{"web.shop.svc.cluster.local:80": backendAuthority(t, web)}}
	h := newHarnessWith(t, false, func(cfg *Config) {
		tr := NewTransportWith(TransportOptions{Dial: c.dial})
		t.Cleanup(tr.(interface{ CloseIdleConnections() }).CloseIdleConnections)
		cfg.Transport = tr
	}, newMapping("shop", "web", api.MappingSpec{Prefix: "/web/", Service: "web"}))
	req, _ := http.NewRequest("GET", h.url("/web/"), nil)
	req.Host = "outer.example:8080"
	resp, err := h.httpc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e echo
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatal(err)
	}
	if e.Host != "outer.example:8080" {
		t.Errorf("upstream Host %q, want the client's", e.Host)
	}
	if d := c.addresses(); !slices.Equal(d, []string{"web.shop.svc.cluster.local:80"}) {
		t.Errorf("dialed %q, want the service's name, as written, through Dial", d)
	}
}
