package kube_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	httptypes "github.com/linkerd/linkerd2-proxy-api/go/http_types"
	pbnet "github.com/linkerd/linkerd2-proxy-api/go/net"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/control/destination"
)

// The Faces fixture as a real cluster has it: Service smiley (http 80 ->
// 8000, admin 9090 -> named port "admin"), a meshed pod of Deployment
// smiley at 10.244.1.7, and its EndpointSlice, all created with client-go
// as Kubernetes' controllers would, plus a ServiceProfile.
const (
	smileyPod = "smiley-5f8c9d-x7k2p"
	smileyIP  = "10.244.1.7"
	smileyFQN = "smiley.faces.svc.cluster.local"
)

var (
	smileySet    = map[string]string{"service": "smiley", "namespace": "faces"}
	smileyLabels = map[string]string{
		"namespace": "faces", "pod": smileyPod, "serviceaccount": "smiley",
		"deployment": "smiley", "replicaset": "smiley-5f8c9d", "pod_template_hash": "5f8c9d",
	}
)

func createFaces(t *testing.T, e *env) {
	t.Helper()
	ctx := ctxT(t)
	cs := e.client
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "faces"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().ServiceAccounts("faces").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "smiley"}}, metav1.CreateOptions{}))
	must(cs.CoreV1().Services("faces").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "smiley"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": "smiley"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8000), Protocol: corev1.ProtocolTCP},
				{Name: "admin", Port: 9090, TargetPort: intstr.FromString("admin"), Protocol: corev1.ProtocolTCP},
			},
		},
	}, metav1.CreateOptions{}))
	createPod(t, e, smileyPod, smileyIP)
	createSlice(t, e, "smiley-abcde", smileyPod, smileyIP)
	must(e.dyn.Resource(spGVR).Namespace("faces").Create(ctx, &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "linkerd.io/v1alpha2",
		"kind":       "ServiceProfile",
		"metadata":   map[string]any{"name": smileyFQN, "namespace": "faces"},
		"spec": map[string]any{
			"routes": []any{map[string]any{
				"name":        "GET /api",
				"condition":   map[string]any{"method": "GET", "pathRegex": "/api/.*"},
				"isRetryable": true,
				"timeout":     "300ms",
			}},
			"retryBudget": map[string]any{"retryRatio": 0.5, "minRetriesPerSecond": 3, "ttl": "1m"},
		},
	}}, metav1.CreateOptions{}))
}

// createPod creates a meshed pod of Deployment smiley and sets its status
// as the kubelet would.
func createPod(t *testing.T, e *env, name, ip string) {
	t.Helper()
	ctx := ctxT(t)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Labels:      map[string]string{"app": "smiley", "pod-template-hash": "5f8c9d"},
			Annotations: map[string]string{"linkerd.io/proxy-version": "weft-test"},
		},
		Spec: corev1.PodSpec{
			ServiceAccountName: "smiley",
			Containers: []corev1.Container{{Name: "smiley", Image: "example.com/faces:1", Ports: []corev1.ContainerPort{
				{Name: "http", ContainerPort: 8000}, {Name: "admin", ContainerPort: 9990},
			}}},
		},
	}
	created, err := e.client.CoreV1().Pods("faces").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status.Phase = corev1.PodRunning
	created.Status.PodIP = ip
	created.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	created.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	if _, err := e.client.CoreV1().Pods("faces").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// createSlice creates the EndpointSlice Kubernetes' controller would for
// one pod of Service smiley.
func createSlice(t *testing.T, e *env, name, pod, ip string) {
	t.Helper()
	ready := true
	tcp := corev1.ProtocolTCP
	httpName, adminName := "http", "admin"
	httpPort, adminPort := int32(8000), int32(9990)
	es := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
			discoveryv1.LabelServiceName: "smiley",
			discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
		}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints: []discoveryv1.Endpoint{{
			Addresses:  []string{ip},
			Conditions: discoveryv1.EndpointConditions{Ready: &ready},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: "faces", Name: pod},
		}},
		Ports: []discoveryv1.EndpointPort{
			{Name: &httpName, Port: &httpPort, Protocol: &tcp},
			{Name: &adminName, Port: &adminPort, Protocol: &tcp},
		},
	}
	if _, err := e.client.DiscoveryV1().EndpointSlices("faces").Create(ctxT(t), es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func wantAddr(ap string, labels map[string]string) *pb.WeightedAddr {
	a := netip.MustParseAddrPort(ap)
	ip := a.Addr().As4()
	return &pb.WeightedAddr{
		Addr: &pbnet.TcpAddress{
			Ip:   &pbnet.IPAddress{Ip: &pbnet.IPAddress_Ipv4{Ipv4: uint32(ip[0])<<24 | uint32(ip[1])<<16 | uint32(ip[2])<<8 | uint32(ip[3])}},
			Port: uint32(a.Port()),
		},
		Weight:       10000,
		MetricLabels: labels,
		ProtocolHint: &pb.ProtocolHint{Protocol: &pb.ProtocolHint_H2_{H2: &pb.ProtocolHint_H2{}}},
	}
}

func wantAdd(addrs ...*pb.WeightedAddr) *pb.Update {
	return &pb.Update{Update: &pb.Update_Add{Add: &pb.WeightedAddrSet{Addrs: addrs, MetricLabels: smileySet}}}
}

func wantProfile() *pb.DestinationProfile {
	return &pb.DestinationProfile{
		FullyQualifiedName: smileyFQN,
		RetryBudget:        &pb.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, Ttl: durationpb.New(time.Minute)},
		Routes: []*pb.Route{{
			Condition: &pb.RequestMatch{Match: &pb.RequestMatch_All{All: &pb.RequestMatch_Seq{Matches: []*pb.RequestMatch{
				{Match: &pb.RequestMatch_Method{Method: &httptypes.HttpMethod{Type: &httptypes.HttpMethod_Registered_{Registered: httptypes.HttpMethod_GET}}}},
				{Match: &pb.RequestMatch_Path{Path: &pb.PathMatch{Regex: "/api/.*"}}},
			}}}},
			MetricsLabels: map[string]string{"route": "GET /api"},
			IsRetryable:   true,
			Timeout:       durationpb.New(300 * time.Millisecond),
		}},
	}
}

