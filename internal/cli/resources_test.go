package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	localstore "github.com/weft-mesh/weft/internal/store/local"
)

const facesManifest = `apiVersion: v1
kind: Namespace
metadata:
  name: faces
---
apiVersion: v1
kind: Service
metadata:
  name: smiley
  namespace: faces
spec:
  selector:
    app: smiley
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: smiley
  namespace: faces
  labels:
    tier: back
spec:
  replicas: 2
  selector:
    matchLabels:
      app: smiley
  template:
    metadata:
      labels:
        app: smiley
    spec:
      containers:
      - name: smiley
        image: faces
        command: ["weft", "faces", "smiley"]
        ports:
        - name: http
          containerPort: 8000
`

// weft runs the CLI against the state directory dir.
type result struct {
	code     int
	out, err string
}

func weft(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := Run(context.Background(), append([]string{"--state-dir", dir}, args...), strings.NewReader(stdin), &out, &errOut)
	return result{code, out.String(), errOut.String()}
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func openStore(t *testing.T, dir string) *localstore.Store {
	t.Helper()
	st, err := localstore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestApplyCreatedConfiguredUnchanged(t *testing.T) {
	dir := t.TempDir()
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)

	r := weft(t, dir, "", "apply", "-f", m)
	want := "namespace/faces created\nservice/smiley created\ndeployment.apps/smiley created\n"
	if r.code != 0 || r.out != want {
		t.Fatalf("first apply = %d %q (stderr %q), want 0 %q", r.code, r.out, r.err, want)
	}
	r = weft(t, dir, "", "apply", "-f", m)
	want = "namespace/faces unchanged\nservice/smiley unchanged\ndeployment.apps/smiley unchanged\n"
	if r.code != 0 || r.out != want {
		t.Fatalf("second apply = %d %q, want 0 %q", r.code, r.out, want)
	}
	writeFile(t, m, strings.Replace(facesManifest, "replicas: 2", "replicas: 3", 1))
	r = weft(t, dir, "", "apply", "-f", m)
	want = "namespace/faces unchanged\nservice/smiley unchanged\ndeployment.apps/smiley configured\n"
	if r.code != 0 || r.out != want {
		t.Fatalf("third apply = %d %q, want 0 %q", r.code, r.out, want)
	}
	o, err := openStore(t, dir).Get(context.Background(), api.Ref{Kind: api.KindDeployment, Namespace: "faces", Name: "smiley"})
	if err != nil {
		t.Fatal(err)
	}
	if n := *o.(*appsv1.Deployment).Spec.Replicas; n != 3 {
		t.Errorf("stored replicas = %d, want 3", n)
	}
}

// Re-applying a manifest keeps what the supervisor wrote into status.
func TestApplyKeepsStatus(t *testing.T) {
	dir := t.TempDir()
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)
	if r := weft(t, dir, "", "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: %d %s", r.code, r.err)
	}
	st := openStore(t, dir)
	ctx := context.Background()
	ref := api.Ref{Kind: api.KindDeployment, Namespace: "faces", Name: "smiley"}
	o, _ := st.Get(ctx, ref)
	d := o.(*appsv1.Deployment)
	d.Status = appsv1.DeploymentStatus{Replicas: 2, ReadyReplicas: 1, UpdatedReplicas: 2, AvailableReplicas: 1}
	if err := st.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	r := weft(t, dir, "", "apply", "-f", m)
	if !strings.Contains(r.out, "deployment.apps/smiley unchanged") {
		t.Errorf("re-apply over status: %q, want deployment unchanged", r.out)
	}
	o, _ = st.Get(ctx, ref)
	if got := o.(*appsv1.Deployment).Status.ReadyReplicas; got != 1 {
		t.Errorf("status.readyReplicas after re-apply = %d, want 1", got)
	}
	r = weft(t, dir, "", "get", "deploy", "-n", "faces")
	if !strings.Contains(r.out, "smiley   1/2     2            1") {
		t.Errorf("get deploy:\n%s", r.out)
	}
}

