package kube_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"

	"github.com/weft-mesh/weft/internal/api"
	"github.com/weft-mesh/weft/internal/kubetest"
	"github.com/weft-mesh/weft/internal/store"
	"github.com/weft-mesh/weft/internal/store/kube"
)

// waitTimeout bounds every wait for the caches to catch up. Generous:
// after an API server restart client-go's reflectors back off
// exponentially (up to tens of seconds on a loaded machine) before
// relisting.
const waitTimeout = 45 * time.Second

// env is one cluster with a kube Store and direct clients for checking
// what the API server holds.
type env struct {
	c      *kubetest.Cluster
	st     *kube.Store
	client kubernetes.Interface
	dyn    dynamic.Interface
}

func newEnv(t *testing.T, c *kubetest.Cluster) *env {
	t.Helper()
	st, err := kube.New(c.Config, kube.Options{
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Short, so that CRDs installed later are found quickly.
		Resync: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	client, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	return &env{c: c, st: st, client: client, dyn: dyn}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it returns nil or waitTimeout passes.
func eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %v", what, err)
		}
		<-tick.C
	}
}

// fired waits for a notification on ch.
func fired(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("watch closed while waiting for %s", what)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("no watch notification for %s", what)
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func names(objs []api.Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

func namespace(name string) *corev1.Namespace {
	ns := api.New(api.KindNamespace).(*corev1.Namespace)
	ns.Name = name
	return ns
}

func service(ns, name string, port int32) *corev1.Service {
	s := api.New(api.KindService).(*corev1.Service)
	s.Namespace, s.Name = ns, name
	s.Labels = map[string]string{"app": name}
	s.Spec.Selector = map[string]string{"app": name}
	s.Spec.Ports = []corev1.ServicePort{{Name: "http", Port: port, TargetPort: intstr.FromInt32(8000), Protocol: corev1.ProtocolTCP}}
	return s
}

func serviceAccount(ns, name string) *corev1.ServiceAccount {
	sa := api.New(api.KindServiceAccount).(*corev1.ServiceAccount)
	sa.Namespace, sa.Name = ns, name
	return sa
}

func podObj(ns, name, sa, ip string) *corev1.Pod {
	p := api.New(api.KindPod).(*corev1.Pod)
	p.Namespace, p.Name = ns, name
	p.Labels = map[string]string{"app": "smiley"}
	p.Spec.ServiceAccountName = sa
	p.Spec.Containers = []corev1.Container{{Name: "app", Image: "example.com/smiley:1"}}
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	return p
}

func TestStore(t *testing.T) {
	c := kubetest.Start(t)
	t.Run("core kinds", func(t *testing.T) { testCoreKinds(t, newEnv(t, c)) })
	t.Run("all or nothing", func(t *testing.T) { testAllOrNothing(t, newEnv(t, c)) })
	t.Run("custom resources", func(t *testing.T) { testCustomResources(t, newEnv(t, c)) })
	t.Run("route status", func(t *testing.T) { testRouteStatus(t, newEnv(t, c)) })
	t.Run("every custom kind", func(t *testing.T) { testEveryCustomKind(t, newEnv(t, c)) })
	t.Run("destination", func(t *testing.T) { testDestination(t, newEnv(t, c)) })
	t.Run("RBAC", func(t *testing.T) { testRBAC(t, c) })
	// Last: it restarts the API server.
	t.Run("API server restart", func(t *testing.T) { testRestart(t, c) })
}

func testCoreKinds(t *testing.T, e *env) {
	ctx := ctxT(t)
	svcWatch, err := e.st.Watch(ctx, api.KindService)
	if err != nil {
		t.Fatal(err)
	}
	fired(t, svcWatch, "the initial notification")

	dep := api.New(api.KindDeployment).(*appsv1.Deployment)
	dep.Namespace, dep.Name = "core", "smiley"
	dep.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "smiley"}}
	dep.Spec.Template.Labels = map[string]string{"app": "smiley"}
	dep.Spec.Template.Spec.Containers = []corev1.Container{{Name: "app", Image: "example.com/smiley:1"}}
	secret := api.New(api.KindSecret).(*corev1.Secret)
	secret.Namespace, secret.Name = "core", "token"
	secret.Data = map[string][]byte{"key": []byte("value")}
	ready := true
	slice := api.New(api.KindEndpointSlice).(*discoveryv1.EndpointSlice)
	slice.Namespace, slice.Name = "core", "smiley-abc"
	slice.Labels = map[string]string{discoveryv1.LabelServiceName: "smiley"}
	slice.AddressType = discoveryv1.AddressTypeIPv4
	slice.Endpoints = []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}
	portName, port := "http", int32(8000)
	slice.Ports = []discoveryv1.EndpointPort{{Name: &portName, Port: &port}}
	pod := podObj("core", "smiley-1", "smiley", "10.244.0.5")
	// The namespace comes last in the batch: Apply creates it first.
	// The ServiceAccount precedes the Pod that admission checks it for.
	objs := []api.Object{service("core", "smiley", 80), service("core", "frowny", 81), dep, secret, slice,
		serviceAccount("core", "smiley"), pod, namespace("core")}
	if err := e.st.Apply(ctx, objs...); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	fired(t, svcWatch, "services created")

	for _, o := range objs {
		ref := api.RefOf(o)
		eventually(t, ref.String()+" in the cache", func() error {
			_, err := e.st.Get(ctx, ref)
			return err
		})
	}
	got, err := e.st.Get(ctx, api.RefOf(pod))
	if err != nil {
		t.Fatal(err)
	}
	gp := got.(*corev1.Pod)
	if gp.APIVersion != "v1" || gp.Kind != "Pod" {
		t.Errorf("Get Pod TypeMeta = %q %q, want v1 Pod", gp.APIVersion, gp.Kind)
	}
	if gp.Status.PodIP != "10.244.0.5" || gp.Status.Phase != corev1.PodRunning || gp.Spec.ServiceAccountName != "smiley" {
		t.Errorf("Get Pod: podIP %q phase %q serviceAccount %q; want the applied status and spec", gp.Status.PodIP, gp.Status.Phase, gp.Spec.ServiceAccountName)
	}
	if len(gp.ManagedFields) != 0 {
		t.Errorf("cached Pod kept %d managedFields entries", len(gp.ManagedFields))
	}
	gotSecret, err := e.st.Get(ctx, api.RefOf(secret))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(secret.Data, gotSecret.(*corev1.Secret).Data); d != "" {
		t.Errorf("Secret data (-want +got):\n%s", d)
	}
	gotDep, err := e.st.Get(ctx, api.RefOf(dep))
	if err != nil {
		t.Fatal(err)
	}
	if k := api.KindOf(gotDep); k != api.KindDeployment {
		t.Errorf("Deployment's kind = %v", k)
	}

	// Objects handed out are copies.
	gp.Labels["app"] = "changed"
	again, err := e.st.Get(ctx, api.RefOf(pod))
	if err != nil {
		t.Fatal(err)
	}
	if again.GetLabels()["app"] != "smiley" {
		t.Fatal("modifying a returned object changed the cache")
	}

	// List is sorted and filters by namespace; "" is every namespace.
	list, err := e.st.List(ctx, api.KindService, "core")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"core/frowny", "core/smiley"}, names(list)); d != "" {
		t.Errorf("List services in core (-want +got):\n%s", d)
	}
	// ListShared gives the same sorted list, without copying: two calls
	// return the cache's own objects.
	shared, err := e.st.ListShared(ctx, api.KindService, "core")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"core/frowny", "core/smiley"}, names(shared)); d != "" {
		t.Errorf("ListShared services in core (-want +got):\n%s", d)
	}
	if again, _ := e.st.ListShared(ctx, api.KindService, "core"); len(again) != 2 || again[0] != shared[0] {
		t.Error("ListShared copied the cached objects")
	}
	all, err := e.st.List(ctx, api.KindService, "")
	if err != nil {
		t.Fatal(err)
	}
	if n := names(all); len(n) < 3 || !contains(n, "default/kubernetes") {
		t.Errorf("List services in all namespaces = %v, want core's and default/kubernetes", n)
	}
	nss, err := e.st.List(ctx, api.KindNamespace, "")
	if err != nil {
		t.Fatal(err)
	}
	if !contains(names(nss), "/core") {
		t.Errorf("List namespaces = %v, want core", names(nss))
	}

	// A change by another client fires the watch and shows in List.
	drain(svcWatch)
	svc, err := e.client.CoreV1().Services("core").Get(ctx, "frowny", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc.Annotations = map[string]string{"config.linkerd.io/opaque-ports": "81"}
	if _, err := e.client.CoreV1().Services("core").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	fired(t, svcWatch, "an update by another client")
	eventually(t, "the annotation in the cache", func() error {
		o, err := e.st.Get(ctx, api.Ref{Kind: api.KindService, Namespace: "core", Name: "frowny"})
		if err != nil {
			return err
		}
		if o.GetAnnotations()["config.linkerd.io/opaque-ports"] != "81" {
			return errors.New("annotation not there yet")
		}
		return nil
	})

	// Apply again replaces the fields Weft set, and the writer reads its
	// own write at once.
	changed := service("core", "smiley", 8080)
	if err := e.st.Apply(ctx, changed); err != nil {
		t.Fatal(err)
	}
	o, err := e.st.Get(ctx, api.RefOf(changed))
	if err != nil {
		t.Fatal(err)
	}
	if ports := o.(*corev1.Service).Spec.Ports; len(ports) != 1 || ports[0].Port != 8080 {
		t.Fatalf("Get right after Apply: ports %v, want only 8080", ports)
	}

	// Delete ignores missing objects; deleted ones leave the cache.
	drain(svcWatch)
	if err := e.st.Delete(ctx, api.RefOf(changed), api.Ref{Kind: api.KindService, Namespace: "core", Name: "missing"}); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	fired(t, svcWatch, "a deletion")
	if _, err := e.st.Get(ctx, api.RefOf(changed)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get right after Delete: err = %v, want not found", err)
	}
	if _, err := e.client.CoreV1().Services("core").Get(ctx, "smiley", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("API server still has the deleted service: %v", err)
	}

	// A watch closes when its context ends.
	wctx, wcancel := context.WithCancel(ctx)
	closing, err := e.st.Watch(wctx, api.KindPod)
	if err != nil {
		t.Fatal(err)
	}
	wcancel()
	for range closing { // drains pending notifications until closed
	}

	// Bad input is refused before anything is sent.
	noName := service("core", "", 80)
	noNS := service("", "x", 80)
	untyped := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "core", Name: "untyped"}}
	for _, o := range []api.Object{noName, noNS, untyped} {
		if err := e.st.Apply(ctx, o); err == nil {
			t.Errorf("Apply(%s) succeeded, want an error", api.RefOf(o))
		}
	}

	// A closed store says so.
	e.st.Close()
	if _, err := e.st.List(ctx, api.KindService, ""); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("List after Close: err = %v, want the store is closed", err)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func testAllOrNothing(t *testing.T, e *env) {
	ctx := ctxT(t)
	if err := e.st.Apply(ctx, namespace("aon")); err != nil {
		t.Fatal(err)
	}
	good := service("aon", "good", 80)
	bad := service("aon", "bad", 80)
	bad.Spec.Ports[0].Port = 70000 // the API server's validation refuses it
	err := e.st.Apply(ctx, good, bad)
	if err == nil {
		t.Fatal("Apply with an invalid Service succeeded")
	}
	if !strings.Contains(err.Error(), "Service/aon/bad") || !strings.Contains(err.Error(), "nothing applied") {
		t.Errorf("error = %v; want it to name Service/aon/bad and say nothing was applied", err)
	}
	if _, err := e.client.CoreV1().Services("aon").Get(ctx, "good", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the valid Service of a refused batch was stored: %v", err)
	}

	if err := e.st.Apply(ctx, service("aon", "kept", 80)); err != nil {
		t.Fatal(err)
	}
	// A refused deletion deletes nothing: a dry run of deleting the
	// default namespace fails, as the API server forbids it.
	err = e.st.Delete(ctx, api.Ref{Kind: api.KindService, Namespace: "aon", Name: "kept"}, api.Ref{Kind: api.KindNamespace, Name: "default"})
	if err == nil {
		t.Fatal("deleting the default namespace succeeded")
	}
	if _, err := e.client.CoreV1().Services("aon").Get(ctx, "kept", metav1.GetOptions{}); err != nil {
		t.Fatalf("a refused Delete batch deleted another object: %v", err)
	}
}

