package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/dynamic"
)

// ApplyYAML applies multi-document YAML (or JSON) manifests with
// server-side apply, as 'kubectl apply --server-side' would: Namespaces and
// CustomResourceDefinitions first (waiting until the CRDs are served), then
// everything else in order. Integration tests use it for the output of
// 'weft install --crds' and 'weft install'. It returns the applied objects
// as the API server returned them.
func (c *Cluster) ApplyYAML(tb testing.TB, manifests []byte) []*unstructured.Unstructured {
	tb.Helper()
	objs, err := decodeManifests(manifests)
	if err != nil {
		tb.Fatalf("kubetest: %v", err)
	}
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

	first := func(o *unstructured.Unstructured) bool {
		gk := o.GroupVersionKind().GroupKind()
		return gk == schema.GroupKind{Kind: "Namespace"} || gk == schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	}
	var out []*unstructured.Unstructured
	apply := func(o *unstructured.Unstructured) {
		tb.Helper()
		r, err := resourceFor(disc, dyn, o)
		if err != nil {
			tb.Fatalf("kubetest: %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		got, err := r.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "kubetest", Force: true})
		if err != nil {
			tb.Fatalf("kubetest: applying %s %s: %v", o.GetKind(), o.GetName(), err)
		}
		out = append(out, got)
	}
	var crds []*unstructured.Unstructured
	for _, o := range objs {
		if first(o) {
			apply(o)
			if o.GetKind() == "CustomResourceDefinition" {
				crds = append(crds, o)
			}
		}
	}
	for _, crd := range crds {
		if err := waitCRD(ctx, dyn, disc, crd); err != nil {
			tb.Fatalf("kubetest: CRD %s: %v", crd.GetName(), err)
		}
	}
	for _, o := range objs {
		if !first(o) {
			apply(o)
		}
	}
	return out
}

// decodeManifests splits YAML or JSON documents into objects, skipping
// empty ones.
func decodeManifests(b []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var out []*unstructured.Unstructured
	for i := 0; ; i++ {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return nil, fmt.Errorf("manifest document %d: %w", i, err)
		}
		if len(m) == 0 {
			continue
		}
		// Round-trip through JSON so numbers are what unstructured
		// expects (int64 and float64, not json.Number).
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", i, err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(raw); err != nil {
			return nil, fmt.Errorf("manifest document %d: %w", i, err)
		}
		out = append(out, u)
	}
}

// resourceFor finds o's resource through discovery.
func resourceFor(disc discovery.DiscoveryInterface, dyn dynamic.Interface, o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := o.GroupVersionKind()
	list, err := disc.ServerResourcesForGroupVersion(gvk.GroupVersion().String())
	if err != nil {
		return nil, fmt.Errorf("the API server does not serve %s: %w", gvk.GroupVersion(), err)
	}
	for _, r := range list.APIResources {
		if r.Kind != gvk.Kind || bytes.ContainsRune([]byte(r.Name), '/') {
			continue
		}
		ri := dyn.Resource(gvk.GroupVersion().WithResource(r.Name))
		if !r.Namespaced {
			return ri, nil
		}
		ns := o.GetNamespace()
		if ns == "" {
			ns = metav1.NamespaceDefault
			o.SetNamespace(ns)
		}
		return ri.Namespace(ns), nil
	}
	return nil, fmt.Errorf("no resource of kind %s in %s", gvk.Kind, gvk.GroupVersion())
}