// Without a status, get deploy counts the Pods the supervisor wrote.
func TestGetDeploymentReadyFromPods(t *testing.T) {
	dir := t.TempDir()
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)
	if r := weft(t, dir, "", "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	pod := func(name, app string, ready corev1.ConditionStatus) api.Object {
		p := api.New(api.KindPod).(*corev1.Pod)
		p.Name, p.Namespace = name, "faces"
		p.Labels = map[string]string{"app": app, "pod-template-hash": "abc"}
		p.Spec.Containers = []corev1.Container{{Name: app}}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}
		return p
	}
	st := openStore(t, dir)
	if err := st.Apply(context.Background(),
		pod("smiley-1", "smiley", corev1.ConditionTrue),
		pod("smiley-2", "smiley", corev1.ConditionFalse),
		pod("other-1", "other", corev1.ConditionTrue),
	); err != nil {
		t.Fatal(err)
	}
	r := weft(t, dir, "", "get", "deploy", "-n", "faces")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "smiley 1/2 2 1 ") {
		t.Errorf("get deploy with one of two pods ready:\n%s%s", r.out, r.err)
	}
	// -o yaml shows what is stored: no invented status.
	r = weft(t, dir, "", "get", "deploy", "smiley", "-n", "faces", "-o", "yaml")
	if strings.Contains(r.out, "readyReplicas") {
		t.Errorf("get -o yaml shows a derived status:\n%s", r.out)
	}
	r = weft(t, dir, "", "get", "pods", "-n", "faces", "-l", "app=smiley")
	var rows []string
	for _, l := range strings.Split(strings.TrimSpace(r.out), "\n") {
		f := strings.Fields(l)
		rows = append(rows, strings.Join(f[:len(f)-1], " ")) // without AGE
	}
	want := []string{"NAME READY STATUS RESTARTS", "smiley-1 1/1 Running 0", "smiley-2 0/1 Running 0"}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("get pods -l app=smiley (-want +got):\n%s", diff)
	}
}

func TestApplyDirectoriesAndStdin(t *testing.T) {
	dir := t.TempDir()
	src := t.TempDir()
	svc := func(name string) string {
		return "apiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n  ports:\n  - port: 80\n"
	}
	writeFile(t, filepath.Join(src, "b.yml"), svc("b"))
	writeFile(t, filepath.Join(src, "a.yaml"), svc("a"))
	writeFile(t, filepath.Join(src, "c.json"), `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "c"}, "spec": {"ports": [{"port": 80}]}}`)
	writeFile(t, filepath.Join(src, "notes.txt"), "not a manifest")
	writeFile(t, filepath.Join(src, "sub", "d.yaml"), svc("d"))

	r := weft(t, dir, "", "apply", "-f", src)
	if want := "service/a created\nservice/b created\nservice/c created\n"; r.out != want {
		t.Errorf("apply DIR = %q (stderr %q), want %q", r.out, r.err, want)
	}
	r = weft(t, dir, "", "apply", "-R", "-f", src)
	if want := "service/a unchanged\nservice/b unchanged\nservice/c unchanged\nservice/d created\n"; r.out != want {
		t.Errorf("apply -R DIR = %q, want %q", r.out, want)
	}
	r = weft(t, dir, svc("e"), "apply", "-n", "other", "-f", "-")
	if want := "service/e created\n"; r.out != want {
		t.Errorf("apply - = %q (stderr %q), want %q", r.out, r.err, want)
	}
	r = weft(t, dir, "", "get", "svc", "-A", "-o", "name")
	if want := "service/a\nservice/b\nservice/c\nservice/d\nservice/e\n"; r.out != want {
		t.Errorf("get -A -o name = %q, want %q", r.out, want)
	}
	r = weft(t, dir, "", "get", "svc", "e", "-n", "other", "-o", "name")
	if r.code != 0 || r.out != "service/e\n" {
		t.Errorf("service e is not in namespace other: %+v", r)
	}
}

func TestApplyNamespaceMismatch(t *testing.T) {
	dir := t.TempDir()
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)
	r := weft(t, dir, "", "apply", "-n", "other", "-f", m)
	if r.code != 1 || !strings.Contains(r.err, `service/smiley: the namespace from the object "faces" does not match --namespace "other"`) {
		t.Fatalf("apply -n other = %+v", r)
	}
	if _, err := os.Stat(filepath.Join(dir, localstore.FileName)); !os.IsNotExist(err) {
		t.Errorf("a refused apply created the state file: %v", err)
	}
}