var spGVR = schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}

func serviceProfile(ns, name string, routes ...api.RouteSpec) *api.ServiceProfile {
	sp := api.New(api.KindServiceProfile).(*api.ServiceProfile)
	sp.Namespace, sp.Name = ns, name
	sp.Spec.Routes = routes
	return sp
}

func testCustomResources(t *testing.T, e *env) {
	ctx := ctxT(t)
	if err := e.st.Apply(ctx, namespace("crd")); err != nil {
		t.Fatal(err)
	}
	// Before the CRD exists the kind reads as empty, and writes say why
	// they cannot work.
	list, err := e.st.List(ctx, api.KindServiceProfile, "")
	if err != nil || len(list) != 0 {
		t.Fatalf("List ServiceProfiles without the CRD = %v, %v; want empty, no error", names(list), err)
	}
	w, err := e.st.Watch(ctx, api.KindServiceProfile)
	if err != nil {
		t.Fatal(err)
	}
	fired(t, w, "the initial notification")
	sp := serviceProfile("crd", "smiley.crd.svc.cluster.local", api.RouteSpec{
		Name:        "GET /api",
		Condition:   &api.RequestMatch{Method: "GET", PathRegex: "/api/.*"},
		IsRetryable: true,
		Timeout:     "300ms",
	})
	sp.Spec.RetryBudget = &api.RetryBudget{RetryRatio: 0.5, MinRetriesPerSecond: 3, TTL: "1m"}
	err = e.st.Apply(ctx, sp)
	if err == nil || !strings.Contains(err.Error(), "CustomResourceDefinition") {
		t.Fatalf("Apply ServiceProfile without the CRD: err = %v, want one telling to install the CRD", err)
	}

	// Installing the CRD later is noticed: the watch fires and the
	// object appears.
	e.c.InstallMinimalCRDs(t, api.KindServiceProfile)
	if err := e.st.Apply(ctx, sp); err != nil {
		t.Fatalf("Apply ServiceProfile: %v", err)
	}
	fired(t, w, "the ServiceProfile")
	var got api.Object
	eventually(t, "the ServiceProfile in the cache", func() error {
		got, err = e.st.Get(ctx, api.RefOf(sp))
		return err
	})
	if d := cmp.Diff(sp.Spec, got.(*api.ServiceProfile).Spec); d != "" {
		t.Errorf("ServiceProfile spec (-applied +got):\n%s", d)
	}
	if k := api.KindOf(got); k != api.KindServiceProfile {
		t.Errorf("kind = %v", k)
	}

	// An object the CRD accepts but Weft's type cannot hold is skipped,
	// without hiding the others.
	bad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "linkerd.io/v1alpha2", "kind": "ServiceProfile",
		"metadata": map[string]any{"namespace": "crd", "name": "bad.crd.svc.cluster.local"},
		"spec":     map[string]any{"routes": "not a list"},
	}}
	if _, err := e.dyn.Resource(spGVR).Namespace("crd").Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the bad object in the cache", func() error {
		_, err := e.st.Get(ctx, api.Ref{Kind: api.KindServiceProfile, Namespace: "crd", Name: "bad.crd.svc.cluster.local"})
		if err == nil || errors.Is(err, store.ErrNotFound) {
			return errors.New("not cached yet")
		}
		return nil // cached, and Get explains why it cannot be read
	})
	list, err = e.st.List(ctx, api.KindServiceProfile, "crd")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"crd/smiley.crd.svc.cluster.local"}, names(list)); d != "" {
		t.Errorf("List ServiceProfiles (-want +got):\n%s", d)
	}

	// Delete removes it from the API server and the cache.
	if err := e.st.Delete(ctx, api.RefOf(sp)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deletion in the cache", func() error {
		if _, err := e.st.Get(ctx, api.RefOf(sp)); !errors.Is(err, store.ErrNotFound) {
			return errors.New("still cached")
		}
		return nil
	})
	// Deleting a kind the API server does not serve is a no-op.
	if err := e.st.Delete(ctx, api.Ref{Kind: api.KindTrafficSplit, Namespace: "crd", Name: "x"}); err != nil {
		t.Errorf("Delete of a kind without CRD: %v", err)
	}
}

