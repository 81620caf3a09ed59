package ingress

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

func testService(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	s := &corev1.Service{Spec: corev1.ServiceSpec{Ports: ports}}
	s.APIVersion, s.Kind = "v1", "Service"
	s.Namespace, s.Name = ns, name
	return s
}

// testSlice is an EndpointSlice of service with one port named portName
// (nil: unnamed) and one endpoint per address, ready as given.
func testSlice(ns, name, service string, portName *string, port int32, ready []bool, addrs ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Name: portName, Port: &port}}}
	s.APIVersion, s.Kind = "discovery.k8s.io/v1", "EndpointSlice"
	s.Namespace, s.Name = ns, name
	s.Labels = map[string]string{discoveryv1.LabelServiceName: service}
	for i, a := range addrs {
		ep := discoveryv1.Endpoint{Addresses: []string{a}}
		if i < len(ready) {
			ep.Conditions.Ready = &ready[i]
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// namedBackend answers its name and closes every connection, so each
// request through the ingress dials again.
func namedBackend(t *testing.T, name string) (srv *httptest.Server, port int32) {
	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, name)
	}))
	srv.Config.SetKeepAlivesEnabled(false)
	srv.Start()
	t.Cleanup(srv.Close)
	_, p, _ := net.SplitHostPort(srv.Listener.Addr().String())
	n, _ := strconv.Atoi(p)
	return srv, int32(n)
}

// TestEndpointsRouting: without a sidecar, a Mapping's service is dialed
// at the ready endpoints of its EndpointSlices, round robin; a service
// without ready endpoints, or unknown, answers 503 no healthy upstream; a
// changed slice is used by the next connection.
func TestEndpointsRouting(t *testing.T) {
	_, portA := namedBackend(t, "a")
	_, portB := namedBackend(t, "b")
	_, portC := namedBackend(t, "c")
	dead := deadAddr(t)
	_, deadPort, _ := net.SplitHostPort(dead)
	dp, _ := strconv.Atoi(deadPort)
	http := ptr("http")
	h := newHarnessWith(t, false, func(c *Config) {
		tr := NewTransportWith(TransportOptions{Endpoints: NewEndpoints(c.Store)})
		t.Cleanup(tr.(interface{ CloseIdleConnections() }).CloseIdleConnections)
		c.Transport = tr
	},
		testService("shop", "web", corev1.ServicePort{Name: "http", Port: 80}),
		testSlice("shop", "web-1", "web", http, portA, nil, "127.0.0.1"),
		testSlice("shop", "web-2", "web", http, portB, []bool{true}, "127.0.0.1"),
		// Not ready, and another service's: never dialed.
		testSlice("shop", "web-3", "web", http, int32(dp), []bool{false}, "127.0.0.1"),
		testSlice("shop", "other-1", "other", http, int32(dp), nil, "127.0.0.1"),
		testService("shop", "idle", corev1.ServicePort{Name: "http", Port: 80}),
		testSlice("shop", "idle-1", "idle", http, portA, []bool{false}, "127.0.0.1"),
		newMapping("shop", "web", api.MappingSpec{Hostname: "*", Prefix: "/web/", Service: "web"}),
		newMapping("shop", "idle", api.MappingSpec{Hostname: "*", Prefix: "/idle/", Service: "idle.shop:80"}),
		newMapping("shop", "gone", api.MappingSpec{Hostname: "*", Prefix: "/gone/", Service: "gone"}),
		newMapping("shop", "noport", api.MappingSpec{Hostname: "*", Prefix: "/noport/", Service: "web:8080"}),
	)

	seen := map[string]int{}
	for range 6 {
		resp, body := h.get("/web/", nil)
		if resp.StatusCode != 200 {
			t.Fatalf("GET /web/: %d %q", resp.StatusCode, body)
		}
		seen[body]++
	}
	if want := map[string]int{"a": 3, "b": 3}; !reflect.DeepEqual(seen, want) {
		t.Errorf("answers by backend = %v, want %v (round robin over the ready endpoints)", seen, want)
	}
	for _, path := range []string{"/idle/", "/gone/", "/noport/"} {
		resp, body := h.get(path, nil)
		if resp.StatusCode != 503 || body != BodyNoHealthy {
			t.Errorf("GET %s: %d %q, want 503 %q", path, resp.StatusCode, body, BodyNoHealthy)
		}
	}

	// The slices move to another pod: the next connections go there.
	h.apply(testSlice("shop", "web-1", "web", http, portC, nil, "127.0.0.1"),
		testSlice("shop", "web-2", "web", http, portC, nil, "127.0.0.1"))
	for range 3 {
		if resp, body := h.get("/web/", nil); resp.StatusCode != 200 || body != "c" {
			t.Errorf("GET /web/ after the change: %d %q, want c", resp.StatusCode, body)
		}
	}
}