const faceToken = `{"ns":"faces","nodeName":"node-1","pod":"face-0"}`

// testDestination serves Destination from the kube store and checks that a
// real gRPC client gets the endpoints and profile local mode gives.
func testDestination(t *testing.T, e *env) {
	e.c.InstallMinimalCRDs(t, api.KindServiceProfile)
	createFaces(t, e)

	srv, err := destination.New(destination.Config{
		Store:         e.st,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		RetryInterval: 50 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	go g.Serve(lis)
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan struct{})
	go func() { defer close(runDone); _ = srv.Run(runCtx) }()
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		stopRun()
		<-runDone
		g.Stop()
	})
	client := pb.NewDestinationClient(cc)

	// The server and its caches converge asynchronously: each check opens
	// a stream and compares its first message, retrying until it matches.
	httpAdd := wantAdd(wantAddr(smileyIP+":8000", smileyLabels))
	for _, tc := range []struct {
		path string
		want *pb.Update
	}{
		{"smiley", httpAdd},
		{"smiley.faces:80", httpAdd},
		{smileyFQN + ":80", httpAdd},
		{smileyFQN + ":9090", wantAdd(wantAddr(smileyIP+":9990", smileyLabels))},
		// A pod's IP:port, found through the pod's status.podIP.
		{smileyIP + ":8000", &pb.Update{Update: &pb.Update_Add{Add: &pb.WeightedAddrSet{Addrs: []*pb.WeightedAddr{wantAddr(smileyIP+":8000", smileyLabels)}}}}},
	} {
		eventually(t, "Get "+tc.path, func() error {
			return firstMatches(func(ctx context.Context) (proto.Message, error) {
				s, err := client.Get(ctx, &pb.GetDestination{Path: tc.path, ContextToken: faceToken})
				if err != nil {
					return nil, err
				}
				return s.Recv()
			}, tc.want)
		})
	}
	eventually(t, "GetProfile", func() error {
		return firstMatches(func(ctx context.Context) (proto.Message, error) {
			s, err := client.GetProfile(ctx, &pb.GetDestination{Path: smileyFQN + ":80", ContextToken: faceToken})
			if err != nil {
				return nil, err
			}
			return s.Recv()
		}, wantProfile())
	})

	// A stream that is open follows changes: a second pod and its slice
	// arrive as an Add.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := client.Get(ctx, &pb.GetDestination{Path: smileyFQN + ":80", ContextToken: faceToken})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(httpAdd, first, protocmp.Transform()); d != "" {
		t.Fatalf("first update (-want +got):\n%s", d)
	}
	const pod2, ip2 = "smiley-5f8c9d-q9w8e", "10.244.2.9"
	createPod(t, e, pod2, ip2)
	eventually(t, "the second pod in the store", func() error {
		_, err := e.st.Get(ctx, api.Ref{Kind: api.KindPod, Namespace: "faces", Name: pod2})
		return err
	})
	createSlice(t, e, "smiley-fghij", pod2, ip2)
	labels2 := map[string]string{}
	for k, v := range smileyLabels {
		labels2[k] = v
	}
	labels2["pod"] = pod2
	next, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(wantAdd(wantAddr(ip2+":8000", labels2)), next, protocmp.Transform()); d != "" {
		t.Fatalf("update after scaling up (-want +got):\n%s", d)
	}
}

// firstMatches opens a stream with open and compares its first message.
func firstMatches(open func(context.Context) (proto.Message, error), want proto.Message) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := open(ctx)
	if err != nil {
		return err
	}
	if d := cmp.Diff(want, got, protocmp.Transform()); d != "" {
		return fmt.Errorf("(-want +got):\n%s", d)
	}
	return nil
}