func testRouteStatus(t *testing.T, e *env) {
	ctx := ctxT(t)
	e.c.InstallMinimalCRDs(t, api.KindHTTPRoute)
	route := api.New(api.KindHTTPRoute).(*gatewayv1.HTTPRoute)
	route.Namespace, route.Name = "routes", "smiley"
	port := gatewayv1.PortNumber(80)
	group, kind := gatewayv1.Group("core"), gatewayv1.Kind("Service")
	route.Spec.ParentRefs = []gatewayv1.ParentReference{{Group: &group, Kind: &kind, Name: "smiley", Port: &port}}
	if err := e.st.Apply(ctx, namespace("routes"), route); err != nil {
		t.Fatal(err)
	}
	withStatus := route.DeepCopy()
	withStatus.Spec = gatewayv1.HTTPRouteSpec{} // ignored by ApplyStatus
	withStatus.Status.Parents = []gatewayv1.RouteParentStatus{{
		ParentRef:      route.Spec.ParentRefs[0],
		ControllerName: "linkerd.io/policy-controller",
		Conditions: []metav1.Condition{{
			Type: "Accepted", Status: metav1.ConditionTrue, Reason: "Accepted",
			LastTransitionTime: metav1.NewTime(time.Unix(1700000000, 0).UTC()),
		}},
	}}
	if err := e.st.ApplyStatus(ctx, withStatus); err != nil {
		t.Fatalf("ApplyStatus: %v", err)
	}
	var got *gatewayv1.HTTPRoute
	eventually(t, "the status in the cache", func() error {
		o, err := e.st.Get(ctx, api.RefOf(route))
		if err != nil {
			return err
		}
		got = o.(*gatewayv1.HTTPRoute)
		if len(got.Status.Parents) == 0 {
			return errors.New("no status yet")
		}
		return nil
	})
	if d := cmp.Diff(withStatus.Status, got.Status); d != "" {
		t.Errorf("status (-want +got):\n%s", d)
	}
	if d := cmp.Diff(route.Spec.ParentRefs, got.Spec.ParentRefs); d != "" {
		t.Errorf("ApplyStatus changed the spec (-want +got):\n%s", d)
	}
	// A kind without a status subresource is refused clearly.
	if err := e.st.ApplyStatus(ctx, serviceAccount("routes", "x")); err == nil || !strings.Contains(err.Error(), "status subresource") {
		t.Errorf("ApplyStatus(ServiceAccount) err = %v, want no status subresource", err)
	}
}