func TestEndpointsResolve(t *testing.T) {
	st := store.NewMemory()
	ext := testService("shop", "ext")
	ext.Spec.Type, ext.Spec.ExternalName = corev1.ServiceTypeExternalName, "api.example.com"
	fqdn := testSlice("shop", "unnamed-fqdn", "unnamed", nil, 7000, nil, "pod.example")
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	if err := st.Apply(context.Background(),
		ext,
		testService("shop", "unnamed", corev1.ServicePort{Port: 80}),
		testSlice("shop", "unnamed-1", "unnamed", nil, 8080, []bool{true, false, true}, "10.0.0.1", "10.0.0.2", "fd00::3"),
		fqdn,
		testService("shop", "two", corev1.ServicePort{Name: "http", Port: 80}, corev1.ServicePort{Name: "admin", Port: 9990}),
		testSlice("shop", "two-1", "two", ptr("admin"), 19990, nil, "10.0.0.9"),
	); err != nil {
		t.Fatal(err)
	}
	e := NewEndpoints(st)
	for _, tc := range []struct {
		ns, name string
		port     int32
		want     []string
		err      string
	}{
		{"shop", "ext", 443, []string{"api.example.com:443"}, ""},
		{"shop", "unnamed", 80, []string{"10.0.0.1:8080", "[fd00::3]:8080"}, ""},
		{"shop", "two", 9990, []string{"10.0.0.9:19990"}, ""},
		{"shop", "two", 80, nil, "no ready endpoints"},
		{"shop", "two", 81, nil, "has no port 81"},
		{"other", "two", 80, nil, "no Service other/two"},
	} {
		got, err := e.Resolve(context.Background(), tc.ns, tc.name, tc.port)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, errNoHealthy) {
				t.Errorf("Resolve(%s/%s:%d) = %v, %v; want an error with %q wrapping errNoHealthy", tc.ns, tc.name, tc.port, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("Resolve(%s/%s:%d) = %v, %v; want %v", tc.ns, tc.name, tc.port, got, err, tc.want)
		}
	}
}

func TestClusterServiceName(t *testing.T) {
	for _, tc := range []struct {
		host, name, ns string
		ok             bool
	}{
		{"face.faces.svc.cluster.local", "face", "faces", true},
		{"Face.Faces.svc.cluster.local.", "face", "faces", true},
		{"face.faces.svc", "", "", false},
		{"a.b.c.svc.cluster.local", "", "", false},
		{".faces.svc.cluster.local", "", "", false},
		{"svc.cluster.local", "", "", false},
		{"10.0.0.1", "", "", false},
		{"example.com", "", "", false},
	} {
		name, ns, ok := clusterServiceName(tc.host)
		if name != tc.name || ns != tc.ns || ok != tc.ok {
			t.Errorf("clusterServiceName(%q) = %q, %q, %v; want %q, %q, %v", tc.host, name, ns, ok, tc.name, tc.ns, tc.ok)
		}
	}
}

func FuzzClusterServiceName(f *testing.F) {
	for _, s := range []string{"face.faces.svc.cluster.local", "a.b.svc.cluster.local.", "x.svc.cluster.local", "", "."} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, host string) {
		name, ns, ok := clusterServiceName(host)
		if !ok {
			return
		}
		if name == "" || ns == "" || strings.Contains(ns, ".") {
			t.Fatalf("clusterServiceName(%q) = %q, %q", host, name, ns)
		}
		if got := name + "." + ns + "." + ClusterDomain; got != strings.TrimSuffix(strings.ToLower(host), ".") {
			t.Fatalf("clusterServiceName(%q) = %q, %q: does not rebuild the host (%q)", host, name, ns, got)
		}
	})
}