func TestApplyBadManifestStoresNothing(t *testing.T) {
	dir := t.TempDir()
	src := t.TempDir()
	good := writeFile(t, filepath.Join(src, "good.yaml"), facesManifest)
	if r := weft(t, dir, "", "apply", "-f", good); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	state := filepath.Join(dir, localstore.FileName)
	before, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	writeFile(t, good, strings.Replace(facesManifest, "replicas: 2", "replicas: 5", 1))
	bad := writeFile(t, filepath.Join(src, "bad.yaml"), `apiVersion: v1
kind: Service
metadata:
  name: fine
spec:
  ports:
  - port: 80
---
apiVersion: v1
kind: Service
metadata:
  name: broken
spec:
  ports:
  - port: 80
    bogus: true
---
apiVersion: v1
kind: Servize
metadata:
  name: typo
`)
	r := weft(t, dir, "", "apply", "-f", good, "-f", bad)
	if r.code != 1 {
		t.Errorf("exit code = %d, want 1", r.code)
	}
	if r.out != "" {
		t.Errorf("stdout = %q, want nothing", r.out)
	}
	for _, want := range []string{
		bad + ": document 1 (Service/broken): spec.ports[0].bogus: unknown field\n",
		bad + ": document 2 (Servize/typo): kind: unknown kind \"Servize\"",
		"Error: apply: 2 problems found; nothing was applied\n",
	} {
		if !strings.Contains(r.err, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.err)
		}
	}
	after, _ := os.ReadFile(state)
	if !bytes.Equal(before, after) {
		t.Error("a refused apply changed the state file")
	}
}

func TestApplyErrors(t *testing.T) {
	dir := t.TempDir()
	empty := writeFile(t, filepath.Join(t.TempDir(), "empty.yaml"), "# nothing\n---\n")
	for _, tc := range []struct {
		args []string
		code int
		err  string
	}{
		{[]string{"apply"}, 2, "give manifests with -f"},
		{[]string{"apply", "-f", filepath.Join(dir, "missing.yaml")}, 1, "missing.yaml: no such file"},
		{[]string{"apply", "-f", empty}, 1, "no objects found in " + empty},
		{[]string{"apply", "-f", "-", "-f", "-"}, 1, "standard input) given more than once"},
		{[]string{"apply", "-f", t.TempDir()}, 1, "no *.yaml, *.yml or *.json files"},
	} {
		r := weft(t, dir, "", tc.args...)
		if r.code != tc.code || !strings.Contains(r.err, tc.err) {
			t.Errorf("%v = %d %q, want %d and %q", tc.args, r.code, r.err, tc.code, tc.err)
		}
	}
}

