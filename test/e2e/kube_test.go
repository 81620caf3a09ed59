package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	pb "github.com/linkerd/linkerd2-proxy-api/go/destination"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weft-mesh/weft/internal/kubetest"
	"github.com/weft-mesh/weft/internal/tlsid"
)

// kubeFaces is the part of a meshed Faces namespace Destination reads: the
// smiley and color Services, their pods (meshed: they carry the proxy
// version annotation, as the injector leaves them) and EndpointSlices, and
// the workshop's ServiceProfiles. There is no kubelet or controller
// manager in the test cluster, so pods and slices are written as those
// would write them; the slices point at proxies the test runs on this
// machine's address %[3]s (the API server refuses loopback endpoints).
// %[1]d and %[2]d are smiley's and color's inbound ports.
const kubeFaces = `apiVersion: v1
kind: Namespace
metadata: {name: faces}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: smiley, namespace: faces}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: color, namespace: faces}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: face, namespace: faces}
---
apiVersion: v1
kind: Service
metadata: {name: smiley, namespace: faces}
spec:
  selector: {app: smiley}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: color, namespace: faces}
spec:
  selector: {app: color}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata:
  name: smiley-5f4d8-x1
  namespace: faces
  labels: {app: smiley, pod-template-hash: 5f4d8}
  annotations: {linkerd.io/proxy-version: e2e}
spec:
  serviceAccountName: smiley
  containers: [{name: smiley, image: faces, ports: [{name: http, containerPort: 8000}]}]
status:
  phase: Running
  podIP: %[3]s
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: color-7c9b6-y2
  namespace: faces
  labels: {app: color, pod-template-hash: 7c9b6}
  annotations: {linkerd.io/proxy-version: e2e}
spec:
  serviceAccountName: color
  containers: [{name: color, image: faces, ports: [{name: http, containerPort: 8000}]}]
status:
  phase: Running
  podIP: %[3]s
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: v1
kind: Pod
metadata:
  name: face-6d5c4-z3
  namespace: faces
  labels: {app: face, pod-template-hash: 6d5c4}
  annotations: {linkerd.io/proxy-version: e2e}
spec:
  serviceAccountName: face
  containers: [{name: face, image: faces}]
status:
  phase: Running
  podIP: %[3]s
  conditions: [{type: Ready, status: "True"}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: smiley-x1
  namespace: faces
  labels: {kubernetes.io/service-name: smiley}
addressType: IPv4
endpoints:
- addresses: [%[3]s]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: faces, name: smiley-5f4d8-x1}
ports: [{name: http, port: %[1]d, protocol: TCP}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: color-y2
  namespace: faces
  labels: {kubernetes.io/service-name: color}
addressType: IPv4
endpoints:
- addresses: [%[3]s]
  conditions: {ready: true}
  targetRef: {kind: Pod, namespace: faces, name: color-7c9b6-y2}
ports: [{name: http, port: %[2]d, protocol: TCP}]
`

