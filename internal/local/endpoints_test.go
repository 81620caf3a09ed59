package local

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
)

func testService(ns, name string, sel map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	s := api.New(api.KindService).(*corev1.Service)
	s.Namespace, s.Name = ns, name
	s.Spec.Selector = sel
	s.Spec.Ports = ports
	return s
}

func testPod(ns, name string, labels map[string]string, ready bool, inbound map[int32]int, ports ...corev1.ContainerPort) *corev1.Pod {
	r := &replica{ns: ns, name: name, labels: labels, annotations: map[string]string{
		AnnotationManagedBy:    ManagedBy,
		AnnotationInboundPorts: FormatInboundPorts(inbound),
	}, spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Ports: ports}}}}
	r.ready.Store(ready)
	return r.pod()
}

func sliceSummary(s *discoveryv1.EndpointSlice) map[string]any {
	ports := map[string]int32{}
	for _, p := range s.Ports {
		ports[*p.Name] = *p.Port
	}
	return map[string]any{
		"name": s.Namespace + "/" + s.Name, "service": s.Labels[LabelServiceName], "managed": s.Labels[LabelManagedBy],
		"ready": *s.Endpoints[0].Conditions.Ready, "pod": s.Endpoints[0].TargetRef.Name, "ip": s.Endpoints[0].Addresses[0],
		"ports": ports,
	}
}

func TestDesiredSlices(t *testing.T) {
	web := map[string]string{"app": "web"}
	svcs := []*corev1.Service{
		testService("shop", "web", web,
			corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("http")},
			corev1.ServicePort{Name: "admin", Port: 9990, TargetPort: intstr.FromInt32(9990)},
			corev1.ServicePort{Name: "undeclared", Port: 7000, TargetPort: intstr.FromInt32(7000)},
		),
		testService("shop", "same-port", web, corev1.ServicePort{Port: 8080}),
		testService("shop", "no-selector", nil, corev1.ServicePort{Port: 80}),
		testService("other", "web", web, corev1.ServicePort{Port: 80, TargetPort: intstr.FromInt32(8080)}),
	}
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "admin", ContainerPort: 9990}}
	pods := []*corev1.Pod{
		testPod("shop", "web-1", map[string]string{"app": "web", "pod-template-hash": "x"}, true, map[int32]int{8080: 41001, 9990: 41002}, ports...),
		testPod("shop", "web-2", map[string]string{"app": "web"}, false, map[int32]int{8080: 41011, 9990: 41012}, ports...),
		testPod("shop", "db-1", map[string]string{"app": "db"}, true, map[int32]int{8080: 41021}, ports...),
	}
	var got []map[string]any
	for _, s := range DesiredSlices(svcs, pods) {
		got = append(got, sliceSummary(s))
	}
	want := []map[string]any{
		{"name": "shop/web-web-1", "service": "web", "managed": ManagedBy, "ready": true, "pod": "web-1", "ip": "127.0.0.1",
			"ports": map[string]int32{"http": 41001, "admin": 41002}},
		{"name": "shop/web-web-2", "service": "web", "managed": ManagedBy, "ready": false, "pod": "web-2", "ip": "127.0.0.1",
			"ports": map[string]int32{"http": 41011, "admin": 41012}},
		{"name": "shop/same-port-web-1", "service": "same-port", "managed": ManagedBy, "ready": true, "pod": "web-1", "ip": "127.0.0.1",
			"ports": map[string]int32{"": 41001}},
		{"name": "shop/same-port-web-2", "service": "same-port", "managed": ManagedBy, "ready": false, "pod": "web-2", "ip": "127.0.0.1",
			"ports": map[string]int32{"": 41011}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("slices (-want +got):\n%s", d)
	}
}

func TestReconcileSlices(t *testing.T) {
	ctx := context.Background()
	st := store.NewMemory()
	web := map[string]string{"app": "web"}
	port := corev1.ContainerPort{Name: "http", ContainerPort: 8080}
	foreign := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	foreign.Namespace, foreign.Name = "shop", "hand-made"
	foreign.AddressType = discoveryv1.AddressTypeIPv4
	stale := foreign.DeepCopy()
	stale.Name = "web-gone"
	stale.Labels = map[string]string{LabelManagedBy: ManagedBy, LabelServiceName: "web"}
	must(t, st.Apply(ctx,
		testService("shop", "web", web, corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}),
		testPod("shop", "web-1", web, true, map[int32]int{8080: 41001}, port),
		testPod("shop", "web-2", web, true, map[int32]int{8080: 41011}, port),
		foreign, stale,
	))
	must(t, ReconcileSlices(ctx, st))
	names := func() []string {
		objs, err := st.List(ctx, api.KindEndpointSlice, "")
		must(t, err)
		var out []string
		for _, o := range objs {
			out = append(out, o.GetName())
		}
		return out
	}
	if d := cmp.Diff([]string{"hand-made", "web-web-1", "web-web-2"}, names()); d != "" {
		t.Fatalf("slices after first reconcile (-want +got):\n%s", d)
	}

	// A reconcile with nothing changed writes nothing.
	ch, err := st.Watch(ctx, api.KindEndpointSlice)
	must(t, err)
	<-ch
	must(t, ReconcileSlices(ctx, st))
	select {
	case <-ch:
		t.Fatal("reconcile without changes wrote slices")
	default:
	}

	// A pod turning unready is reflected; a deleted pod loses its slice.
	must(t, st.Apply(ctx, testPod("shop", "web-1", web, false, map[int32]int{8080: 41001}, port)))
	must(t, st.Delete(ctx, api.Ref{Kind: api.KindPod, Namespace: "shop", Name: "web-2"}))
	must(t, ReconcileSlices(ctx, st))
	if d := cmp.Diff([]string{"hand-made", "web-web-1"}, names()); d != "" {
		t.Fatalf("slices after pod deletion (-want +got):\n%s", d)
	}
	o, err := st.Get(ctx, api.Ref{Kind: api.KindEndpointSlice, Namespace: "shop", Name: "web-web-1"})
	must(t, err)
	if *o.(*discoveryv1.EndpointSlice).Endpoints[0].Conditions.Ready {
		t.Fatal("slice of an unready pod says ready")
	}
}

func TestInboundPortsRoundTrip(t *testing.T) {
	m := map[int32]int{8080: 41001, 9990: 41002}
	s := FormatInboundPorts(m)
	if s != "8080=41001,9990=41002" {
		t.Fatalf("FormatInboundPorts = %q", s)
	}
	got, err := ParseInboundPorts(s)
	must(t, err)
	if d := cmp.Diff(m, got); d != "" {
		t.Fatalf("round trip (-want +got):\n%s", d)
	}
	for _, bad := range []string{"8080", "x=1", "1=y", "0=5", "70000=1"} {
		if _, err := ParseInboundPorts(bad); err == nil {
			t.Errorf("ParseInboundPorts(%q) accepted", bad)
		}
	}
}

func FuzzParseInboundPorts(f *testing.F) {
	f.Add("8080=41001,9990=41002")
	f.Add("")
	f.Add("=,")
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseInboundPorts(s)
		if err != nil {
			return
		}
		again, err := ParseInboundPorts(FormatInboundPorts(m))
		if err != nil || !cmp.Equal(m, again) {
			t.Fatalf("%q: round trip of %v gave %v, %v", s, m, again, err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