func TestGetCommand(t *testing.T) {
	dir := t.TempDir()
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)
	if r := weft(t, dir, "", "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}

	r := weft(t, dir, "", "get", "services", "-n", "faces")
	lines := strings.Split(strings.TrimSpace(r.out), "\n")
	if r.code != 0 || len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "NAME TYPE PORT(S) AGE" ||
		!strings.HasPrefix(strings.Join(strings.Fields(lines[1]), " "), "smiley ClusterIP 80/TCP ") {
		t.Errorf("get services:\n%s\n%s", r.out, r.err)
	}

	r = weft(t, dir, "", "get", "svc", "-n", "empty")
	if r.code != 0 || r.out != "" || r.err != "No resources found in empty namespace.\n" {
		t.Errorf("get in an empty namespace = %+v", r)
	}
	r = weft(t, dir, "", "get", "svc", "nope", "-n", "faces")
	if r.code != 1 || r.err != "Error: services \"nope\" not found in namespace \"faces\"\n" {
		t.Errorf("get of a missing service = %+v", r)
	}
	r = weft(t, dir, "", "get", "frobs")
	if r.code != 2 || !strings.Contains(r.err, `unknown resource type "frobs"`) {
		t.Errorf("get of an unknown kind = %+v", r)
	}

	// -o yaml prints what apply reads back.
	r = weft(t, dir, "", "get", "svc/smiley", "-n", "faces", "-o", "yaml")
	if r.code != 0 {
		t.Fatalf("get -o yaml: %+v", r)
	}
	objs, err := api.Decode(strings.NewReader(r.out), "get-output")
	if err != nil {
		t.Fatalf("decoding get -o yaml output: %v\n%s", err, r.out)
	}
	svc, ok := objs[0].(*corev1.Service)
	if len(objs) != 1 || !ok || svc.Name != "smiley" || svc.Namespace != "faces" || svc.Spec.Ports[0].Port != 80 {
		t.Errorf("get -o yaml round trip = %#v", objs)
	}
	r = weft(t, dir, "", "apply", "-f", "-")
	if r.code == 0 {
		t.Errorf("apply of empty stdin succeeded: %+v", r)
	}
	var in bytes.Buffer
	in.WriteString(weft(t, dir, "", "get", "svc,deploy", "-n", "faces", "-o", "yaml").out)
	r = weft(t, dir, in.String(), "apply", "-f", "-")
	if want := "service/smiley unchanged\ndeployment.apps/smiley unchanged\n"; r.out != want {
		t.Errorf("re-applying get -o yaml output = %q (stderr %q), want %q", r.out, r.err, want)
	}

	r = weft(t, dir, "", "get", "ns")
	if !strings.HasPrefix(r.out, "NAME    STATUS   AGE\nfaces   Active   ") {
		t.Errorf("get ns:\n%s", r.out)
	}
	r = weft(t, dir, "", "get", "ns", "--no-headers")
	if !strings.HasPrefix(r.out, "faces   Active   ") {
		t.Errorf("get ns --no-headers:\n%s", r.out)
	}
	r = weft(t, dir, "", "get", "deploy", "-A", "-l", "app=other")
	if r.out != "" || r.err != "No resources found\n" {
		t.Errorf("get -A with a selector matching nothing = %+v", r)
	}
	r = weft(t, dir, "", "get", "deploy", "-A", "-l", "tier=back,app!=x", "-o", "name")
	if r.out != "deployment.apps/smiley\n" {
		t.Errorf("get -A with a matching selector = %+v", r)
	}
}

func TestDeleteCommand(t *testing.T) {
	dir := t.TempDir()
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)
	if r := weft(t, dir, "", "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	r := weft(t, dir, "", "delete", "svc", "smiley", "-n", "faces")
	if r.code != 0 || r.out != "service/smiley deleted\n" {
		t.Errorf("delete svc smiley = %+v", r)
	}
	r = weft(t, dir, "", "delete", "svc", "smiley", "-n", "faces")
	if r.code != 1 || !strings.Contains(r.err, `services "smiley" not found in namespace "faces"`) {
		t.Errorf("second delete = %+v", r)
	}
	if r = weft(t, dir, "", "delete", "svc", "smiley", "-n", "faces", "--ignore-not-found"); r.code != 0 {
		t.Errorf("delete --ignore-not-found = %+v", r)
	}
	// By manifest: the service is gone already, so it is reported missing,
	// and the rest is deleted.
	r = weft(t, dir, "", "delete", "-f", m)
	if r.code != 1 || r.out != "namespace/faces deleted\ndeployment.apps/smiley deleted\n" ||
		!strings.Contains(r.err, `services "smiley" not found`) {
		t.Errorf("delete -f = %+v", r)
	}
	if r = weft(t, dir, "", "get", "deploy", "-A"); r.err != "No resources found\n" {
		t.Errorf("after delete: %+v", r)
	}

	if r := weft(t, dir, "", "apply", "-f", m); r.code != 0 {
		t.Fatalf("apply: %+v", r)
	}
	r = weft(t, dir, "", "delete", "deploy/smiley", "ns/faces", "-n", "faces")
	if r.code != 0 || r.out != "deployment.apps/smiley deleted\nnamespace/faces deleted\n" {
		t.Errorf("delete KIND/NAME = %+v", r)
	}
	r = weft(t, dir, "", "delete", "svc", "--all", "-n", "faces")
	if r.code != 0 || r.out != "service/smiley deleted\n" {
		t.Errorf("delete --all = %+v", r)
	}
	if r = weft(t, dir, "", "delete", "svc"); r.code != 2 {
		t.Errorf("delete with a kind and no name = %+v", r)
	}
}