// testRestart checks that the informers relist after the API server goes
// away and comes back: changes made after it, reach the cache and the
// watchers.
func testRestart(t *testing.T, c *kubetest.Cluster) {
	e := newEnv(t, c)
	ctx := ctxT(t)
	if err := e.st.Apply(ctx, namespace("restart"), service("restart", "before", 80)); err != nil {
		t.Fatal(err)
	}
	w, err := e.st.Watch(ctx, api.KindService)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first service", func() error {
		_, err := e.st.Get(ctx, api.Ref{Kind: api.KindService, Namespace: "restart", Name: "before"})
		return err
	})

	c.RestartAPIServer(t)
	drain(w)
	if _, err := e.client.CoreV1().Services("restart").Create(ctx, service("restart", "after", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	fired(t, w, "a service created after the restart")
	eventually(t, "the service created after the restart", func() error {
		list, err := e.st.List(ctx, api.KindService, "restart")
		if err != nil {
			return err
		}
		if d := cmp.Diff([]string{"restart/after", "restart/before"}, names(list)); d != "" {
			return errors.New(d)
		}
		return nil
	})
}

// testEveryCustomKind installs a CRD for every registered kind that is not
// built into Kubernetes, and round-trips an object of each through Apply,
// the dynamic informers and List: the resource names, versions and Go types
// all line up.
func testEveryCustomKind(t *testing.T, e *env) {
	ctx := ctxT(t)
	var kinds []api.Kind
	for _, ki := range api.Kinds() {
		if ki.Group != "" && ki.Group != "apps" && ki.Group != "discovery.k8s.io" {
			kinds = append(kinds, ki.Kind)
		}
	}
	e.c.InstallMinimalCRDs(t, kinds...)
	if err := e.st.Apply(ctx, namespace("every")); err != nil {
		t.Fatal(err)
	}
	for _, k := range kinds {
		t.Run(k.String(), func(t *testing.T) {
			// Cluster-scoped kinds (GatewayClass) take no namespace and
			// are listed cluster-wide.
			ns := "every"
			if !api.Lookup(k).Namespaced {
				ns = ""
			}
			o := api.New(k)
			o.SetNamespace(ns)
			o.SetName("x")
			o.SetLabels(map[string]string{"kind": strings.ToLower(k.Kind)})
			if err := e.st.Apply(ctx, o); err != nil {
				t.Fatalf("Apply: %v", err)
			}
			eventually(t, k.String()+" listed", func() error {
				list, err := e.st.List(ctx, k, ns)
				if err != nil {
					return err
				}
				if len(list) != 1 || api.KindOf(list[0]) != k || list[0].GetLabels()["kind"] != strings.ToLower(k.Kind) {
					return fmt.Errorf("List = %v", names(list))
				}
				return nil
			})
		})
	}
}

// testRBAC runs the store as an identity that RBAC restricts: reading a
// kind it may not list fails with an error saying so (instead of serving
// an empty cache), and works once a ClusterRole grants list and watch.
func testRBAC(t *testing.T, c *kubetest.Cluster) {
	ctx := ctxT(t)
	st, err := kube.New(c.UserConfig(t, "weft-control"), kube.Options{
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		SyncTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, err = st.List(ctx, api.KindService, "")
	if err == nil || !strings.Contains(err.Error(), "may this identity list services") {
		t.Fatalf("List without RBAC: err = %v, want one naming the missing permission", err)
	}

	admin, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	role := &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-control-test"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := admin.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "weft-control-test"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "weft-control-test"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "weft-control"}},
	}
	if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "List once granted", func() error {
		list, err := st.List(ctx, api.KindService, "")
		if err != nil {
			return err
		}
		if !contains(names(list), "default/kubernetes") {
			return fmt.Errorf("List = %v", names(list))
		}
		return nil
	})

	// An identity allowed into one namespace only (a Role) can run a
	// store limited to that namespace.
	if _, err := admin.CoreV1().Namespaces().Create(ctx, namespace("team"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Services("team").Create(ctx, service("team", "api", 80), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	teamRole := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"services"}, Verbs: []string{"get", "list", "watch"}}},
	}
	if _, err := admin.RbacV1().Roles("team").Create(ctx, teamRole, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "reader"},
		Subjects:   []rbacv1.Subject{{Kind: "User", APIGroup: "rbac.authorization.k8s.io", Name: "team-control"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.WaitAllowed(t, authorizationv1.ResourceAttributes{Namespace: "team", Verb: "list", Resource: "services"}, "team-control")
	teamStore, err := kube.New(c.UserConfig(t, "team-control"), kube.Options{
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		Namespace: "team",
	})
	if err != nil {
		t.Fatal(err)
	}
	defer teamStore.Close()
	list, err := teamStore.List(ctx, api.KindService, "")
	if err != nil {
		t.Fatalf("List with a namespace-limited store: %v", err)
	}
	if d := cmp.Diff([]string{"team/api"}, names(list)); d != "" {
		t.Errorf("List with a namespace-limited store (-want +got):\n%s", d)
	}
}
