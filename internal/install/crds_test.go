package install

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/demo/faces"
	"github.com/weft-mesh/weft/internal/kubetest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./internal/install -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test ./internal/install -update if intended):\n%s", name, diff)
	}
}

func TestGeneratedCRDsGolden(t *testing.T) {
	var a, b bytes.Buffer
	if err := WriteGeneratedCRDs(&a); err != nil {
		t.Fatal(err)
	}
	if err := WriteGeneratedCRDs(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two renderings differ: output is not deterministic")
	}
	golden(t, "crds.golden", a.Bytes())
}

func TestCRDKindsCoverTheDesign(t *testing.T) {
	have := map[string]bool{}
	for _, ki := range CRDKinds() {
		have[ki.Kind.String()] = true
	}
	for _, want := range []string{
		"ServiceProfile.linkerd.io",
		"Server.policy.linkerd.io", "ServerAuthorization.policy.linkerd.io", "AuthorizationPolicy.policy.linkerd.io",
		"MeshTLSAuthentication.policy.linkerd.io", "NetworkAuthentication.policy.linkerd.io", "HTTPRoute.policy.linkerd.io",
		"Mapping.getambassador.io", "Listener.getambassador.io", "Host.getambassador.io", "RateLimitService.getambassador.io",
		"TrafficSplit.split.smi-spec.io", "Link.multicluster.linkerd.io", "ExternalWorkload.workload.linkerd.io",
	} {
		if !have[want] {
			t.Errorf("no CRD generated for %s", want)
		}
	}
	for k := range have {
		if strings.HasSuffix(k, "."+GatewayGroup) || !strings.Contains(k, ".") {
			t.Errorf("CRD generated for %s, which is built in or vendored", k)
		}
	}
}

func TestGatewayCRDsVerbatim(t *testing.T) {
	var out bytes.Buffer
	if err := WriteCRDs(&out); err != nil {
		t.Fatal(err)
	}
	entries, err := gatewayCRDs.ReadDir("crds/gateway")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 5 {
		t.Fatalf("%d vendored Gateway API CRDs, want 5", len(entries))
	}
	for _, e := range entries {
		b, _ := gatewayCRDs.ReadFile("crds/gateway/" + e.Name())
		if !bytes.Contains(out.Bytes(), b) {
			t.Errorf("%s is not in the output verbatim", e.Name())
		}
		if !bytes.Contains(b, []byte("gateway.networking.k8s.io/bundle-version: v1.6.3")) {
			t.Errorf("%s is not from Gateway API v1.6.3 (the version in go.mod)", e.Name())
		}
	}
}

func TestSchemaFor(t *testing.T) {
	type inner struct {
		A string `json:"a"`
	}
	type embedded struct {
		E int32 `json:"e,omitempty"`
	}
	type self struct {
		Next *self `json:"next,omitempty"`
	}
	type sample struct {
		embedded
		Name    string            `json:"name"`
		Opt     *string           `json:"opt"`
		Count   uint32            `json:"count,omitempty"`
		Ratio   float64           `json:"ratio,omitempty"`
		Labels  map[string]string `json:"labels,omitempty"`
		Items   []inner           `json:"items,omitempty"`
		Raw     []byte            `json:"raw,omitempty"`
		Skip    string            `json:"-"`
		Self    self              `json:"self,omitempty"`
		private string
	}
	got, err := SchemaFor(reflect.TypeFor[sample]())
	if err != nil {
		t.Fatal(err)
	}
	zero := int64(0)
	want := &Schema{Type: "object", Required: []string{"name"}, Properties: map[string]*Schema{
		"e":      {Type: "integer", Format: "int32"},
		"name":   {Type: "string"},
		"opt":    {Type: "string"},
		"count":  {Type: "integer", Format: "int32", Minimum: &zero},
		"ratio":  {Type: "number"},
		"labels": {Type: "object", AdditionalProperties: &Schema{Type: "string"}},
		"items":  {Type: "array", Items: &Schema{Type: "object", Required: []string{"a"}, Properties: map[string]*Schema{"a": {Type: "string"}}}},
		"raw":    {Type: "string", Format: "byte"},
		"self": {Type: "object", Properties: map[string]*Schema{
			"next": {Type: "object", Properties: map[string]*Schema{
				"next": {Type: "object", Properties: map[string]*Schema{
					"next": {Type: "object", PreserveUnknown: true},
				}},
			}},
		}},
	}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("schema (-want +got):\n%s", diff)
	}
}

type customDecoded struct{}

func (*customDecoded) UnmarshalJSON([]byte) error { return nil }

func TestSchemaForRefusesUnknownCustomDecoding(t *testing.T) {
	type holder struct {
		C customDecoded `json:"c"`
	}
	_, err := SchemaFor(reflect.TypeFor[holder]())
	if err == nil || !strings.Contains(err.Error(), ".c") || !strings.Contains(err.Error(), "overrides") {
		t.Fatalf("err = %v, want one naming the field and the overrides table", err)
	}
}