func TestTables(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	created := metav1.NewTime(now.Add(-90 * time.Minute))
	meta := func(ns, name string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: created}
	}
	three, ready, notReady := int32(3), true, false
	port := int32(4143)
	svc := &corev1.Service{ObjectMeta: meta("faces", "smiley"), Spec: corev1.ServiceSpec{
		Selector: map[string]string{"app": "smiley"},
		Ports:    []corev1.ServicePort{{Port: 80}, {Port: 443, Protocol: corev1.ProtocolUDP, NodePort: 30443}},
	}}
	bare := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "x", Name: "bare"}, Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort}}
	dep := &appsv1.Deployment{ObjectMeta: meta("faces", "web"), Spec: appsv1.DeploymentSpec{
		Replicas: &three,
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}, {Name: "log"}}}},
	}, Status: appsv1.DeploymentStatus{ReadyReplicas: 2, UpdatedReplicas: 3, AvailableReplicas: 2}}
	pod := &corev1.Pod{ObjectMeta: meta("faces", "web-abc"), Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "127.0.0.1",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	pod.Annotations = map[string]string{"weft.io/admin-addr": "127.0.0.1:4191"}
	slice := &discoveryv1.EndpointSlice{ObjectMeta: meta("faces", "smiley-web-abc"), AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{{Port: &port}},
		Endpoints: []discoveryv1.Endpoint{
			{Addresses: []string{"127.0.0.1"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}},
			{Addresses: []string{"127.0.0.2"}, Conditions: discoveryv1.EndpointConditions{Ready: &notReady}},
		}}
	secret := &corev1.Secret{ObjectMeta: meta("faces", "tls")}
	svcKind, port80, other := gatewayv1.Kind("Service"), gatewayv1.PortNumber(80), gatewayv1.Namespace("edge")
	route := &gatewayv1.HTTPRoute{ObjectMeta: meta("faces", "smiley-split"), Spec: gatewayv1.HTTPRouteSpec{
		Hostnames: []gatewayv1.Hostname{"smiley.example", "faces.example"},
		CommonRouteSpec: gatewayv1.CommonRouteSpec{ParentRefs: []gatewayv1.ParentReference{
			{Kind: &svcKind, Name: "smiley", Port: &port80},
			{Namespace: &other, Name: "ingress"},
		}},
	}}
	gw := &gatewayv1.Gateway{ObjectMeta: meta("edge", "ingress"), Spec: gatewayv1.GatewaySpec{
		GatewayClassName: "weft", Listeners: []gatewayv1.Listener{{Name: "http", Port: 8080, Protocol: gatewayv1.HTTPProtocolType}},
	}}
	gcWeft := &gatewayv1.GatewayClass{ObjectMeta: meta("", "weft"), Spec: gatewayv1.GatewayClassSpec{ControllerName: "weft.io/gateway-controller"},
		Status: gatewayv1.GatewayClassStatus{Conditions: []metav1.Condition{{Type: "Accepted", Status: metav1.ConditionTrue}}}}
	gcNew := &gatewayv1.GatewayClass{ObjectMeta: meta("", "other"), Spec: gatewayv1.GatewayClassSpec{ControllerName: "example.com/gw"}}

	for _, tc := range []struct {
		name string
		kind api.Kind
		objs []api.Object
		opts tableOptions
		want string
	}{
		{"service", api.KindService, []api.Object{svc, bare}, tableOptions{}, `
NAME     TYPE        PORT(S)                  AGE
smiley   ClusterIP   80/TCP,443:30443/UDP     90m
bare     NodePort    <none>                   <unknown>
`},
		{"service wide all namespaces", api.KindService, []api.Object{svc}, tableOptions{wide: true, withNamespace: true}, `
NAMESPACE   NAME     TYPE        PORT(S)                AGE   SELECTOR
faces       smiley   ClusterIP   80/TCP,443:30443/UDP   90m   app=smiley
`},
		{"deployment", api.KindDeployment, []api.Object{dep}, tableOptions{}, `
NAME   READY   UP-TO-DATE   AVAILABLE   AGE
web    2/3     3            2           90m
`},
		{"deployment wide", api.KindDeployment, []api.Object{dep}, tableOptions{wide: true}, `
NAME   READY   UP-TO-DATE   AVAILABLE   AGE   CONTAINERS   SELECTOR
web    2/3     3            2           90m   web,log      app=web
`},
		{"pod wide", api.KindPod, []api.Object{pod}, tableOptions{wide: true}, `
NAME      READY   STATUS    RESTARTS   AGE   IP          ADMIN
web-abc   1/1     Running   0          90m   127.0.0.1   127.0.0.1:4191
`},
		{"endpointslice", api.KindEndpointSlice, []api.Object{slice}, tableOptions{}, `
NAME             ADDRESSTYPE   PORTS   ENDPOINTS                          AGE
smiley-web-abc   IPv4          4143    127.0.0.1,127.0.0.2 (not ready)    90m
`},
		{"httproute wide", api.KindHTTPRoute, []api.Object{route}, tableOptions{wide: true}, `
NAME           HOSTNAMES                       AGE   PARENTS
smiley-split   smiley.example,faces.example    90m   service/smiley:80,gateway/edge/ingress
`},
		{"linkerd httproute", api.KindPolicyHTTPRoute, []api.Object{route}, tableOptions{}, `
NAME           HOSTNAMES                       AGE
smiley-split   smiley.example,faces.example    90m
`},
		{"gateway", api.KindGateway, []api.Object{gw}, tableOptions{}, `
NAME      CLASS   LISTENERS   AGE
ingress   weft    1           90m
`},
		{"gatewayclass", api.KindGatewayClass, []api.Object{gcWeft, gcNew}, tableOptions{}, `
NAME    CONTROLLER                   ACCEPTED   AGE
weft    weft.io/gateway-controller   True       90m
other   example.com/gw               Unknown    90m
`},
		{"generic with kind prefix", api.KindSecret, []api.Object{secret}, tableOptions{kindPrefix: true}, `
NAME         AGE
secret/tls   90m
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, o := range tc.objs {
				o.GetObjectKind().SetGroupVersionKind(api.New(tc.kind).GetObjectKind().GroupVersionKind())
			}
			tc.opts.now = now
			var buf bytes.Buffer
			if err := tableFor(api.Lookup(tc.kind), tc.objs, tc.opts).write(&buf); err != nil {
				t.Fatal(err)
			}
			// Compare cells, not runs of spaces: the alignment is tabwriter's.
			norm := func(s string) []string {
				var out []string
				for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
					out = append(out, strings.Join(strings.Fields(l), " "))
				}
				return out
			}
			if diff := cmp.Diff(norm(tc.want), norm(buf.String())); diff != "" {
				t.Errorf("table (-want +got):\n%s\ngot:\n%s", diff, buf.String())
			}
		})
	}
}

func TestAPIResources(t *testing.T) {
	var buf bytes.Buffer
	if err := printAPIResources(&buf, api.Kinds()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAME SHORTNAMES APIVERSION NAMESPACED KIND" {
		t.Errorf("header = %q", got)
	}
	if len(lines) != len(api.Kinds())+1 {
		t.Errorf("%d rows, want %d", len(lines)-1, len(api.Kinds()))
	}
	want := map[string]bool{
		"services svc v1 true Service":               false,
		"namespaces ns v1 false Namespace":           false,
		"deployments deploy apps/v1 true Deployment": false,
	}
	for _, l := range lines[1:] {
		if _, ok := want[strings.Join(strings.Fields(l), " ")]; ok {
			want[strings.Join(strings.Fields(l), " ")] = true
		}
	}
	for row, seen := range want {
		if !seen {
			t.Errorf("no row %q in:\n%s", row, buf.String())
		}
	}
	// Through the command too.
	r := weft(t, t.TempDir(), "", "api-resources")
	if r.code != 0 || r.out != buf.String() {
		t.Errorf("weft api-resources = %+v", r)
	}
}

func TestCorruptStateFile(t *testing.T) {
	dir := t.TempDir()
	state := writeFile(t, filepath.Join(dir, localstore.FileName), "{\"format\": ")
	m := writeFile(t, filepath.Join(t.TempDir(), "faces.yaml"), facesManifest)
	for _, args := range [][]string{{"get", "svc"}, {"apply", "-f", m}, {"delete", "svc", "x"}} {
		r := weft(t, dir, "", args...)
		if r.code != 1 || !strings.Contains(r.err, state+" is corrupt") {
			t.Errorf("%v on a corrupt state file = %+v, want exit 1 naming the file", args, r)
		}
	}
	if got, _ := os.ReadFile(state); string(got) != "{\"format\": " {
		t.Errorf("the corrupt file was changed to %q", got)
	}
}
