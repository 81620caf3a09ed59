package install

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/weft-mesh/weft/internal/inject"
)

func renderedDeployments(o Options) map[string]*appsv1.Deployment {
	out := map[string]*appsv1.Deployment{}
	for _, obj := range Objects(o) {
		if d, ok := obj.(*appsv1.Deployment); ok {
			out[d.Name] = d
		}
	}
	return out
}

func container(spec corev1.PodSpec, name string) *corev1.Container {
	for i := range spec.Containers {
		if spec.Containers[i].Name == name {
			return &spec.Containers[i]
		}
	}
	for i := range spec.InitContainers {
		if spec.InitContainers[i].Name == name {
			return &spec.InitContainers[i]
		}
	}
	return nil
}

func argValue(c *corev1.Container, flag string) (string, bool) {
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestIngressMeshed: the installed ingress pod carries the proxy, with
// the install's trust anchors and the ingress's identity, proxy-init
// leaving its Listener and admin ports and the API server's ports alone,
// and the ingress dials services by name for the proxy to capture. The
// control plane and the rate limit service stay unmeshed.
func TestIngressMeshed(t *testing.T) {
	o := testOptions(t)
	deps := renderedDeployments(o)
	d := deps[IngressName]
	if d == nil {
		t.Fatal("no ingress Deployment")
	}
	pod := d.Spec.Template.Spec
	if pod.ServiceAccountName != IngressName {
		t.Errorf("service account %q, want %q (the proxy's identity)", pod.ServiceAccountName, IngressName)
	}
	proxy, initc, app := container(pod, inject.ProxyContainerName), container(pod, inject.InitContainerName), container(pod, IngressName)
	if proxy == nil || initc == nil || app == nil {
		t.Fatalf("containers %v, init containers %v: want %s, %s and %s", pod.Containers, pod.InitContainers, inject.ProxyContainerName, IngressName, inject.InitContainerName)
	}
	if pod.Containers[0].Name != inject.ProxyContainerName {
		t.Errorf("the proxy is not the first container (it should start before the ingress dials through it)")
	}
	anchors := ""
	for _, e := range proxy.Env {
		if e.Name == "WEFT_PROXY_IDENTITY_TRUST_ANCHORS" {
			anchors = e.Value
		}
	}
	if anchors == "" || anchors != string(o.Identity.TrustAnchors) {
		t.Errorf("the proxy's trust anchors are not the install's")
	}
	for flag, want := range map[string]string{"--control-addr": inject.DefaultControlAddr, "--deployment": IngressName} {
		if v, _ := argValue(proxy, flag); v != want {
			t.Errorf("proxy %s=%q, want %q", flag, v, want)
		}
	}
	if !slices.ContainsFunc(pod.Volumes, func(v corev1.Volume) bool { return v.Name == inject.TokenVolumeName && v.Projected != nil }) {
		t.Errorf("no projected identity token volume %s", inject.TokenVolumeName)
	}
	if d.Spec.Template.Annotations[inject.ProxyVersionAnnotation] != o.Version {
		t.Errorf("proxy-version annotation %q, want %q", d.Spec.Template.Annotations[inject.ProxyVersionAnnotation], o.Version)
	}

	// proxy-init: every port the weft-ingress Service sends to, and the
	// admin port, bypass the inbound proxy; the API server's ports bypass
	// the outbound one.
	in, _ := argValue(initc, "--inbound-ports-to-ignore")
	inPorts, err := inject.ParsePorts(in)
	if err != nil {
		t.Fatal(err)
	}
	skipped := func(rs []inject.PortRange, p int) bool {
		return slices.ContainsFunc(rs, func(r inject.PortRange) bool { return r.Lo <= p && p <= r.Hi })
	}
	var svc *corev1.Service
	for _, obj := range Objects(o) {
		if s, ok := obj.(*corev1.Service); ok && s.Name == IngressName {
			svc = s
		}
	}
	if svc == nil {
		t.Fatal("no ingress Service")
	}
	wantIn := []int{AdminPort, inject.AdminPort}
	for _, p := range svc.Spec.Ports {
		wantIn = append(wantIn, p.TargetPort.IntValue())
	}
	for _, p := range wantIn {
		if !skipped(inPorts, p) {
			t.Errorf("inbound port %d is redirected to the proxy (--inbound-ports-to-ignore=%s)", p, in)
		}
	}
	out, _ := argValue(initc, "--outbound-ports-to-ignore")
	outPorts, err := inject.ParsePorts(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{443, 6443} {
		if !skipped(outPorts, p) {
			t.Errorf("outbound port %d (the API server) goes through the proxy (--outbound-ports-to-ignore=%s)", p, out)
		}
	}
	for _, p := range []int{80, 8080, ControlPort, RatelimitPort} {
		if skipped(outPorts, p) {
			t.Errorf("outbound port %d (services, the rate limit service) bypasses the proxy", p)
		}
	}
	if initc.Image != o.initImage() {
		t.Errorf("proxy-init image %q, want %q", initc.Image, o.initImage())
	}

	if v, _ := argValue(app, "--upstream"); v != "service" {
		t.Errorf("the ingress runs --upstream=%q, want service (dial names for the proxy to capture)", v)
	}
	if v, _ := argValue(app, "--ratelimit-addr"); v != fmt.Sprintf("%s.%s.svc.cluster.local:%d", RatelimitName, DefaultNamespace, RatelimitPort) {
		t.Errorf("--ratelimit-addr=%q: want the rate limit Service's name, which the proxy resolves", v)
	}

	for _, name := range []string{ControlName, RatelimitName} {
		spec := deps[name].Spec.Template.Spec
		if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
			t.Errorf("%s is meshed (containers %d, init containers %d); only the ingress is", name, len(spec.Containers), len(spec.InitContainers))
		}
	}
}

// TestIngressMeshedOtherNamespace: with the control plane elsewhere, the
// ingress's proxy, and every proxy the webhook injects, ask that
// namespace's Destination service.
func TestIngressMeshedOtherNamespace(t *testing.T) {
	o := testOptions(t)
	o.Namespace = "mesh"
	d := renderedDeployments(o)[IngressName]
	proxy := container(d.Spec.Template.Spec, inject.ProxyContainerName)
	if proxy == nil {
		t.Fatal("the ingress is not meshed")
	}
	if v, _ := argValue(proxy, "--control-addr"); v != "weft-dst.mesh.svc.cluster.local.:8086" {
		t.Errorf("--control-addr=%q, want the mesh namespace's weft-dst", v)
	}
	// So do the proxies the control plane's webhook injects.
	control := container(renderedDeployments(o)[ControlName].Spec.Template.Spec, ControlName)
	if control == nil {
		t.Fatal("no control container")
	}
	if v, _ := argValue(control, "--proxy-control-addr"); v != "weft-dst.mesh.svc.cluster.local.:8086" {
		t.Errorf("control plane --proxy-control-addr=%q, want the mesh namespace's weft-dst", v)
	}
}

// TestIngressWithoutImage: with no image (uninstall and check list only
// kinds and names) the objects still render, the ingress unmeshed.
func TestIngressWithoutImage(t *testing.T) {
	d := renderedDeployments(Options{})[IngressName]
	if d == nil || len(d.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("ingress without an image: %+v", d)
	}
}
