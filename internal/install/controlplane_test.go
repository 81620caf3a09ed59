package install

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/kubetest"
)

func testOptions(t *testing.T) Options {
	t.Helper()
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", "identity", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	wcert, err := os.ReadFile(filepath.Join("testdata", "webhook", "tls.crt"))
	if err != nil {
		t.Fatal(err)
	}
	wkey, err := os.ReadFile(filepath.Join("testdata", "webhook", "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	return Options{
		Image:    "ghcr.io/weft-mesh/weft:v0.0.0-test",
		Identity: Identity{TrustAnchors: read("ca.crt"), IssuerCertificate: read("issuer.crt"), IssuerKey: read("issuer.key")},
		Webhook:  WebhookTLS{CABundle: wcert, Certificate: wcert, Key: wkey},
		Version:  "v0.0.0-test",
	}
}

func TestControlPlaneGolden(t *testing.T) {
	o := testOptions(t)
	var a, b bytes.Buffer
	if err := WriteControlPlane(&a, o); err != nil {
		t.Fatal(err)
	}
	if err := WriteControlPlane(&b, o); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two renderings with the same inputs differ")
	}
	golden(t, "install.golden", a.Bytes())
	if keyLine := strings.Split(string(o.Identity.IssuerKey), "\n")[1]; !strings.Contains(a.String(), keyLine) {
		t.Error("the issuer key is not in the output")
	}
	if err := WriteControlPlane(&bytes.Buffer{}, Options{}); err == nil {
		t.Error("no error without an image")
	}
}

func TestUninstallGolden(t *testing.T) {
	for _, tt := range []struct {
		name string
		crds bool
	}{{"uninstall.golden", false}, {"uninstall-crds.golden", true}} {
		var out bytes.Buffer
		if err := WriteUninstall(&out, Options{}, tt.crds); err != nil {
			t.Fatal(err)
		}
		golden(t, tt.name, out.Bytes())
		if bytes.Contains(out.Bytes(), []byte("BEGIN")) || bytes.Contains(out.Bytes(), []byte("spec:")) {
			t.Errorf("%s: uninstall lists more than kinds and names", tt.name)
		}
	}
}