// TestKubeControlPlane is issue 9's integration walk: the CRDs of 'weft
// install --crds' and a Faces namespace with the workshop's
// ServiceProfiles go into a real API server; 'weft control --store=kube'
// runs against it as a process; it gives proxies exactly what the local
// control plane gives for the same objects in a state directory; and real
// 'weft proxy' processes, with identities issued for their service
// accounts' tokens (TokenReview), carry requests over mTLS with the
// ServiceProfile's retries.
func TestKubeControlPlane(t *testing.T) {
	c := kubetest.Start(t)
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	crds, code := runWeft(t, t.TempDir(), "install", "--crds")
	if code != 0 {
		t.Fatalf("weft install --crds: exit %d\n%s", code, crds)
	}
	c.ApplyYAML(t, []byte(crds))

	// The backends: smiley fails its first request with a 500, which the
	// profile's retry hides; color always answers.
	var smileyCalls atomic.Int64
	smileyApp := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if smileyCalls.Add(1) == 1 {
			http.Error(w, "first call fails", http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, "smiley")
	}))
	colorApp := serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "color") }))
	ip := hostIP(t)
	smileyIn, colorIn := freeAddrOn(t, ip), freeAddrOn(t, ip)
	manifest := fmt.Sprintf(kubeFaces, portOf(t, smileyIn), portOf(t, colorIn), ip) + "---\n" + profiles("")
	c.ApplyYAML(t, []byte(manifest))
	// Server-side apply leaves pod status to the kubelet; be the kubelet.
	pods := map[string]*corev1.Pod{}
	for _, name := range []string{"smiley-5f4d8-x1", "color-7c9b6-y2", "face-6d5c4-z3"} {
		p, err := cs.CoreV1().Pods("faces").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
		if pods[name], err = cs.CoreV1().Pods("faces").UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// The same objects in a local state directory, served by a local
	// control plane.
	localDir := t.TempDir()
	f := filepath.Join(t.TempDir(), "faces.yaml")
	if err := os.WriteFile(f, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := runWeft(t, localDir, "apply", "-f", f); code != 0 {
		t.Fatalf("weft apply: exit %d\n%s", code, out)
	}
	localAddr, localAdmin := freeAddr(t), freeAddr(t)
	startProcess(t, "local control", localAdmin, "--state-dir", localDir, "control", "--addr", localAddr, "--admin-addr", localAdmin)

	kubeDir := t.TempDir()
	kubeAddr, kubeAdmin := freeAddr(t), freeAddr(t)
	startProcess(t, "kube control", kubeAdmin, "--state-dir", kubeDir, "control", "--store=kube", "--kubeconfig", c.Kubeconfig,
		"--addr", kubeAddr, "--admin-addr", kubeAdmin)

	// Destination answers alike from both stores.
	local, kube := destinationClient(t, localAddr), destinationClient(t, kubeAddr)
	for _, path := range []string{"smiley.faces.svc.cluster.local:80", "color.faces.svc.cluster.local:80", "smiley.faces.svc.cluster.local:8080"} {
		eventually(t, 30*time.Second, "the same answer for "+path, func() error {
			for _, rpc := range []string{"Get", "GetProfile"} {
				l, err := firstAnswer(ctx, local, rpc, path)
				if err != nil {
					return fmt.Errorf("local %s: %w", rpc, err)
				}
				k, err := firstAnswer(ctx, kube, rpc, path)
				if err != nil {
					return fmt.Errorf("kube %s: %w", rpc, err)
				}
				if !proto.Equal(l, k) {
					return fmt.Errorf("%s(%s) differs:\nlocal: %s\nkube:  %s", rpc, path, prototext.Format(l), prototext.Format(k))
				}
			}
			return nil
		})
	}

	// Proxies against the Kubernetes control plane, each with its service
	// account's token for the identity service.
	anchors := filepath.Join(kubeDir, "identity", tlsid.AnchorsFile)
	// The kubelet's projected token: bound to the pod, for the identity
	// service's audience.
	token := func(pod, sa string) string {
		tr, err := cs.CoreV1().ServiceAccounts("faces").CreateToken(ctx, sa, &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
			Audiences:      []string{"identity.l5d.io"},
			BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod, UID: pods[pod].UID},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(p, []byte(tr.Status.Token), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	sidecar := func(pod, sa, inbound, app string) (outbound, admin string) {
		outbound, admin = freeAddr(t), freeAddr(t)
		args := []string{"proxy", "--control-addr", kubeAddr, "--outbound-addr", outbound, "--admin-addr", admin,
			"--namespace", "faces", "--pod", pod, "--service-account", sa,
			"--identity-token-file", token(pod, sa), "--identity-trust-anchors-file", anchors}
		if inbound != "" {
			args = append(args, "--inbound", inbound+"="+app)
		}
		startProcess(t, pod+" proxy", admin, args...)
		return outbound, admin
	}
	sidecar("smiley-5f4d8-x1", "smiley", smileyIn, smileyApp)
	sidecar("color-7c9b6-y2", "color", colorIn, colorApp)
	faceOut, faceAdmin := sidecar("face-6d5c4-z3", "face", "", "")

	proxyURL, _ := url.Parse("http://" + faceOut)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}, Timeout: 10 * time.Second}
	for _, tc := range []struct{ url, want string }{
		{"http://smiley.faces.svc.cluster.local/", "smiley"},
		{"http://color.faces/", "color"},
	} {
		resp, err := client.Get(tc.url)
		if err != nil {
			t.Fatalf("GET %s through face's proxy: %v", tc.url, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != tc.want {
			t.Fatalf("GET %s through face's proxy: %d %q, want 200 %q", tc.url, resp.StatusCode, body, tc.want)
		}
	}
	if n := smileyCalls.Load(); n != 2 {
		t.Errorf("smiley was called %d times, want 2: the profile's retry after the first 500", n)
	}
	m := proxyMetrics(t, faceAdmin)
	for _, svc := range []string{"smiley", "color"} {
		lines := grepMetric(m, "response_total", `authority="`+svc)
		if !strings.Contains(lines, `tls="true"`) || !strings.Contains(lines, `server_id="`+svc+`.faces.serviceaccount.identity.weft.cluster.local"`) {
			t.Errorf("face's proxy did not reach %s over mTLS with its identity:\n%s", svc, lines)
		}
	}
	// The profile's route is matched and retried: one request, two
	// attempts.
	attempts := grepMetric(m, "route_actual_request_total", `rt_route="GET /"`)
	if !strings.Contains(attempts, "smiley") || !strings.HasSuffix(grepMetric(attempts, "route_actual_request_total", "smiley"), " 2") {
		t.Errorf("want two attempts on smiley's profile route \"GET /\":\n%s", attempts)
	}

	// A rollout, as the cluster's controllers would do it: a new smiley
	// pod and its proxy, and the EndpointSlice moved to it. The client's
	// proxy follows the API server.
	newPod := pods["smiley-5f4d8-x1"].DeepCopy()
	newPod.ObjectMeta = metav1.ObjectMeta{Name: "smiley-5f4d8-x2", Namespace: "faces", Labels: newPod.Labels, Annotations: newPod.Annotations}
	created, err := cs.CoreV1().Pods("faces").Create(ctx, newPod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created.Status = newPod.Status
	if pods["smiley-5f4d8-x2"], err = cs.CoreV1().Pods("faces").UpdateStatus(ctx, created, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	smiley2In := freeAddrOn(t, ip)
	sidecar("smiley-5f4d8-x2", "smiley", smiley2In, serveHTTP(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "smiley 2") })))
	slice, err := cs.DiscoveryV1().EndpointSlices("faces").Get(ctx, "smiley-x1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	port := int32(portOf(t, smiley2In))
	slice.Endpoints[0].TargetRef.Name = "smiley-5f4d8-x2"
	slice.Ports[0].Port = &port
	if _, err := cs.DiscoveryV1().EndpointSlices("faces").Update(ctx, slice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "requests reach the new smiley pod", func() error {
		resp, err := client.Get("http://smiley.faces.svc.cluster.local/")
		if err != nil {
			return err
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "smiley 2" {
			return fmt.Errorf("%d %q", resp.StatusCode, body)
		}
		return nil
	})
}

// hostIP is an IPv4 address of this machine that is not loopback, for
// pod IPs the API server accepts.
func hostIP(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no IPv4 address other than loopback, and the API server refuses loopback endpoints")
	return ""
}

// freeAddrOn returns an address on ip nothing listens on now.
func freeAddrOn(t *testing.T, ip string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serveHTTP serves h on a free loopback port until the test ends.
func serveHTTP(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var n int
	fmt.Sscan(p, &n)
	return n
}

// startProcess runs 'weft ARGS...' until the test ends (then SIGTERM) and
// waits for its admin server's /ready.
func startProcess(t *testing.T, what, admin string, args ...string) {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(weftBin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", what, out.String())
		}
	})
	eventually(t, 60*time.Second, what+" ready", func() error {
		select {
		case <-done:
			return fmt.Errorf("exited: %s", out.String())
		default:
		}
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %d", resp.StatusCode)
		}
		return nil
	})
}

func destinationClient(t *testing.T, addr string) pb.DestinationClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return pb.NewDestinationClient(cc)
}

// firstAnswer is the first message of a Get or GetProfile stream: what a
// proxy that asks now is told.
func firstAnswer(ctx context.Context, c pb.DestinationClient, rpc, path string) (proto.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req := &pb.GetDestination{Scheme: "k8s", Path: path, ContextToken: `{"ns":"faces"}`}
	if rpc == "Get" {
		s, err := c.Get(ctx, req)
		if err != nil {
			return nil, err
		}
		return s.Recv()
	}
	s, err := c.GetProfile(ctx, req)
	if err != nil {
		return nil, err
	}
	return s.Recv()
}
