package destination

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 10 * time.Second

// harness is a Destination server on a real loopback gRPC listener, over an
// in-memory store, with a real client connected to it.
type harness struct {
	store   store.Store
	mem     *store.Memory
	srv     *Server
	client  pb.DestinationClient
	stopRun context.CancelFunc
	runDone chan struct{}
}

type harnessOpts struct {
	queueCapacity int
	store         store.Store // nil: a fresh store.Memory
	dialOpts      []grpc.DialOption
	identity      *tlsid.Domain
}

func newHarness(t *testing.T, o harnessOpts) *harness {
	t.Helper()
	h := &harness{mem: store.NewMemory()}
	h.store = h.mem
	if o.store != nil {
		h.store = o.store
	}
	srv, err := New(Config{
		Store:         h.store,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		QueueCapacity: o.queueCapacity,
		RetryInterval: 10 * time.Millisecond,
		Identity:      o.identity,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.srv = srv
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = g.Serve(lis) }()

	ctx, cancel := context.WithCancel(context.Background())
	h.stopRun = cancel
	h.runDone = make(chan struct{})
	go func() { defer close(h.runDone); _ = srv.Run(ctx) }()

	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, o.dialOpts...)
	cc, err := grpc.NewClient(lis.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	h.client = pb.NewDestinationClient(cc)
	t.Cleanup(func() {
		cc.Close()
		cancel()
		<-h.runDone
		g.Stop()
		wg.Wait()
	})
	return h
}

func (h *harness) apply(t *testing.T, objs ...api.Object) {
	t.Helper()
	if err := h.store.Apply(context.Background(), objs...); err != nil {
		t.Fatalf("apply: %v", err)
	}
	h.waitPublished(t, objs, true)
}

// waitPublished waits until the server's published snapshot holds (or, with
// present false, no longer holds) each object the snapshot indexes, exactly
// as stored. The store notifies the server asynchronously, so without this a
// stream opened right after an apply could be answered from the snapshot
// before it, which is correct behaviour but not what a test step means.
func (h *harness) waitPublished(t *testing.T, objs []api.Object, present bool) {
	t.Helper()
	waitFor(t, "the server to publish the applied objects", func() bool {
		h.srv.pub.mu.Lock()
		snap := h.srv.pub.current
		h.srv.pub.mu.Unlock()
		if snap == nil {
			return false
		}
		for _, o := range objs {
			got, want, tracked := snapshotObject(snap, o)
			if !tracked {
				continue
			}
			if !present {
				if got != nil {
					return false
				}
				continue
			}
			if got == nil || !samePublished(got, want) {
				return false
			}
		}
		return true
	})
}

// snapshotObject returns the snapshot's copy of o (nil if absent), what that
// copy must equal once o is published, and whether the snapshot indexes o's
// kind at all. ServiceProfiles are held translated, so the wanted value is
// o's translation.
func snapshotObject(snap *snapshot, o api.Object) (got, want any, tracked bool) {
	key := nsName{o.GetNamespace(), o.GetName()}
	switch o := o.(type) {
	case *corev1.Service:
		if s, ok := snap.services[key]; ok {
			return s, o, true
		}
		return nil, o, true
	case *corev1.Pod:
		if p, ok := snap.pods[key]; ok {
			return p, o, true
		}
		return nil, o, true
	case *discoveryv1.EndpointSlice:
		svc := nsName{o.Namespace, o.Labels["kubernetes.io/service-name"]}
		for _, es := range snap.slices[svc] {
			if es.Name == o.Name {
				return es, o, true
			}
		}
		return nil, o, true
	case *api.ServiceProfile:
		tr, err := translateProfile(o, o.Name)
		if err != nil {
			// The server skips invalid profiles; nothing to wait for.
			return nil, nil, false
		}
		if p, ok := snap.profiles[key]; ok {
			return p, tr, true
		}
		return nil, tr, true
	}
	return nil, nil, false
}

// samePublished reports whether the snapshot's copy equals the wanted value.
func samePublished(got, want any) bool {
	if g, ok := got.(proto.Message); ok {
		w, ok := want.(proto.Message)
		return ok && proto.Equal(g, w)
	}
	return sameJSON(got, want)
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

func (h *harness) delete(t *testing.T, objs ...api.Object) {
	t.Helper()
	refs := make([]api.Ref, len(objs))
	for i, o := range objs {
		refs[i] = api.RefOf(o)
	}
	if err := h.store.Delete(context.Background(), refs...); err != nil {
		t.Fatalf("delete: %v", err)
	}
	h.waitPublished(t, objs, false)
}

// get opens a Get stream that the test's deadline bounds.
func (h *harness) get(t *testing.T, path, ns string) grpc.ServerStreamingClient[pb.Update] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	s, err := h.client.Get(ctx, &pb.GetDestination{Path: path, ContextToken: token(ns)})
	if err != nil {
		t.Fatalf("Get(%q): %v", path, err)
	}
	return s
}

func (h *harness) getProfile(t *testing.T, path, ns string) grpc.ServerStreamingClient[pb.DestinationProfile] {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	s, err := h.client.GetProfile(ctx, &pb.GetDestination{Path: path, ContextToken: token(ns)})
	if err != nil {
		t.Fatalf("GetProfile(%q): %v", path, err)
	}
	return s
}

func token(ns string) string {
	if ns == "" {
		return ""
	}
	return `{"ns":"` + ns + `","nodeName":"localhost","pod":"client-0"}`
}

// waitFor polls cond until it holds or the test timeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// Object builders.

type svcPort struct {
	name       string
	port       int32
	targetPort intstr.IntOrString
}

func service(ns, name string, ports ...svcPort) *corev1.Service {
	s := api.New(api.KindService).(*corev1.Service)
	s.Namespace, s.Name = ns, name
	s.Spec.Selector = map[string]string{"app": name}
	for _, p := range ports {
		s.Spec.Ports = append(s.Spec.Ports, corev1.ServicePort{Name: p.name, Port: p.port, TargetPort: p.targetPort, Protocol: corev1.ProtocolTCP})
	}
	return s
}

// slicePortSpec is a slice port: name "" and a nil number are allowed.
type slicePortSpec struct {
	name *string
	port *int32
}

func named(name string, port int32) slicePortSpec { return slicePortSpec{name: &name, port: &port} }

// endpointSlice is one slice per (service, pod), as the supervisor writes.
func endpointSlice(ns, svc, pod, ip string, ready bool, ports ...slicePortSpec) *discoveryv1.EndpointSlice {
	es := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	es.Namespace, es.Name = ns, svc+"-"+pod
	es.Labels = map[string]string{labelServiceName: svc, discoveryv1.LabelManagedBy: "weft-supervisor"}
	es.AddressType = discoveryv1.AddressTypeIPv4
	es.Endpoints = []discoveryv1.Endpoint{{
		Addresses:  []string{ip},
		Conditions: discoveryv1.EndpointConditions{Ready: &ready},
		TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod},
	}}
	for _, p := range ports {
		proto := corev1.ProtocolTCP
		es.Ports = append(es.Ports, discoveryv1.EndpointPort{Name: p.name, Port: p.port, Protocol: &proto})
	}
	return es
}

// pod is a supervisor-style Pod of a Deployment: name <dep>-<hash>-<suffix>.
func pod(ns, dep, hash, suffix, sa string, meshed bool) *corev1.Pod {
	p := api.New(api.KindPod).(*corev1.Pod)
	p.Namespace, p.Name = ns, dep+"-"+hash+"-"+suffix
	p.Labels = map[string]string{"app": dep, labelPodTemplateHash: hash}
	p.Annotations = map[string]string{"weft.io/admin-addr": "127.0.0.1:1"}
	if meshed {
		p.Annotations[annotationProxyVersion] = "weft-test"
	}
	p.Spec.ServiceAccountName = sa
	p.Status.PodIP = "127.0.0.1"
	p.Status.Phase = corev1.PodRunning
	return p
}

func serviceProfile(ns, name string, spec api.ServiceProfileSpec) *api.ServiceProfile {
	sp := api.New(api.KindServiceProfile).(*api.ServiceProfile)
	sp.ObjectMeta = metav1.ObjectMeta{Namespace: ns, Name: name}
	sp.Spec = spec
	return sp
}

type (
	podObj   = corev1.Pod
	ownerRef = metav1.OwnerReference
)
