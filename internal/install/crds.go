// Package install renders the manifests that put Weft on a Kubernetes
// cluster: the CustomResourceDefinitions of the kinds Weft reads
// (`weft install --crds`) and, later, the control plane itself.
//
// Output is deterministic (same inputs, same bytes) so that it can be kept
// in git and applied by GitOps tools.
package install

import (
	"bytes"
	"embed"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/weft-mesh/weft/internal/api"
)

// gatewayCRDs are Gateway API's own standard-channel CRDs, vendored from the
// module version our Go types come from; see crds/gateway/README.md.
//
//go:embed crds/gateway/*.yaml
var gatewayCRDs embed.FS

// GatewayGroup is Gateway API's group; its CRDs are vendored, not generated.
const GatewayGroup = "gateway.networking.k8s.io"

// builtinGroups are served by every Kubernetes API server.
var builtinGroups = map[string]bool{"": true, "apps": true, "discovery.k8s.io": true}

// CRDKinds returns the registered kinds whose CRDs Weft generates: every
// kind Weft reads that is neither built into Kubernetes nor part of
// Gateway API, in a stable order (by group, then kind).
func CRDKinds() []*api.KindInfo {
	var out []*api.KindInfo
	for _, ki := range api.Kinds() {
		if builtinGroups[ki.Group] || ki.Group == GatewayGroup {
			continue
		}
		out = append(out, ki)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Group != out[j].Group {
			return out[i].Group < out[j].Group
		}
		return out[i].Kind.Kind < out[j].Kind.Kind
	})
	return out
}

// CRD returns the CustomResourceDefinition of a registered kind, with a
// schema reflected from its Go type. Every version the kind accepts is
// served with the same schema (the types are one shape across versions,
// as the decoder treats them); the preferred version is stored.
func CRD(ki *api.KindInfo) (map[string]any, error) {
	obj := ki.New()
	t := reflect.TypeOf(obj)
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	schema, err := SchemaFor(t)
	if err != nil {
		return nil, fmt.Errorf("install: CRD for %s: %w", ki.Kind, err)
	}
	_, hasStatus := schema.Properties["status"]
	scope := "Cluster"
	if ki.Namespaced {
		scope = "Namespaced"
	}
	versions := make([]any, 0, len(ki.Versions))
	for i, v := range ki.Versions {
		ver := map[string]any{
			"name":    v,
			"served":  true,
			"storage": i == 0,
			"schema":  map[string]any{"openAPIV3Schema": schema},
		}
		if hasStatus {
			ver["subresources"] = map[string]any{"status": map[string]any{}}
		}
		versions = append(versions, ver)
	}
	names := map[string]any{
		"kind":     ki.Kind.Kind,
		"listKind": ki.Kind.Kind + "List",
		"plural":   ki.Plural,
		"singular": strings.ToLower(ki.Kind.Kind),
	}
	if len(ki.ShortNames) > 0 {
		names["shortNames"] = ki.ShortNames
	}
	return map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata": map[string]any{
			"name":   ki.Plural + "." + ki.Group,
			"labels": map[string]any{"app.kubernetes.io/part-of": "weft"},
		},
		"spec": map[string]any{
			"group":    ki.Group,
			"scope":    scope,
			"names":    names,
			"versions": versions,
		},
	}, nil
}

// WriteGeneratedCRDs writes the reflected CRDs as multi-document YAML.
func WriteGeneratedCRDs(w io.Writer) error {
	for _, ki := range CRDKinds() {
		crd, err := CRD(ki)
		if err != nil {
			return err
		}
		b, err := yaml.Marshal(crd)
		if err != nil {
			return fmt.Errorf("install: encoding CRD for %s: %w", ki.Kind, err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}

// WriteGatewayCRDs writes the vendored Gateway API CRDs verbatim, in file
// name order.
func WriteGatewayCRDs(w io.Writer) error {
	entries, err := gatewayCRDs.ReadDir("crds/gateway")
	if err != nil {
		return err
	}
	for _, e := range entries { // ReadDir sorts by name
		b, err := gatewayCRDs.ReadFile("crds/gateway/" + e.Name())
		if err != nil {
			return err
		}
		b = bytes.TrimPrefix(b, []byte("---\n"))
		if _, err := fmt.Fprintf(w, "---\n# Source: sigs.k8s.io/gateway-api config/crd/standard/%s\n%s", e.Name(), b); err != nil {
			return err
		}
		if !bytes.HasSuffix(b, []byte("\n")) {
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteCRDs writes every CRD `weft install --crds` prints: Weft's generated
// ones, then Gateway API's.
func WriteCRDs(w io.Writer) error {
	if err := WriteGeneratedCRDs(w); err != nil {
		return err
	}
	return WriteGatewayCRDs(w)
}