// testControlPlaneOnAPIServer applies 'weft install' (after the CRDs) and
// reads every object back; then checks that the control plane's
// ServiceAccount may do what store/kube and TokenReview need.
func testControlPlaneOnAPIServer(t *testing.T, c *kubetest.Cluster) {
	var out bytes.Buffer
	if err := WriteControlPlane(&out, testOptions(t)); err != nil {
		t.Fatal(err)
	}
	applied := c.ApplyYAML(t, out.Bytes())
	if len(applied) != len(Objects(testOptions(t))) {
		t.Fatalf("applied %d objects, rendered %d", len(applied), len(Objects(testOptions(t))))
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	// Every object the uninstall list names exists: the two lists agree.
	var list struct {
		Items []unstructured.Unstructured `json:"items"`
	}
	var un bytes.Buffer
	if err := WriteUninstall(&un, Options{}, false); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(un.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	resources := map[string]schema.GroupVersionResource{
		"Namespace": {Version: "v1", Resource: "namespaces"}, "ServiceAccount": {Version: "v1", Resource: "serviceaccounts"},
		"ConfigMap": {Version: "v1", Resource: "configmaps"}, "Secret": {Version: "v1", Resource: "secrets"},
		"Service": {Version: "v1", Resource: "services"}, "Deployment": {Group: "apps", Version: "v1", Resource: "deployments"},
		"ClusterRole":                  {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		"ClusterRoleBinding":           {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
		"MutatingWebhookConfiguration": {Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"},
		"GatewayClass":                 {Group: "gateway.networking.k8s.io", Version: "v1", Resource: "gatewayclasses"},
	}
	if len(list.Items) != len(applied) {
		t.Errorf("uninstall lists %d objects, install applied %d", len(list.Items), len(applied))
	}
	for _, it := range list.Items {
		gvr, ok := resources[it.GetKind()]
		if !ok {
			t.Errorf("uninstall lists unexpected kind %s", it.GetKind())
			continue
		}
		var r dynamic.ResourceInterface = dyn.Resource(gvr)
		if it.GetNamespace() != "" {
			r = dyn.Resource(gvr).Namespace(it.GetNamespace())
		}
		if _, err := r.Get(ctx, it.GetName(), metav1.GetOptions{}); err != nil {
			t.Errorf("%s %s/%s: %v", it.GetKind(), it.GetNamespace(), it.GetName(), err)
		}
	}

	// The issuer Secret holds the files as given.
	sec, err := dyn.Resource(resources["Secret"]).Namespace(DefaultNamespace).Get(ctx, IssuerSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if sec.Object["type"] != "kubernetes.io/tls" {
		t.Errorf("issuer secret type %v", sec.Object["type"])
	}

	// RBAC: the control plane's identity can list what store/kube reads
	// and create TokenReviews; it cannot write Secrets. The ingress's can
	// read what it serves (ingress.ReadKinds) and write route and Gateway
	// status, but not their specs, nor read what it has no use for.
	type access struct {
		verb, group, resource, subresource string
		want                               bool
	}
	for _, tc := range []struct {
		sa    string
		tests []access
	}{
		{ControlName, []access{
			{"list", "", "pods", "", true},
			{"watch", "discovery.k8s.io", "endpointslices", "", true},
			{"list", "linkerd.io", "serviceprofiles", "", true},
			{"list", "getambassador.io", "mappings", "", true},
			{"watch", "gateway.networking.k8s.io", "httproutes", "", true},
			{"create", "authentication.k8s.io", "tokenreviews", "", true},
			{"create", "", "secrets", "", false},
		}},
		{IngressName, []access{
			{"list", "getambassador.io", "mappings", "", true},
			{"watch", "getambassador.io", "mappings", "", true},
			{"watch", "getambassador.io", "listeners", "", true},
			{"list", "getambassador.io", "hosts", "", true},
			{"list", "getambassador.io", "ratelimitservices", "", true},
			{"list", "", "secrets", "", true},
			{"watch", "", "secrets", "", true},
			{"watch", "", "services", "", true},
			{"watch", "", "namespaces", "", true},
			{"list", "discovery.k8s.io", "endpointslices", "", true},
			{"watch", "gateway.networking.k8s.io", "gateways", "", true},
			{"list", "gateway.networking.k8s.io", "httproutes", "", true},
			{"list", "gateway.networking.k8s.io", "grpcroutes", "", true},
			{"patch", "gateway.networking.k8s.io", "httproutes", "status", true},
			{"patch", "gateway.networking.k8s.io", "grpcroutes", "status", true},
			{"patch", "gateway.networking.k8s.io", "gateways", "status", true},
			{"watch", "gateway.networking.k8s.io", "gatewayclasses", "", true},
			{"patch", "gateway.networking.k8s.io", "gatewayclasses", "status", true},
			{"patch", "gateway.networking.k8s.io", "gatewayclasses", "", false},
			{"patch", "gateway.networking.k8s.io", "httproutes", "", false},
			{"update", "getambassador.io", "mappings", "", false},
			{"create", "", "secrets", "", false},
			{"list", "", "pods", "", false},
			{"create", "authentication.k8s.io", "tokenreviews", "", false},
		}},
		{RatelimitName, []access{
			{"list", "", "secrets", "", false},
			{"list", "getambassador.io", "mappings", "", false},
		}},
	} {
		sa := "system:serviceaccount:" + DefaultNamespace + ":" + tc.sa
		for _, tt := range tc.tests {
			review := &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
				"spec": map[string]any{
					"user":   sa,
					"groups": []any{"system:serviceaccounts", "system:serviceaccounts:" + DefaultNamespace},
					"resourceAttributes": map[string]any{"verb": tt.verb, "group": tt.group, "resource": tt.resource,
						"subresource": tt.subresource},
				},
			}}
			got, err := dyn.Resource(schema.GroupVersionResource{Group: "authorization.k8s.io", Version: "v1", Resource: "subjectaccessreviews"}).
				Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			allowed, _, _ := unstructured.NestedBool(got.Object, "status", "allowed")
			if allowed != tt.want {
				t.Errorf("%s may %s %s.%s (subresource %q): %v, want %v", sa, tt.verb, tt.resource, tt.group, tt.subresource, allowed, tt.want)
			}
		}
	}
	if !strings.Contains(out.String(), "--store=kube") {
		t.Error("the control plane does not run with --store=kube")
	}
}

func TestGenerateWebhookTLS(t *testing.T) {
	w, err := GenerateWebhookTLS("", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(w.Certificate, w.Key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(w.CABundle) {
		t.Fatal("CA bundle holds no certificate")
	}
	// The API server dials the Service by its DNS name.
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "weft-proxy-injector.weft.svc", Roots: pool}); err != nil {
		t.Fatal(err)
	}
}

func TestInitImage(t *testing.T) {
	for _, tt := range []struct{ image, init, want string }{
		{"ghcr.io/weft-mesh/weft:v1.2.3", "", "ghcr.io/weft-mesh/weft-proxy-init:v1.2.3"},
		{"localhost:5000/weft", "", "localhost:5000/weft-proxy-init"},
		{"localhost:5000/weft:dev", "", "localhost:5000/weft-proxy-init:dev"},
		{"weft:dev", "example/init:1", "example/init:1"},
	} {
		if got := (Options{Image: tt.image, InitImage: tt.init}).initImage(); got != tt.want {
			t.Errorf("initImage(%q, %q) = %q, want %q", tt.image, tt.init, got, tt.want)
		}
	}
}
