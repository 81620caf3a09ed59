package cli

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/kubetest"
)

// TestControlKubeStore runs 'weft control --store=kube --kubeconfig' against
// a real API server: Destination answers from what client-go creates there.
func TestControlKubeStore(t *testing.T) {
	c := kubetest.Start(t)
	c.InstallMinimalCRDs(t, api.KindServiceProfile)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "faces"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services("faces").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "smiley"},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	addr, admin := freeAddr(t), freeAddr(t)
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	var errOut syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- Run(runCtx, []string{"control", "--store=kube", "--kubeconfig", c.Kubeconfig,
			"--state-dir", t.TempDir(), "--addr", addr, "--admin-addr", admin}, strings.NewReader(""), io.Discard, &errOut)
	}()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := http.Get("http://" + admin + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("control never became ready; stderr:\n%s", errOut.String())
		}
		<-tick.C
	}

	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := pb.NewDestinationClient(cc).Get(ctx, &pb.GetDestination{Path: "smiley.faces.svc.cluster.local:80"})
	if err != nil {
		t.Fatal(err)
	}
	if u, err := stream.Recv(); err != nil || u.GetNoEndpoints() == nil || !u.GetNoEndpoints().Exists {
		t.Fatalf("first update = %v, %v; want no_endpoints{exists: true}; stderr:\n%s", u, err, errOut.String())
	}

	// An EndpointSlice created in the cluster reaches the open stream.
	ready := true
	name, port := "http", int32(8080)
	if _, err := cs.DiscoveryV1().EndpointSlices("faces").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "smiley-1", Labels: map[string]string{discoveryv1.LabelServiceName: "smiley"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.9"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	u, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	addrs := u.GetAdd().GetAddrs()
	if len(addrs) != 1 || addrs[0].GetAddr().GetPort() != 8080 || addrs[0].GetAddr().GetIp().GetIpv4() != 10<<24|244<<16|9 {
		t.Fatalf("update after the EndpointSlice = %v; want an Add of 10.244.0.9:8080", u)
	}

	stop()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("weft control exited %d; stderr:\n%s", c, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("weft control did not stop after its context ended")
	}
}

func TestControlKubeStoreConfigErrors(t *testing.T) {
	t.Setenv("KUBECONFIG", "")
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no kubeconfig outside a cluster", nil, "--kubeconfig"},
		{"missing kubeconfig file", []string{"--kubeconfig", "/nonexistent/kubeconfig"}, "/nonexistent/kubeconfig"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var errOut syncBuffer
			args := append([]string{"control", "--store=kube", "--state-dir", t.TempDir(), "--addr", freeAddr(t), "--admin-addr", freeAddr(t)}, tc.args...)
			code := Run(context.Background(), args, strings.NewReader(""), io.Discard, &errOut)
			if code != 2 || !strings.Contains(errOut.String(), tc.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and a message naming %s", code, errOut.String(), tc.want)
			}
		})
	}
}
