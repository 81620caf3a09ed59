package proxy_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	controldst "github.com/weft-mesh/weft/internal/control/destination"
	"github.com/weft-mesh/weft/internal/store"
)

// realDestination serves weft's own Destination implementation over st.
func realDestination(t *testing.T, st store.Store) string {
	t.Helper()
	srv, err := controldst.New(controldst.Config{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(ln)
	t.Cleanup(func() { cancel(); g.Stop(); <-done })
	return ln.Addr().String()
}

// TestWithRealControlPlane runs two proxies against weft's Destination
// server reading Services, Pods and EndpointSlices written the way the
// supervisor writes them: the contract between the two, end to end.
func TestWithRealControlPlane(t *testing.T) {
	st := store.NewMemory()
	dstAddr := realDestination(t, st)
	app := backend(t, "smiley-1", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Proto+" "+r.Host)
	})
	server := startProxy(t, dstAddr, "faces", "smiley-abc-1", app)
	_, inPort, _ := net.SplitHostPort(server.InboundAddrs()[0])
	port, _ := strconv.Atoi(inPort)

	svc := api.New(api.KindService).(*corev1.Service)
	svc.Namespace, svc.Name = "faces", "smiley"
	svc.Spec.Selector = map[string]string{"app": "smiley"}
	svc.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8000), Protocol: corev1.ProtocolTCP}}

	pod := api.New(api.KindPod).(*corev1.Pod)
	pod.Namespace, pod.Name = "faces", "smiley-abc-1"
	pod.Labels = map[string]string{"app": "smiley", "pod-template-hash": "abc"}
	pod.Annotations = map[string]string{"linkerd.io/proxy-version": "test", "weft.io/admin-addr": server.AdminAddr()}
	pod.Spec.ServiceAccountName = "smiley"
	pod.Status.PodIP = "127.0.0.1"
	pod.Status.Phase = corev1.PodRunning
	pod.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}

	ready := true
	proto := corev1.ProtocolTCP
	name := "http"
	p32 := int32(port)
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = "faces", "smiley-"+pod.Name
	es.Labels = map[string]string{"kubernetes.io/service-name": "smiley", discoveryv1.LabelManagedBy: "weft-supervisor"}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = []discoveryv1.Endpoint{{
		Addresses:  []string{"127.0.0.1"},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "faces", Name: pod.Name},
	}}
	es.Ports = []discoveryv1.EndpointPort{{Name: &name, Port: &p32, Protocol: &proto}}
	if err := st.Apply(context.Background(), svc, pod, es); err != nil {
		t.Fatalf("apply: %v", err)
	}

	client := startProxy(t, dstAddr, "faces", "gui-def-1")
	c := proxyClient(client)
	var body string
	waitFor(t, "smiley to answer through the mesh", func() error {
		resp, b := get(t, c, "http://smiley/")
		body = b
		if resp.StatusCode != 200 {
			return &statusErr{resp.StatusCode, b}
		}
		return nil
	})
	// HTTP/1 on both ends, so the h2 hint was honoured and undone.
	if body != "HTTP/1.1 smiley" {
		t.Errorf("app saw %q, want %q", body, "HTTP/1.1 smiley")
	}
	m := metricsText(t, client)
	if !strings.Contains(m, `dst_pod="smiley-abc-1"`) || !strings.Contains(m, `dst_namespace="faces"`) {
		t.Errorf("client metrics lack dst labels from the control plane:\n%s", grepLines(m, "request_total"))
	}
	// Another namespace reaches it by its qualified name; a missing service
	// is passed through (and fails to resolve in DNS: 502, not 503).
	other := startProxy(t, dstAddr, "elsewhere", "x-1-1")
	if resp, b := get(t, proxyClient(other), "http://smiley.faces/"); resp.StatusCode != 200 {
		t.Errorf("smiley.faces from another namespace: %d %q", resp.StatusCode, b)
	}
	if resp, _ := get(t, proxyClient(other), "http://smiley/"); resp.StatusCode != http.StatusBadGateway {
		t.Errorf("smiley from namespace elsewhere (no such service): %d, want 502 (passthrough)", resp.StatusCode)
	}
}

type statusErr struct {
	code int
	body string
}

func (e *statusErr) Error() string { return strconv.Itoa(e.code) + " " + e.body }
