package kubetest

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"

	"github.com/weft-mesh/weft/internal/api"
)

// crdGVR is where CustomResourceDefinitions live.
var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// MinimalCRD returns a CustomResourceDefinition for a registered kind that
// accepts any content (x-kubernetes-preserve-unknown-fields), serves every
// version the kind has, stores the preferred one, and has a status
// subresource. It stands in for the real CRDs (with schemas) in tests of
// code that only reads and writes the kind.
func MinimalCRD(ki *api.KindInfo) *unstructured.Unstructured {
	scope := "Cluster"
	if ki.Namespaced {
		scope = "Namespaced"
	}
	var versions []any
	for i, v := range ki.Versions {
		versions = append(versions, map[string]any{
			"name":    v,
			"served":  true,
			"storage": i == 0,
			"schema": map[string]any{"openAPIV3Schema": map[string]any{
				"type":                                 "object",
				"x-kubernetes-preserve-unknown-fields": true,
			}},
			"subresources": map[string]any{"status": map[string]any{}},
		})
	}
	names := map[string]any{
		"kind":     ki.Kind.Kind,
		"listKind": ki.Kind.Kind + "List",
		"plural":   ki.Plural,
		"singular": strings.ToLower(ki.Kind.Kind),
	}
	if len(ki.ShortNames) > 0 {
		var sn []any
		for _, s := range ki.ShortNames {
			sn = append(sn, s)
		}
		names["shortNames"] = sn
	}
	meta := map[string]any{"name": ki.Plural + "." + ki.Group}
	if strings.HasSuffix(ki.Group, ".k8s.io") || strings.HasSuffix(ki.Group, ".kubernetes.io") {
		// The API server refuses CRDs in Kubernetes' own groups without
		// this; Gateway API's CRDs carry the same annotation.
		meta["annotations"] = map[string]any{"api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/gateway-api/pull/2466"}
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   meta,
		"spec": map[string]any{
			"group":    ki.Group,
			"scope":    scope,
			"names":    names,
			"versions": versions,
		},
	}}
}

// InstallMinimalCRDs installs MinimalCRD for each kind and waits until the
// API server serves them.
func (c *Cluster) InstallMinimalCRDs(tb testing.TB, kinds ...api.Kind) {
	tb.Helper()
	var crds []*unstructured.Unstructured
	for _, k := range kinds {
		ki := api.Lookup(k)
		if ki == nil {
			tb.Fatalf("kubetest: unknown kind %s", k)
		}
		crds = append(crds, MinimalCRD(ki))
	}
	c.InstallCRDs(tb, crds...)
}

// InstallCRDs creates CustomResourceDefinitions and waits until each is
// Established and its resources appear in discovery, so that a client
// started afterwards finds them.
func (c *Cluster) InstallCRDs(tb testing.TB, crds ...*unstructured.Unstructured) {
	tb.Helper()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	disc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	for _, crd := range crds {
		if _, err := dyn.Resource(crdGVR).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			tb.Fatalf("kubetest: creating CRD %s: %v", crd.GetName(), err)
		}
	}
	for _, crd := range crds {
		if err := waitCRD(ctx, dyn, disc, crd); err != nil {
			tb.Fatalf("kubetest: CRD %s: %v", crd.GetName(), err)
		}
	}
}

// waitCRD polls until the CRD is Established and discovery lists its
// plural in every served version.
func waitCRD(ctx context.Context, dyn dynamic.Interface, disc discovery.DiscoveryInterface, crd *unstructured.Unstructured) error {
	group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
	plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
	versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, err := crdReady(ctx, dyn, disc, crd.GetName(), group, plural, versions)
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not served after %s (last: %v)", readyTimeout, err)
		case <-tick.C:
		}
	}
}

func crdReady(ctx context.Context, dyn dynamic.Interface, disc discovery.DiscoveryInterface, name, group, plural string, versions []any) (bool, error) {
	got, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
	established := false
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Established" && m["status"] == "True" {
			established = true
		}
	}
	if !established {
		return false, fmt.Errorf("not Established")
	}
	for _, v := range versions {
		m, _ := v.(map[string]any)
		if served, _ := m["served"].(bool); !served {
			continue
		}
		gv := group + "/" + fmt.Sprint(m["name"])
		list, err := disc.ServerResourcesForGroupVersion(gv)
		if err != nil {
			return false, err
		}
		found := false
		for _, r := range list.APIResources {
			found = found || r.Name == plural
		}
		if !found {
			return false, fmt.Errorf("%s not in discovery for %s", plural, gv)
		}
	}
	return true, nil
}