// facesProfile is a ServiceProfile for the Faces demo's smiley service,
// using every part of the schema a workshop profile does.
const facesProfile = `
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata:
  name: smiley.faces.svc.cluster.local
  namespace: faces
spec:
  routes:
  - name: GET /
    condition:
      method: GET
      pathRegex: /.*
    isRetryable: true
    timeout: 300ms
    responseClasses:
    - condition:
        status:
          min: 500
          max: 599
      isFailure: true
  retryBudget:
    retryRatio: 0.2
    minRetriesPerSecond: 10
    ttl: 10s
`

// TestOnAPIServer applies 'weft install --crds' and 'weft install' to one
// real API server (each cluster costs seconds).
func TestOnAPIServer(t *testing.T) {
	c := kubetest.Start(t)
	t.Run("crds", func(t *testing.T) { testCRDsOnAPIServer(t, c) })
	t.Run("control plane", func(t *testing.T) { testControlPlaneOnAPIServer(t, c) })
}

// testCRDsOnAPIServer applies 'weft install --crds', then the Faces
// workshop manifests and a ServiceProfile, and checks that structurally
// invalid objects are refused by the schemas.
func testCRDsOnAPIServer(t *testing.T, c *kubetest.Cluster) {
	var crds bytes.Buffer
	if err := WriteCRDs(&crds); err != nil {
		t.Fatal(err)
	}
	c.ApplyYAML(t, crds.Bytes())
	applied := c.ApplyYAML(t, append(faces.Manifests(), []byte("---\n"+facesProfile)...))
	kinds := map[string]int{}
	for _, o := range applied {
		kinds[o.GetKind()]++
	}
	for _, k := range []string{"Mapping", "Listener", "Host", "ServiceProfile"} {
		if kinds[k] == 0 {
			t.Errorf("no %s applied (applied: %v)", k, kinds)
		}
	}
	// The stored ServiceProfile kept its fields (nothing pruned).
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	sp, err := dyn.Resource(schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}).
		Namespace("faces").Get(ctx, "smiley.faces.svc.cluster.local", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if min, _, _ := unstructured.NestedInt64(sp.Object, "spec", "retryBudget", "minRetriesPerSecond"); min != 10 {
		t.Errorf("stored retryBudget.minRetriesPerSecond = %d, want 10: %v", min, sp.Object["spec"])
	}

	mappings := dyn.Resource(schema.GroupVersionResource{Group: "getambassador.io", Version: "v3alpha1", Resource: "mappings"}).Namespace("faces")
	profiles := dyn.Resource(schema.GroupVersionResource{Group: "linkerd.io", Version: "v1alpha2", Resource: "serviceprofiles"}).Namespace("faces")
	tests := []struct {
		name     string
		r        dynamic.ResourceInterface
		manifest string
		field    string
	}{
		{"mapping prefix as object", mappings, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: bad-object, namespace: faces}
spec: {hostname: "*", prefix: {value: 5}, service: smiley}`, "spec.prefix"},
		{"mapping prefix as number", mappings, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: bad-number, namespace: faces}
spec: {hostname: "*", prefix: 5, service: smiley}`, "spec.prefix"},
		{"mapping without service", mappings, `
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata: {name: bad-missing, namespace: faces}
spec: {hostname: "*", prefix: /x/}`, "spec.service"},
		{"profile route without name", profiles, `
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: bad.faces.svc.cluster.local, namespace: faces}
spec: {routes: [{condition: {method: GET}}]}`, "spec.routes[0].name"},
		{"profile nested condition with a bad method", profiles, `
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: bad3.faces.svc.cluster.local, namespace: faces}
spec: {routes: [{name: x, condition: {all: [{not: {method: 5}}]}}]}`, "spec.routes[0].condition.all[0].not.method"},
		{"profile retry ratio as string", profiles, `
apiVersion: linkerd.io/v1alpha2
kind: ServiceProfile
metadata: {name: bad2.faces.svc.cluster.local, namespace: faces}
spec: {routes: [], retryBudget: {retryRatio: lots, minRetriesPerSecond: 1, ttl: 1s}}`, "spec.retryBudget.retryRatio"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(tt.manifest), &o.Object); err != nil {
				t.Fatal(err)
			}
			_, err := tt.r.Create(ctx, &o, metav1.CreateOptions{})
			if err == nil {
				t.Fatalf("API server accepted %s", tt.manifest)
			}
			if !strings.Contains(err.Error(), tt.field) {
				t.Errorf("error %q does not name %s", err, tt.field)
			}
		})
	}
}

// Every registered non-builtin kind has a CRD whose schema compiles.
func TestEveryCRDKindRenders(t *testing.T) {
	for _, ki := range CRDKinds() {
		crd, err := CRD(ki)
		if err != nil {
			t.Errorf("%s: %v", ki.Kind, err)
			continue
		}
		if got := crd["metadata"].(map[string]any)["name"]; got != ki.Plural+"."+ki.Group {
			t.Errorf("%s: name %v", ki.Kind, got)
		}
	}
}
